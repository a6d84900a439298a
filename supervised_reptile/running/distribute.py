"""Where meta-iterations and evaluation episodes run: one device, or many with tf.distribute.

`Reptile` says what a meta-iteration and an evaluation are; a runner here decides where
they run. `LOCAL` runs them on the default device through the algorithm's own methods.
`Replicated` runs them under a tf.distribute strategy (`make_runner`):

- a --parallel-tasks meta-batch is split into one contiguous slice of tasks per replica;
  each replica runs `Reptile.adapt` on its slice, the sums of the tasks' meta-update
  contributions and optimizer moments are all-reduced, and every process applies the
  same `Reptile.finish` to its own copy of the variables;
- evaluation episodes are split the same way (the last replicas padded with copies of an
  episode, whose results are dropped) and the logits all-gathered, in episode order;
- a stop request (SIGINT/SIGTERM in any process) is all-reduced after every
  meta-iteration (a one-number all-reduce of its own), so that all processes stop after
  the same one;
- `gather` collects a few numbers from every worker: what must be equal before training
  (`fingerprint`) and the evaluation batch that fits every worker (`agreed_minimum`).

Every process samples the same tasks from the same seeded stream and decodes and stacks
only its replicas' slices (`tasks.Stack`): no images travel between processes, and per
meta-iteration each replica sends the size of the weights plus the optimizer's moments
(see docs/scaling-out.md). A lost worker ends every other one within --collective-timeout
(see `watchdog`).
"""

import contextlib
import functools
import math
import os

import numpy as np
import tensorflow as tf

from ..errors import InputError
from ..models import device_type
from ..reptile import mean, stack_episodes, stack_tasks
from . import slurm, watchdog


class Local:
    """One process, one device: the algorithm's own methods."""
    replicas = 1
    is_chief = True
    workers = ('this process',)

    @property
    def device_type(self):
        """'GPU' when TensorFlow sees one (it places the ops there), else 'CPU'."""
        return device_type()

    def train_step(self, algo, tasks, meta_step_size, parallel):
        """One meta-iteration of `algo` on `tasks`."""
        algo.train_step(tasks, meta_step_size, parallel=parallel)

    def logits(self, algo, episodes):
        """Query logits of `algo` after fine-tuning on each of `episodes`."""
        return algo.evaluate(episodes)

    def gather(self, values):
        """Every worker's `values`, as rows: here, one."""
        return np.asarray(values, np.float64)[None]

    def agreed_minimum(self, count):
        """The smallest `count` of all workers: here, this one's."""
        return count

    def checkpointed(self, path):
        """Training wrote checkpoint `path`: nothing to remember in one process."""

    def own(self, tasks):
        """The tasks of a meta-batch that this process runs: all."""
        return tasks

    def any_stop(self, requested):
        """Whether any process asked to stop: here, just this one."""
        return requested

    def barrier(self):
        """Wait until every process gets here: here, at once."""


LOCAL = Local()


def make_runner(kind, cpu_replicas=None, collective_timeout=watchdog.DEFAULT_TIMEOUT, port=None):
    """The runner for --distribute `kind` (None: `LOCAL`). Call it before anything else
    touches TensorFlow's devices: logical CPU devices, GPU shares and multi-worker
    collectives can only be set up before the runtime starts. A multi-worker run ends with
    `errors.WorkerLost` when a collective call lasts longer than `collective_timeout`
    seconds; under SLURM its workers listen on `port` (see `slurm`)."""
    if kind is None:
        return LOCAL
    if kind == 'mirrored':
        return Replicated(tf.distribute.MirroredStrategy(_mirrored_devices(cpu_replicas)))
    resolver = _cluster_resolver(port)
    cluster = Cluster(resolver.cluster_spec().as_dict()['worker'], resolver.task_id, collective_timeout)
    with cluster.collective():  # connecting waits for every worker
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    return Replicated(strategy, cluster)


def _mirrored_devices(cpu_replicas):
    """This machine's GPUs or, without one, `cpu_replicas` logical CPU devices."""
    gpus = tf.config.list_physical_devices('GPU')
    if gpus:
        if cpu_replicas:
            raise InputError(f'--cpu-replicas is for machines without a GPU; this one has {len(gpus)}: drop it')
        return None  # MirroredStrategy's default: every GPU
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * (cpu_replicas or 1))
    return [device.name for device in tf.config.list_logical_devices('CPU')]


def _cluster_resolver(port):
    """The cluster from TF_CONFIG (TensorFlow's standard) or else from SLURM's environment,
    this task's share of the GPUs made visible in the SLURM case."""
    if os.environ.get('TF_CONFIG'):
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if os.environ.get('SLURM_JOB_ID'):
        addresses, task, local, tasks_on_node = slurm.workers(os.environ, port)
        tf.config.set_visible_devices(slurm.share_gpus(tf.config.list_physical_devices('GPU'), local, tasks_on_node),
                                      'GPU')
        return tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({'worker': addresses}), task_type='worker', task_id=task, rpc_layer='grpc')
    raise InputError('--distribute multi-worker needs the cluster: set TF_CONFIG, or run it as a SLURM job step '
                     '(see docs/scaling-out.md)')


class Cluster:
    """The workers of a run (addresses, this one `task`), and what ends the run when one is
    lost: a `watchdog.Watchdog` on every collective call (none without `timeout`), and the
    translation of TensorFlow's errors into `errors.WorkerLost`."""

    def __init__(self, workers, task, timeout=None):
        self.workers, self.task, self.timeout = workers, task, timeout
        self.latest_checkpoint = None  # named in the worker-lost line: what to resume from
        self._watchdog = watchdog.Watchdog(timeout, lambda: self.lost(None, hung=True)) if timeout else None

    @contextlib.contextmanager
    def collective(self):
        """A block of collective calls: a lost worker ends it with `errors.WorkerLost`."""
        with self._watchdog.watching() if self._watchdog else contextlib.nullcontext():
            try:
                yield
            except tf.errors.OpError as exc:
                lost = watchdog.lost_worker(exc, self.task, self.lost)
                if lost is None:
                    raise
                raise lost from None

    def lost(self, task, hung=False):
        """The worker-lost line: which worker (`task`, or None: another than this one, named
        when there is only one), and the checkpoint to resume from."""
        others = [t for t in range(len(self.workers)) if t != self.task]
        if task is None and len(others) == 1:
            [task] = others
        who = f'worker {task} ({self.workers[task]})' if task is not None else \
            f'a worker other than this one (worker {self.task}, {self.workers[self.task]})'
        how = f'stopped answering for {self.timeout} s (--collective-timeout)' if hung else 'was lost'
        resume = (f'resume from {self.latest_checkpoint} with --resume' if self.latest_checkpoint
                  else 'no checkpoint was written yet: start again')
        return f'{who} {how}: {resume}'


def _collective(method):
    """Run `method` as a block of collective calls of the runner's `cluster`."""
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        with self.cluster.collective():
            return method(self, *args, **kwargs)
    return wrapped


class Replicated:
    """Runs meta-iterations and evaluations under a tf.distribute `strategy`, on the workers
    of `cluster` (default: this machine alone)."""

    def __init__(self, strategy, cluster=None):
        self.strategy = strategy
        self.cluster = cluster or Cluster(['this machine'], 0)
        self.replicas = strategy.num_replicas_in_sync
        self.is_chief = strategy.extended.should_checkpoint
        self.device_type = device_type()
        self._functions = {}  # id(algo) -> (train, evaluate)
        self._any_stop = tf.function(self._reduce_flag)
        self._gather = tf.function(self._gather_rows)

    @property
    def workers(self):
        """The workers' addresses, in worker order."""
        return self.cluster.workers

    def train_step(self, algo, tasks, meta_step_size, parallel):
        """One --parallel-tasks meta-iteration, its tasks split across the replicas. Only
        this process's replicas' tasks are decoded and stacked."""
        if not parallel:
            raise ValueError('replicas run --parallel-tasks meta-iterations only (experiment refuses the rest)')
        train, _ = self._prepare(algo)
        parts = [tasks[part] for part in _slices(len(tasks), self.replicas)]
        self._call(train, self._distribute(parts, stack_tasks), tf.constant(len(tasks), algo.dtype),
                   tf.constant(meta_step_size, algo.dtype))

    def logits(self, algo, episodes):
        """Query logits after fine-tuning on each episode, the episodes split across replicas."""
        _, evaluate = self._prepare(algo)
        per_replica = math.ceil(len(episodes) / self.replicas)
        padded = list(episodes) + [episodes[-1]] * (per_replica * self.replicas - len(episodes))
        parts = [padded[r * per_replica:(r + 1) * per_replica] for r in range(self.replicas)]
        return self._call(evaluate, self._distribute(parts, stack_episodes)).numpy()[:len(episodes)]

    @_collective
    def gather(self, values):
        """Every worker's `values` (numbers, exact in float64), as rows [workers, n]."""
        values = tf.constant(np.asarray(values, np.float64)[None])
        rows = self._gather(self.strategy.experimental_distribute_values_from_function(lambda _: values)).numpy()
        return rows[::self.replicas // len(self.cluster.workers)]  # a worker's replicas send the same row

    def agreed_minimum(self, count):
        """The smallest `count` of all workers (e.g. the evaluation episodes that fit memory),
        so that every worker runs the same calls."""
        return int(self.gather([count]).min())

    def checkpointed(self, path):
        """Training wrote (the chief) or saw written (the others) checkpoint `path`."""
        self.cluster.latest_checkpoint = path

    def own(self, tasks):
        """The tasks of a meta-batch that this process's replicas run (`train_step`'s
        slices; replica ids count a worker's local replicas after the previous workers')."""
        local = len(self.strategy.extended.worker_devices)
        slices = _slices(len(tasks), self.replicas)[self.cluster.task * local:(self.cluster.task + 1) * local]
        return [task for part in slices for task in tasks[part]]

    @_collective
    def any_stop(self, requested):
        """Whether any process asked to stop (an all-reduce: every process calls it)."""
        flag = self.strategy.experimental_distribute_values_from_function(lambda _: tf.constant(float(requested)))
        return bool(self._any_stop(flag) > 0)

    def barrier(self):
        """Wait until every process gets here (an all-reduce of nothing)."""
        self.any_stop(False)

    def _reduce_flag(self, flag):
        # identity: a tensor placed on the replica's device (inputs of a function are on none)
        summed = self.strategy.run(lambda f: tf.distribute.get_replica_context().all_reduce('sum', tf.identity(f)),
                                   args=(flag,))
        return self.strategy.experimental_local_results(summed)[0]

    def _call(self, function, *args):
        """`function(*args)` as a block of collective calls; tracing it first, outside the
        block: tracing is local work that may take long on a loaded machine."""
        function.get_concrete_function(*args)
        with self.cluster.collective():
            return function(*args)

    def _gather_rows(self, rows):
        gathered = self.strategy.run(lambda r: tf.distribute.get_replica_context().all_gather(tf.identity(r), axis=0),
                                     args=(rows,))
        return self.strategy.experimental_local_results(gathered)[0]

    def _distribute(self, parts, stack):
        """Per-replica values: replica r gets `stack(parts[r])` (replicas numbered across all
        processes, so each process stacks, and decodes, only its own replicas' parts)."""
        def value(context):
            return tuple(tf.constant(a) for a in stack(parts[context.replica_id_in_sync_group]))
        return self.strategy.experimental_distribute_values_from_function(value)

    def _prepare(self, algo):
        """Give `algo` per-replica working copies and the chief's weights (once), and its
        distributed train and evaluate functions."""
        if id(algo) not in self._functions:
            with self.strategy.scope():
                algo.make_workspace()
            with self.cluster.collective():
                self._broadcast_from_chief(algo)
            self._functions[id(algo)] = (tf.function(lambda *a: self._train(algo, *a)),
                                         tf.function(lambda inputs: self._evaluate(algo, inputs)))
        return self._functions[id(algo)]

    def _train(self, algo, inputs, num_tasks, meta_step_size):
        def replica(images, labels, heads, last):
            sums, slot_sums, counters = algo.adapt(images, labels, heads, last)
            sums, slot_sums = tf.distribute.get_replica_context().all_reduce('sum', (sums, slot_sums))
            return sums, slot_sums, counters
        per_replica = self.strategy.run(replica, args=inputs)
        sums, slot_sums, counters = tf.nest.map_structure(
            lambda v: self.strategy.experimental_local_results(v)[0], per_replica)
        algo.finish(*mean((sums, slot_sums), num_tasks), counters, meta_step_size)

    def _evaluate(self, algo, inputs):
        def replica(*stacked):
            return tf.distribute.get_replica_context().all_gather(algo.adapted_logits(*stacked), axis=0)
        return self.strategy.experimental_local_results(self.strategy.run(replica, args=inputs))[0]

    def _broadcast_from_chief(self, algo):
        """Make every process start from the chief's weights and optimizer state (the same
        seed gives the same ones, but not necessarily on different hardware)."""
        state = algo.variables + tf.nest.flatten(algo.optimizer_state)
        chief = 1 if self.is_chief else 0

        @tf.function
        def broadcast():
            def replica():
                context = tf.distribute.get_replica_context()
                first = tf.cast(tf.equal(context.replica_id_in_sync_group, 0), tf.float64) * chief
                return context.all_reduce('sum', [tf.cast(v, tf.float64) * first for v in state])
            values = self.strategy.experimental_local_results(self.strategy.run(replica))[0]
            for var, value in zip(state, values):
                var.assign(tf.cast(value, var.dtype))
        broadcast()


def _slices(count, parts):
    """`parts` contiguous slices of range(count), the first `count % parts` one longer."""
    sizes = [count // parts + (r < count % parts) for r in range(parts)]
    starts = np.cumsum([0] + sizes)
    return [slice(int(a), int(b)) for a, b in zip(starts, starts[1:])]
