"""Reptile and first-order MAML (FOML): the meta-learning algorithms.

Both meta-learn an initialization for a Keras model. A meta-iteration trains a copy of the
weights on each task of a meta-batch with a few inner optimizer steps, then moves the
model's variables toward the results: Reptile along (adapted - initial), FOML along the
last inner step only. The inner loops run inside `tf.function`: one call per
meta-iteration or per batch of evaluation episodes, no Python per step.

Semantics kept from the original (see the golden tests): the loss is the sum of the
per-example cross-entropies; weights are multiplied by the weight-decay rate before each
inner step; during meta-training the optimizer state (moments, step count) carries over
from task to task and across meta-iterations, while during evaluation it is used and then
discarded with the adapted weights.

Where these run and how many at once is not decided here: `memory` sizes evaluation
calls, `distribute` splits a meta-batch or a batch of episodes across devices, calling
`adapt` and `finish` (one meta-iteration's two halves) or `adapted_logits`.
"""

import numpy as np
import tensorflow as tf

from .models import apply, from_groups, repeated_groups
from .optimizers import after
from .tasks import make_task, split_train_test


class Reptile:
    """Reptile on a Keras model, with the inner optimizer of `optimizers`.

    The inner loops never touch the model's variables: they train working copies (`params`,
    and `slots` for the optimizer's moments) that hold every group's weights at once in
    the grouped layout of `models.from_groups`, updated in place by the optimizer's fused
    kernels. The optimizer's counters (step count, beta powers) flow through the loops as
    tensors, and each step's reads wait for them: that orders the steps.
    """

    def __init__(self, model, optimizer, transductive=False, weight_decay_rate=1.0, compute_dtype=None):
        """`compute_dtype` (e.g. 'bfloat16') runs the network in lower precision; weights,
        optimizer state and the loss stay in the variables' dtype."""
        self.model = model
        self.optimizer = optimizer
        self.transductive = transductive
        self.weight_decay_rate = weight_decay_rate
        self.variables = model.trainable_variables
        self.dtype = tf.as_dtype(self.variables[0].dtype)
        self.compute_dtype = tf.as_dtype(compute_dtype or self.dtype)
        self.optimizer_state = tf.nest.map_structure(
            lambda t: tf.Variable(t, trainable=False), optimizer.init_state(self.variables))
        self.make_workspace()

    def make_workspace(self):
        """Create the working copies of the weights and optimizer slots. They are ON_READ
        variables: plain ones by default, and one per replica when created inside a
        tf.distribute scope (see `distribute`), so that replicas run their own inner loops."""
        work = lambda: [tf.Variable(tf.zeros(v.shape, self.dtype), trainable=False, shape=v.shape[:-1] + (None,),
                                    synchronization=tf.VariableSynchronization.ON_READ,
                                    aggregation=tf.VariableAggregation.SUM)
                        for v in self.variables]
        self.params = work()
        self.slots = {name: work() for name in self.optimizer.slot_names}

    def task(self, samples, inner_batch_size, inner_iters, replacement):
        """The `Task` (images and inner mini-batches) of one training task's samples."""
        return make_task(samples, inner_batch_size, inner_iters, replacement)

    def train_step(self, tasks, meta_step_size, parallel=False):
        """One meta-iteration on `tasks` (a list of `tasks.Task`).

        By default tasks run one after another, the optimizer state flowing from each task
        into the next, exactly as the original. With `parallel`, all tasks run at once as
        one grouped computation: each starts from the optimizer state at the start of the
        meta-iteration, and afterwards the state's moments are the mean over tasks and its
        step count has advanced by one task's steps.
        """
        meta_step_size = tf.constant(meta_step_size, self.dtype)
        train = self._train_parallel if parallel else self._train
        train(*stack_tasks(tasks), meta_step_size)

    def evaluate(self, episodes):
        """Query logits [episodes, queries, classes] after fine-tuning on each episode.

        `episodes` is a list of (task, query images); all run at once, each from the
        current weights and optimizer state, which stay unchanged. Transductive: one batch
        of all queries. Otherwise each query is classified in a batch of the task's images
        plus that query, so batch norm sees one query at a time.
        """
        return self._evaluate(*stack_episodes(episodes)).numpy()

    def _task_result(self, before_last, final):
        """What a task contributes to the meta-update: its adapted weights."""
        return final

    def _meta_update(self, initial, mean_result, meta_step_size):
        """Interpolate toward the mean adapted weights (the original's order of operations)."""
        return [i + (m - i) * meta_step_size for i, m in zip(initial, mean_result)]

    @tf.function
    def _train(self, images, labels, heads, last, meta_step_size):
        initial = [tf.convert_to_tensor(v) for v in self.variables]
        counters = self._snapshot(1)
        total = [tf.zeros_like(p) for p in initial]
        num_tasks = tf.shape(images)[0]
        for t in tf.range(num_tasks):
            counters = self._assign(self.params, initial, counters)
            pool = (images[t][None], labels[t][None])
            counters = self._inner_loop(counters, pool, heads[t][None])
            before_last = self._read(counters)
            counters = self._step(counters, *_gather(pool, last[t][None]))
            total = [a + r for a, r in zip(total, self._task_result(before_last, self._read(counters)))]
        slots = {name: [from_groups(s, 1)[0] for s in self._read(counters, work)] for name, work in self.slots.items()}
        self.finish([a / tf.cast(num_tasks, a.dtype) for a in total], slots, counters, meta_step_size)

    @tf.function
    def _train_parallel(self, images, labels, heads, last, meta_step_size):
        sums, slot_sums, counters = self.adapt(images, labels, heads, last)
        num_tasks = tf.cast(tf.shape(images)[0], self.dtype)
        self.finish(*mean((sums, slot_sums), num_tasks), counters, meta_step_size)

    def adapt(self, images, labels, heads, last):
        """The inner loops of a batch of tasks at once (stacked by `stack_tasks`), each from
        the current weights and optimizer state: (sum over tasks of their meta-update
        contributions, {slot: sum over tasks of its final values}, the counters after one
        task's steps). Sums, so that replicas can add theirs up (see `distribute`)."""
        groups = tf.shape(images)[0]
        pool = (images, labels)
        counters = self._inner_loop(self._snapshot(groups), pool, heads)
        before_last = self._read(counters)
        counters = self._step(counters, *_gather(pool, last))
        total = lambda grouped: [tf.reduce_sum(from_groups(g, groups), axis=0) for g in grouped]
        sums = total(self._task_result(before_last, self._read(counters)))
        slot_sums = {name: total(self._read(counters, work)) for name, work in self.slots.items()}
        return sums, slot_sums, counters

    def finish(self, mean_result, slots, counters, meta_step_size):
        """The meta-update from the tasks' mean contribution; keep the optimizer slots (as
        given) and counters for the next meta-iteration."""
        initial = [tf.convert_to_tensor(v) for v in self.variables]
        for var, value in zip(self.variables, self._meta_update(initial, mean_result, meta_step_size)):
            var.assign(value)
        for name, values in slots.items():
            for slot, value in zip(self.optimizer_state[name], values):
                slot.assign(value)
        for key, value in counters.items():
            self.optimizer_state[key].assign(value)

    @tf.function
    def _evaluate(self, images, labels, batches, queries):
        return self.adapted_logits(images, labels, batches, queries)

    def adapted_logits(self, images, labels, batches, queries):
        """Query logits [episodes, queries, classes] of stacked episodes (`stack_episodes`)."""
        num_episodes, num_queries = queries.shape[:2]
        pool = (images, labels)
        counters = self._inner_loop(self._snapshot(num_episodes), pool, batches)
        params = self._read(counters)
        queries = tf.cast(queries, self.dtype)
        if self.transductive:
            return self._logits(params, queries)
        # Query q of every episode at once: its episode's weights on the task's images plus q.
        support = tf.cast(images, self.dtype)
        logits = tf.TensorArray(self.dtype, size=num_queries)
        for q in tf.range(num_queries):
            batch = tf.concat([support, queries[:, q][:, None]], axis=1)
            logits = logits.write(q, self._logits(params, batch)[:, -1])
        return tf.transpose(logits.stack(), [1, 0, 2])

    def _snapshot(self, groups):
        """Load the working copies with the weights and optimizer slots, repeated for `groups`
        groups; return the optimizer's counters (step count, beta powers)."""
        counters = {key: tf.convert_to_tensor(value) for key, value in self.optimizer_state.items()
                    if not isinstance(value, list)}
        repeated = lambda values: [repeated_groups(v, groups) for v in values]
        counters = self._assign(self.params, repeated(self.variables), counters)
        for name, work in self.slots.items():
            counters = self._assign(work, repeated(self.optimizer_state[name]), counters)
        return counters

    @staticmethod
    def _assign(work, values, counters):
        """Assign `values` to the working copies `work`; returns counters ordered after that."""
        return after([w.assign(v, read_value=False) for w, v in zip(work, values)], counters)

    def _read(self, counters, work=None):
        """The working copies `work` (default: the weights), read after the step that
        produced `counters`."""
        with tf.control_dependencies(tf.nest.flatten(counters)):
            return [w.read_value() for w in (self.params if work is None else work)]

    def _logits(self, params, x, second_order=False):
        """The network on `x` with grouped weights `params`, computed in `compute_dtype`
        (`second_order`: see `models.apply`)."""
        weights = [tf.cast(w, self.compute_dtype) for w in params]
        return tf.cast(apply(self.model, weights, tf.cast(x, self.compute_dtype), second_order), self.dtype)

    def _inner_loop(self, counters, pool, batches):
        """One inner step per column of `batches` [groups, steps, batch], indices into the
        groups' (images, labels) `pool`."""
        for i in tf.range(tf.shape(batches)[1]):
            counters = self._step(counters, *_gather(pool, batches[:, i]))
        return counters

    def _step(self, counters, x, y):
        """Weight decay, then one optimizer step on the summed cross-entropy of (x, y),
        for every group at once (groups are independent: the loss is a sum over them)."""
        if self.weight_decay_rate != 1:
            counters = self._assign(self.params, self._decayed(self._read(counters)), counters)
        params = self._read(counters)
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = self._loss(params, x, y)
        return self.optimizer.apply(self.params, tape.gradient(loss, params), self.slots, counters)

    def _loss(self, params, x, y, second_order=False):
        """The original's inner loss: the summed cross-entropy of (x, y) under grouped
        `params` (`second_order`: see `models.apply`)."""
        return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, self._logits(params, x, second_order)))

    def _decayed(self, params):
        """`params` times the weight-decay rate, as the original applies it before each inner step."""
        if self.weight_decay_rate == 1:
            return params
        rate = tf.constant(self.weight_decay_rate, self.dtype)
        return [p * rate for p in params]


class FOML(Reptile):
    """First-order MAML: move along the last inner step of each task only.

    With `tail_shots`, the last inner batch is a separate set of `tail_shots` examples per
    class, and the earlier batches come from the rest of the task.
    """

    def __init__(self, *args, tail_shots=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tail_shots = tail_shots

    def task(self, samples, inner_batch_size, inner_iters, replacement):
        if self.tail_shots is None:
            return super().task(samples, inner_batch_size, inner_iters, replacement)
        rest, tail = split_train_test(samples, test_shots=self.tail_shots)
        return make_task(rest, inner_batch_size, inner_iters - 1, replacement, tail=tail)

    def _task_result(self, before_last, final):
        """The last inner step of the task."""
        return [f - b for b, f in zip(before_last, final)]

    def _meta_update(self, initial, mean_result, meta_step_size):
        return [i + m * meta_step_size for i, m in zip(initial, mean_result)]


def mean(sums, count):
    """Every tensor of the nested `sums` divided by `count`."""
    return tf.nest.map_structure(lambda s: s / count, sums)


def _gather(pool, indices):
    """The (images, labels) of `indices` [groups, batch] in the groups' `pool`."""
    return tuple(tf.gather(a, indices, batch_dims=1) for a in pool)


def stack_tasks(tasks):
    """Tasks as the training functions take them: images [tasks, n, ...], labels [tasks, n],
    all but the last batch [tasks, batches - 1, batch] and the last [tasks, batch'] (its size
    may differ: FOML's tail)."""
    images, labels = (np.stack(a) for a in zip(*[(t.images, t.labels) for t in tasks]))
    heads = np.stack([np.stack(t.batches[:-1]) if len(t.batches) > 1 else np.zeros((0, 0), np.int32) for t in tasks])
    return images, labels, heads, np.stack([t.batches[-1] for t in tasks])


def stack_episodes(episodes):
    """(task, query images) pairs as `adapted_logits` takes them: images [episodes, n, ...],
    labels, batches [episodes, steps, batch] and queries [episodes, queries, ...]."""
    tasks, queries = zip(*episodes)
    images, labels = (np.stack(a) for a in zip(*[(t.images, t.labels) for t in tasks]))
    return images, labels, np.stack([np.stack(t.batches) for t in tasks]), np.stack(queries)
