"""The SLURM cluster: worker i is SLURM task i, on the node SLURM placed it, whatever the
host names' string order; GPUs shared out per task; other layouts refused in one line.
(tests/test_distribute.py runs two workers from a simulated SLURM environment.)"""

import pytest

from supervised_reptile.errors import InputError
from supervised_reptile.running import slurm


def test_host_lists_expand_in_slurm_order_not_string_order():
    assert slurm.expand_hostlist('node[9-10]') == ['node9', 'node10']
    assert slurm.expand_hostlist('gpu[08-10,2],login1') == ['gpu08', 'gpu09', 'gpu10', 'gpu2', 'login1']
    assert slurm.expand_hostlist('rack[1-2]-n[1-2]') == ['rack1-n1', 'rack1-n2', 'rack2-n1', 'rack2-n2']


def test_task_counts_expand():
    assert slurm.expand_counts('2(x3),1') == [2, 2, 2, 1]
    assert slurm.expand_counts('4') == [4]


def env(procid, localid, node, nodes='node[9-10]', tasks='2(x2)', **extra):
    return dict(SLURM_JOB_ID='7', SLURM_JOB_NODELIST=nodes, SLURM_STEP_NODELIST=nodes, SLURM_TASKS_PER_NODE=tasks,
                SLURM_STEP_TASKS_PER_NODE=tasks, SLURM_NTASKS='4', SLURM_PROCID=str(procid),
                SLURM_LOCALID=str(localid), SLURMD_NODENAME=node, **extra)


def test_workers_are_numbered_as_slurm_numbers_tasks():
    """node9 holds tasks 0 and 1, node10 tasks 2 and 3: consecutive ports per node."""
    addresses, task, local, on_node = slurm.workers(env(2, 0, 'node10'), port=4000)
    assert addresses == ['node9:4000', 'node9:4001', 'node10:4000', 'node10:4001']
    assert (task, local, on_node) == (2, 0, 2)


def test_port_comes_from_the_flag_then_srun_reserved_ports_then_8888():
    assert slurm.workers(env(0, 0, 'node9', SLURM_STEP_RESV_PORTS='12000-12001'))[0][0] == 'node9:12000'
    assert slurm.workers(env(0, 0, 'node9', SLURM_STEP_RESV_PORTS='12000-12001'), port=5000)[0][0] == 'node9:5000'
    assert slurm.workers(env(0, 0, 'node9'))[0][0] == 'node9:8888'


def test_cyclic_distribution_is_refused_in_one_line():
    """Task 1 on node10 (cyclic) is not where block distribution puts it."""
    with pytest.raises(InputError, match='--distribution=block'):
        slurm.workers(env(1, 0, 'node10'))


def test_gpus_are_shared_out_per_task():
    gpus = ['g0', 'g1', 'g2', 'g3']
    assert slurm.share_gpus(gpus, 0, 1) == gpus  # one task per node: all of them
    assert slurm.share_gpus(gpus, 1, 2) == ['g2', 'g3']
    assert slurm.share_gpus(gpus, 3, 4) == ['g3']  # one task per GPU
    assert slurm.share_gpus(['g5'], 3, 4) == ['g5']  # SLURM bound one GPU to each task already
    assert slurm.share_gpus([], 0, 2) == []  # CPU node: no nvidia-smi needed
    with pytest.raises(InputError, match='one task per node'):
        slurm.share_gpus(gpus[:3], 0, 2)
