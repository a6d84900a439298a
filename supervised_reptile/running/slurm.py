"""The cluster of a SLURM job step, in SLURM's own task order, for --distribute multi-worker.

TensorFlow's `SlurmClusterResolver` sorts host names as strings (`node10` before `node9`)
while SLURM numbers tasks in node-list order, asks `nvidia-smi` for GPUs (absent on CPU
nodes) and fixes the port. Here worker i is SLURM task i (`SLURM_PROCID`), on the host
SLURM placed it: the step's node list expanded in order, each node holding its count of
`SLURM_STEP_TASKS_PER_NODE` consecutive tasks (SLURM's default block distribution; any
other is refused). The tasks of one node listen on consecutive ports from `--worker-port`
(default: the first of `SLURM_STEP_RESV_PORTS` when srun reserved ports, else 8888), and
share its GPUs out evenly (`share_gpus`), so that one task per node and one per GPU both
work. Nothing here runs `nvidia-smi`.
"""

import re

from ..errors import InputError

DEFAULT_PORT = 8888


def expand_hostlist(hostlist):
    """SLURM's compressed host list (`node[9-10],gpu[01-02,7]`) as host names, in its order."""
    hosts = []
    for item in re.findall(r'(?:[^,\[]|\[[^\]]*\])+', hostlist):
        match = re.match(r'([^\[]*)\[([^\]]*)\](.*)$', item)
        if not match:
            hosts.append(item)
            continue
        prefix, ranges, rest = match.groups()
        tails = expand_hostlist(rest) if rest else ['']
        for part in ranges.split(','):
            first, _, last = part.partition('-')
            hosts += [f'{prefix}{number:0{len(first)}d}{tail}'
                      for number in range(int(first), int(last or first) + 1) for tail in tails]
    return hosts


def expand_counts(tasks_per_node):
    """SLURM's compressed counts (`2(x3),1`) as one count per node: [2, 2, 2, 1]."""
    counts = []
    for item in tasks_per_node.split(','):
        count, repeat = re.fullmatch(r'(\d+)(?:\(x(\d+)\))?', item.strip()).groups()
        counts += [int(count)] * int(repeat or 1)
    return counts


def workers(env, port=None):
    """(addresses of every worker in SLURM task order, this task's index, its index on its
    node, the number of tasks on its node), from SLURM's environment `env`."""
    hosts = expand_hostlist(_first(env, 'SLURM_STEP_NODELIST', 'SLURM_JOB_NODELIST'))
    counts = expand_counts(_first(env, 'SLURM_STEP_TASKS_PER_NODE', 'SLURM_TASKS_PER_NODE'))
    if len(counts) != len(hosts):
        raise InputError(f'SLURM lists {len(hosts)} nodes but tasks for {len(counts)}: run the command with srun')
    port = port or _reserved_port(env) or DEFAULT_PORT
    addresses = [f'{host}:{port + local}' for host, count in zip(hosts, counts) for local in range(count)]
    task, local = int(env['SLURM_PROCID']), int(env.get('SLURM_LOCALID', 0))
    node = next(n for n, count in enumerate(counts) if sum(counts[:n + 1]) > task)
    if sum(counts[:node]) + local != task or env.get('SLURMD_NODENAME', hosts[node]) != hosts[node]:
        raise InputError(f'SLURM task {task} runs on {env.get("SLURMD_NODENAME")} as local task {local}, not where '
                         'block distribution puts it: drop --distribution (or pass --distribution=block) to srun')
    return addresses, task, local, counts[node]


def share_gpus(gpus, local, tasks_on_node):
    """The GPUs (of the `gpus` this process sees) that local task `local` of `tasks_on_node`
    uses: all of them with one task per node, or when SLURM already bound fewer GPUs than
    tasks to each; otherwise an even, contiguous share."""
    if tasks_on_node == 1 or len(gpus) < tasks_on_node:
        return gpus
    if len(gpus) % tasks_on_node:
        raise InputError(f'{len(gpus)} GPUs cannot be shared evenly by the {tasks_on_node} tasks on this node: run '
                         'one task per node (all its GPUs) or one per GPU (--ntasks-per-node=<GPUs per node>)')
    share = len(gpus) // tasks_on_node
    return gpus[local * share:(local + 1) * share]


def _first(env, *names):
    for name in names:
        if env.get(name):
            return env[name]
    raise InputError(f'{names[0]} is not set: start the command with srun inside the SLURM job')


def _reserved_port(env):
    """The first port srun reserved for the step (--resv-ports), if any."""
    match = re.match(r'\d+', env.get('SLURM_STEP_RESV_PORTS', ''))
    return int(match.group()) if match else None
