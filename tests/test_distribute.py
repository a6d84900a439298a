"""--distribute: the same training as one device, on logical CPU devices and on two worker
processes (from TF_CONFIG, and from a simulated SLURM job step with workers of different
evaluation budgets), a preempted multi-worker run resumed in one process, workers that
disagree refused, and a worker killed with SIGKILL ending the other with exit status 75.

In float64 (`--precision float64`), summation order is the only difference between a
distributed run and one device (replicas add up their tasks' contributions, then the
sums are all-reduced), so after 30 meta-iterations of `--parallel-tasks` the weights must
agree within 1e-8 (measured: 3.4e-9, on the conv biases, which batch norm cancels so that
Adam steps them on rounding noise; every other weight agrees far closer).

All runs are CLI subprocesses on a small generated Omniglot tree (nothing from ../shared),
started together, each bounded in time and killed with its process group at the end.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from helpers import SCRIPTS, assert_success, cli_env, fake_omniglot, our_stderr_lines

FLAGS = ['--train-chars', 12, '--classes', 5, '--shots', 1, '--train-shots', 2, '--inner-batch', 5,
         '--inner-iters', 2, '--meta-batch', 5, '--meta-iters', 30, '--eval-interval', 10, '--eval-batch', 5,
         '--eval-iters', 2, '--eval-samples', 4, '--learning-rate', 0.001, '--meta-step', 1, '--seed', 2,
         '--precision', 'float64', '--parallel-tasks']
FINAL = 29
TOLERANCE = 1e-8
TIMEOUT = 600


class Process:
    """One CLI run in its own process group, output in files of `cwd`."""

    def __init__(self, cwd, tag, data_dir, *args, env=None):
        self.cwd, self.tag = cwd, tag
        self.out, self.err = cwd / f'{tag}.out', cwd / f'{tag}.err'
        with open(self.out, 'w') as out, open(self.err, 'w') as err:
            self.proc = subprocess.Popen([sys.executable, '-u', str(SCRIPTS['omniglot']), '--data-dir', str(data_dir),
                                          *map(str, FLAGS + list(args))], cwd=cwd, env=cli_env(**(env or {})),
                                         stdout=out, stderr=err, start_new_session=True)

    def result(self, timeout=TIMEOUT):
        """CompletedProcess once finished (killed, and failing, after `timeout` seconds)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f'{self.tag} did not finish in {timeout} s: {self.out.read_text()}')
        return subprocess.CompletedProcess(self.tag, self.proc.returncode, self.out.read_text(), self.err.read_text())

    def wait_for(self, text, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while text not in self.out.read_text():
            assert self.proc.poll() is None, f'{self.tag} ended before printing {text!r}: {self.err.read_text()}'
            assert time.monotonic() < deadline, f'{self.tag}: no {text!r} in {timeout} s'
            time.sleep(0.01)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def free_ports(count):
    """`count` ports free on 127.0.0.1 right now."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def workers(root, tag, data_dir, *args, each=((), ())):
    """Two worker processes of one multi-worker run (TF_CONFIG on 127.0.0.1), worker i
    with the extra flags `each[i]`."""
    cluster = {'worker': [f'127.0.0.1:{port}' for port in free_ports(2)]}
    return [Process(root, f'{tag}{i}', data_dir, '--distribute', 'multi-worker', *args, *each[i],
                    env={'TF_CONFIG': json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': i}})})
            for i in range(2)]


def slurm_workers(root, tag, data_dir, *args, budgets=(3, 2)):
    """Two workers started as a SLURM job step of two tasks on one node would be (the
    environment srun sets), each with its own --eval-parallel (its memory budget)."""
    port = next(p for p in free_ports(8) if free_ports_at(p, p + 1))
    env = dict(SLURM_JOB_ID='42', SLURM_JOB_NODELIST='localhost', SLURM_STEP_NODELIST='localhost',
               SLURM_TASKS_PER_NODE='2', SLURM_STEP_TASKS_PER_NODE='2', SLURM_NTASKS='2', SLURMD_NODENAME='localhost')
    return [Process(root, f'{tag}{i}', data_dir, *args, '--worker-port', port, '--eval-parallel', budgets[i],
                    env=dict(env, SLURM_PROCID=str(i), SLURM_LOCALID=str(i), TF_CONFIG=''))
            for i in range(2)]


def free_ports_at(*ports):
    """Whether every one of `ports` is free on 127.0.0.1 right now."""
    try:
        for port in ports:
            with socket.socket() as s:
                s.bind(('127.0.0.1', port))
    except OSError:
        return False
    return True


def weights(ck, iteration=FINAL):
    """{name: float64 array} of every floating tensor in `ck`'s model.ckpt-<iteration>."""
    reader = tf.train.load_checkpoint(str(ck / f'model.ckpt-{iteration}'))
    values = {name: np.asarray(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()}
    return {name: value.astype(np.float64) for name, value in values.items() if value.dtype.kind == 'f'}


def max_difference(a, b):
    assert sorted(a) == sorted(b)
    return max(float(np.max(np.abs(a[n] - b[n]))) for n in a)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Every run of the module, started at once: {tag: Process}."""
    root = tmp_path_factory.mktemp('distribute')
    data_dir = fake_omniglot(root / 'omniglot', num_chars=18, images=3)
    started = {'one': Process(root, 'one', data_dir, '--checkpoint', 'one', '--results', 'one.jsonl'),
               'mirrored': Process(root, 'mirrored', data_dir, '--checkpoint', 'mirrored',
                                   '--distribute', 'mirrored', '--cpu-replicas', 2)}
    started.update(zip(('worker0', 'worker1'), workers(root, 'worker', data_dir, '--checkpoint', 'workers')))
    preempted = workers(root, 'preempted', data_dir, '--checkpoint', 'preempted')
    started.update(zip(('preempted0', 'preempted1'), preempted))
    started['root'], started['data_dir'] = root, data_dir
    # SIGTERM to the non-chief worker once the chief has printed meta-iteration 10's line.
    preemption = threading.Thread(target=lambda: (preempted[0].wait_for('batch 10:'),
                                                  os.killpg(preempted[1].proc.pid, signal.SIGTERM)), daemon=True)
    preemption.start()
    started['preemption'] = preemption
    yield started
    for process in started.values():
        if isinstance(process, Process):
            process.kill()


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_matches_one_device(runs):
    """--distribute mirrored --cpu-replicas 2 (tasks 3 + 2 per replica) ends within 1e-8 of
    the one-device run, and prints the same lines."""
    one, mirrored = runs['one'].result(), runs['mirrored'].result()
    for result in (one, mirrored):
        assert_success(result)
    assert mirrored.stdout == one.stdout
    assert max_difference(weights(runs['root'] / 'mirrored'), weights(runs['root'] / 'one')) <= TOLERANCE


@pytest.mark.slow
def test_two_worker_processes_match_one_device(runs):
    """Two workers (TF_CONFIG on 127.0.0.1): the chief prints the run's lines and writes the
    checkpoints, the other worker prints and leaves nothing; weights within 1e-8."""
    chief, other = runs['worker0'].result(), runs['worker1'].result()
    for result in (chief, other):
        assert_success(result)
    assert chief.stdout == runs['one'].result().stdout
    assert other.stdout == ''
    assert max_difference(weights(runs['root'] / 'workers'), weights(runs['root'] / 'one')) <= TOLERANCE


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_then_one_process_resumes(runs):
    """SIGTERM to the non-chief worker after meta-iteration 10's line: both workers finish the
    same meta-iteration and exit 143, the chief with one line, the other silently; the
    chief's latest checkpoint is that iteration. Resumed in ONE process, the run ends
    within 1e-8 of the one-device run."""
    chief, other = runs['preempted0'], runs['preempted1']
    results = [chief.result(), other.result()]
    runs['preemption'].join(TIMEOUT)
    for result in results:
        assert result.returncode == 143, (result.returncode, result.stderr)
    assert our_stderr_lines(results[1].stderr) == [], results[1].stderr
    [line] = results[0].stderr.splitlines()
    assert line.startswith('stopped by SIGTERM after meta-iteration '), line
    assert line.endswith('continue with --resume'), line
    iteration = int(line.split('meta-iteration ')[1].split(',')[0])
    assert 10 <= iteration < FINAL
    ck = runs['root'] / 'preempted'
    assert tf.train.latest_checkpoint(str(ck)) == str(ck / f'model.ckpt-{iteration}')

    resumed = Process(runs['root'], 'resumed', runs['data_dir'], '--checkpoint', 'preempted', '--resume').result()
    assert_success(resumed)
    assert resumed.stdout.splitlines()[0] == f'Resuming at meta-iteration {iteration + 1}...'
    assert max_difference(weights(ck), weights(runs['root'] / 'one')) <= TOLERANCE


@pytest.mark.slow
def test_exact_mode_cannot_be_distributed(runs):
    """Without --parallel-tasks, --distribute stops at once with one line suggesting it."""
    process = subprocess.run([sys.executable, str(SCRIPTS['omniglot']), '--data-dir', str(runs['data_dir']),
                              *[str(f) for f in FLAGS if f != '--parallel-tasks'], '--checkpoint', 'exact',
                              '--distribute', 'mirrored', '--cpu-replicas', '2'],
                             cwd=runs['root'], env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert process.returncode == 2, process.stderr
    [line] = process.stderr.splitlines()
    assert line.startswith('error: ') and '--parallel-tasks' in line, line


# The batch script's srun command line (docs/scaling-out.md), flags apart.
BATCH_COMMAND = ['--parallel-tasks', '--distribute', 'multi-worker', '--resume', '--checkpoint', 'slurm']


@pytest.mark.slow
def test_slurm_job_step_with_unequal_evaluation_budgets_matches_one_device(runs):
    """The batch script's command line under a simulated SLURM step (two tasks on one node,
    ports from --worker-port): worker 0 may fine-tune 3 evaluation episodes at once, worker
    1 only 2; they agree on 2, so every task's result equals the one-device run's, and the
    weights agree within 1e-8."""
    root = runs['root']
    chief, other = slurm_workers(root, 'slurm', runs['data_dir'], *BATCH_COMMAND, '--results', 'slurm.jsonl')
    for result in (chief.result(), other.result()):
        assert_success(result)
    assert chief.result().stdout == runs['one'].result().stdout
    tasks = lambda path: [{k: line[k] for k in ('split', 'task', 'classes', 'correct', 'total')}
                          for line in map(json.loads, path.read_text().splitlines()) if line.get('type') != 'header']
    assert tasks(root / 'slurm.jsonl') == tasks(root / 'one.jsonl') != []
    assert max_difference(weights(root / 'slurm'), weights(root / 'one')) <= TOLERANCE


@pytest.mark.slow
def test_workers_starting_from_different_checkpoints_are_refused(runs):
    """Worker 1 resumes from a node-local folder holding the finished one-device run
    (meta-iteration 30), worker 0 from an empty one (0): both stop before training with
    the same line naming the start meta-iteration and the two workers, exit status 2."""
    root = runs['root']
    runs['one'].result()
    shutil.copytree(root / 'one', root / 'local1')
    started = workers(root, 'local', runs['data_dir'], '--resume',
                      each=(('--checkpoint', 'local0'), ('--checkpoint', 'local1')))
    lines = set()
    for process in started:
        result = process.result()
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert 'Traceback' not in result.stderr, result.stderr
        lines.add(result.stderr.splitlines()[-1])
    [line] = lines
    assert line.startswith('error: workers disagree on the start meta-iteration: worker 0 (127.0.0.1:'), line
    assert '(0) and worker 1 (127.0.0.1:' in line and '(30) differ' in line, line
    assert not (root / 'local0' / 'checkpoint').exists()


@pytest.mark.slow
def test_a_killed_worker_ends_the_other_with_status_75(runs):
    """SIGKILL to worker 1 after meta-iteration 10: worker 0 exits 75 within a minute with
    one line naming worker 1 and the latest checkpoint (--checkpoint-interval 5)."""
    root = runs['root']
    chief, other = workers(root, 'killed', runs['data_dir'], '--checkpoint', 'killed', '--meta-iters', 3000,
                           '--checkpoint-interval', 5)
    chief.wait_for('batch 10:')
    other.kill()
    killed_at = time.monotonic()
    result = chief.result()
    assert time.monotonic() - killed_at < 60
    assert result.returncode == 75, (result.returncode, result.stderr)
    assert 'Traceback' not in result.stderr, result.stderr
    line = result.stderr.splitlines()[-1]
    prefix, _, latest = line.partition(': resume from ')
    assert prefix.startswith('error: worker 1 (127.0.0.1:') and prefix.endswith(') was lost'), line
    assert latest.endswith(' with --resume'), line
    checkpoint = latest[:-len(' with --resume')]
    assert int(checkpoint.rsplit('-', 1)[1]) % 5 == 0 and (root / f'{checkpoint}.index').exists(), line
