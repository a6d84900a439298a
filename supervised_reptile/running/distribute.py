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
  meta-iteration, so that all processes stop after the same one.

Every process samples the same tasks from the same seeded stream and keeps only its
replicas' slices: no images travel between processes, and per meta-iteration each replica
sends the size of the weights plus the optimizer's moments (see README).
"""

import math
import os

import numpy as np
import tensorflow as tf

from ..errors import InputError
from ..reptile import mean, stack_episodes, stack_tasks


class Local:
    """One process, one device: the algorithm's own methods."""
    replicas = 1
    is_chief = True

    @property
    def device_type(self):
        """'GPU' when TensorFlow sees one (it places the ops there), else 'CPU'."""
        return 'GPU' if tf.config.list_logical_devices('GPU') else 'CPU'

    def train_step(self, algo, tasks, meta_step_size, parallel):
        """One meta-iteration of `algo` on `tasks`."""
        algo.train_step(tasks, meta_step_size, parallel=parallel)

    def logits(self, algo, episodes):
        """Query logits of `algo` after fine-tuning on each of `episodes`."""
        return algo.evaluate(episodes)

    def any_stop(self, requested):
        """Whether any process asked to stop: here, just this one."""
        return requested

    def barrier(self):
        """Wait until every process gets here: here, at once."""


LOCAL = Local()


def make_runner(kind, cpu_replicas=None):
    """The runner for --distribute `kind` (None: `LOCAL`). Call it before anything else
    touches TensorFlow's devices: logical CPU devices and multi-worker collectives can only
    be set up before the runtime starts."""
    if kind is None:
        return LOCAL
    if kind == 'mirrored':
        return Replicated(tf.distribute.MirroredStrategy(_mirrored_devices(cpu_replicas)))
    return Replicated(tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_cluster_resolver()))


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


def _cluster_resolver():
    """The cluster from TF_CONFIG (TensorFlow's standard) or else from SLURM's environment."""
    if os.environ.get('TF_CONFIG'):
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if os.environ.get('SLURM_JOB_ID'):
        return tf.distribute.cluster_resolver.SlurmClusterResolver()
    raise InputError('--distribute multi-worker needs the cluster: set TF_CONFIG, or run it as a SLURM job step '
                     '(see README)')


class Replicated:
    """Runs meta-iterations and evaluations under a tf.distribute `strategy`."""

    def __init__(self, strategy):
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.is_chief = strategy.extended.should_checkpoint
        self.device_type = 'GPU' if tf.config.list_logical_devices('GPU') else 'CPU'
        self._functions = {}  # id(algo) -> (train, evaluate)
        self._any_stop = tf.function(self._reduce_flag)

    def train_step(self, algo, tasks, meta_step_size, parallel):
        """One --parallel-tasks meta-iteration, its tasks split across the replicas."""
        train, _ = self._prepare(algo)
        inputs = self._distribute(stack_tasks(tasks), _slices(len(tasks), self.replicas))
        train(inputs, tf.constant(len(tasks), algo.dtype), tf.constant(meta_step_size, algo.dtype))

    def logits(self, algo, episodes):
        """Query logits after fine-tuning on each episode, the episodes split across replicas."""
        _, evaluate = self._prepare(algo)
        per_replica = math.ceil(len(episodes) / self.replicas)
        padded = list(episodes) + [episodes[-1]] * (per_replica * self.replicas - len(episodes))
        slices = [slice(r * per_replica, (r + 1) * per_replica) for r in range(self.replicas)]
        return evaluate(self._distribute(stack_episodes(padded), slices)).numpy()[:len(episodes)]

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

    def _distribute(self, arrays, slices):
        """Per-replica values: replica r gets `slices[r]` of each array (numbered across all
        processes, so each process builds only its own replicas' slices)."""
        def value(context):
            part = slices[context.replica_id_in_sync_group]
            return tuple(tf.constant(a[part]) for a in arrays)
        return self.strategy.experimental_distribute_values_from_function(value)

    def _prepare(self, algo):
        """Give `algo` per-replica working copies and the chief's weights (once), and its
        distributed train and evaluate functions."""
        if id(algo) not in self._functions:
            with self.strategy.scope():
                algo.make_workspace()
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
