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
"""

import numpy as np
import tensorflow as tf

from .models import apply, from_groups, to_groups
from .optimizers import after
from .tasks import inner_batches, split_train_test, to_arrays


class Reptile:
    """Reptile on a Keras model, with the inner optimizer of `optimizers`.

    The inner loops never touch the model's variables: they train working copies (`params`,
    and `slots` for the optimizer's moments) that hold every group's weights at once in
    the grouped layout of `models.to_groups`, updated in place by the optimizer's fused
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
        self.dtype = self.variables[0].dtype
        self.compute_dtype = tf.as_dtype(compute_dtype or self.dtype)
        self.optimizer_state = tf.nest.map_structure(
            lambda t: tf.Variable(t, trainable=False), optimizer.init_state(self.variables))
        work = lambda: [tf.Variable(tf.zeros(v.shape, self.dtype), trainable=False, shape=v.shape[:-1] + (None,))
                        for v in self.variables]
        self.params = work()
        self.slots = {name: work() for name in optimizer.slot_names}

    def task_batches(self, samples, inner_batch_size, inner_iters, replacement):
        """The inner mini-batches of one training task, as (images, labels) arrays."""
        return inner_batches(samples, inner_batch_size, inner_iters, replacement)

    def train_step(self, tasks, meta_step_size, parallel=False):
        """One meta-iteration on `tasks`, each a list of (images, labels) inner batches.

        By default tasks run one after another, the optimizer state flowing from each task
        into the next, exactly as the original. With `parallel`, all tasks run at once as
        one grouped computation: each starts from the optimizer state at the start of the
        meta-iteration, and afterwards the state's moments are the mean over tasks and its
        step count has advanced by one task's steps.
        """
        heads, last_x, last_y = _stack_tasks(tasks)
        meta_step_size = tf.constant(meta_step_size, self.dtype)
        if parallel:
            xs, ys = (np.swapaxes(a, 0, 1) for a in heads)  # [batches, tasks, batch, ...]
            self._train_parallel(xs, ys, last_x, last_y, meta_step_size)
        else:
            xs, ys = (np.expand_dims(a, 2) for a in heads)  # [tasks, batches, 1, batch, ...]
            self._train(xs, ys, last_x[:, None], last_y[:, None], meta_step_size)

    def evaluate(self, episodes):
        """Query logits [episodes, queries, classes] after fine-tuning on each episode.

        `episodes` is a list of (inner batches, support images, query images); all run at
        once, each from the current weights and optimizer state, which stay unchanged.
        Transductive: one batch of all queries. Otherwise each query is classified in a
        batch of the support images plus that query, so batch norm sees one query at a time.
        """
        batches, support_x, query_x = zip(*episodes)
        xs = np.stack([np.stack([x for x, _ in b]) for b in batches], axis=1)  # [batches, episodes, ...]
        ys = np.stack([np.stack([y for _, y in b]) for b in batches], axis=1)
        return self._adapted_logits(xs, ys, np.stack(support_x), np.stack(query_x)).numpy()

    def _task_result(self, before_last, final):
        """What a task contributes to the meta-update: its adapted weights."""
        return final

    def _meta_update(self, initial, mean_result, meta_step_size):
        """Interpolate toward the mean adapted weights (the original's order of operations)."""
        return [i + (m - i) * meta_step_size for i, m in zip(initial, mean_result)]

    @tf.function
    def _train(self, xs, ys, last_x, last_y, meta_step_size):
        initial = [tf.convert_to_tensor(v) for v in self.variables]
        counters = self._snapshot(1)
        total = [tf.zeros_like(p) for p in initial]
        num_tasks = tf.shape(xs)[0]
        for t in tf.range(num_tasks):
            counters = self._assign(self.params, initial, counters)
            counters = self._inner_loop(counters, xs[t], ys[t])
            before_last = self._read(counters)
            counters = self._step(counters, last_x[t], last_y[t])
            total = [a + r for a, r in zip(total, self._task_result(before_last, self._read(counters)))]
        self._finish(initial, [a / tf.cast(num_tasks, a.dtype) for a in total], meta_step_size, counters, 1)

    @tf.function
    def _train_parallel(self, xs, ys, last_x, last_y, meta_step_size):
        groups = tf.shape(last_x)[0]
        initial = [tf.convert_to_tensor(v) for v in self.variables]
        counters = self._inner_loop(self._snapshot(groups), xs, ys)
        before_last = self._read(counters)
        counters = self._step(counters, last_x, last_y)
        results = self._task_result(before_last, self._read(counters))
        mean = [tf.reduce_mean(from_groups(r, groups), axis=0) for r in results]
        self._finish(initial, mean, meta_step_size, counters, groups)

    @tf.function
    def _adapted_logits(self, xs, ys, support_x, query_x):
        num_episodes, num_queries = query_x.shape[:2]
        counters = self._inner_loop(self._snapshot(num_episodes), xs, ys)
        params = self._read(counters)
        query_x = tf.cast(query_x, self.dtype)
        if self.transductive:
            return self._logits(params, query_x)
        # One group per query: the episode's weights on its support images followed by that query.
        params = [to_groups(tf.repeat(from_groups(p, num_episodes), num_queries, axis=0)) for p in params]
        support = tf.repeat(tf.cast(support_x, self.dtype)[:, None], num_queries, axis=1)
        batches = tf.concat([support, query_x[:, :, None]], axis=2)
        logits = self._logits(params, tf.reshape(batches, [-1, *batches.shape[2:]]))[:, -1]
        return tf.reshape(logits, [num_episodes, num_queries, -1])

    def _snapshot(self, groups):
        """Load the working copies with the weights and optimizer slots, repeated for `groups`
        groups; return the optimizer's counters (step count, beta powers)."""
        counters = {key: tf.convert_to_tensor(value) for key, value in self.optimizer_state.items()
                    if not isinstance(value, list)}
        repeated = lambda values: [to_groups(tf.repeat(tf.convert_to_tensor(v)[None], groups, axis=0)) for v in values]
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

    def _finish(self, initial, mean_result, meta_step_size, counters, groups):
        """Apply the meta-update to the variables and keep the (group-averaged) optimizer state."""
        for var, value in zip(self.variables, self._meta_update(initial, mean_result, meta_step_size)):
            var.assign(value)
        for name, work in self.slots.items():
            for slot, value in zip(self.optimizer_state[name], self._read(counters, work)):
                slot.assign(tf.reduce_mean(from_groups(value, groups), axis=0))
        for key, value in counters.items():
            self.optimizer_state[key].assign(value)

    def _logits(self, params, x):
        """The network on `x` with grouped weights `params`, computed in `compute_dtype`."""
        weights = [tf.cast(w, self.compute_dtype) for w in params]
        return tf.cast(apply(self.model, weights, tf.cast(x, self.compute_dtype)), self.dtype)

    def _inner_loop(self, counters, xs, ys):
        """One inner step per batch of xs [num_batches, groups, batch, ...]."""
        for i in tf.range(tf.shape(xs)[0]):
            counters = self._step(counters, xs[i], ys[i])
        return counters

    def _step(self, counters, x, y):
        """Weight decay, then one optimizer step on the summed cross-entropy of (x, y),
        for every group at once (groups are independent: the loss is a sum over them)."""
        if self.weight_decay_rate != 1:
            rate = tf.constant(self.weight_decay_rate, self.dtype)
            counters = self._assign(self.params, [p * rate for p in self._read(counters)], counters)
        params = self._read(counters)
        with tf.GradientTape() as tape:
            tape.watch(params)
            logits = self._logits(params, x)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        return self.optimizer.apply(self.params, tape.gradient(loss, params), self.slots, counters)


class FOML(Reptile):
    """First-order MAML: move along the last inner step of each task only.

    With `tail_shots`, the last inner batch is a separate set of `tail_shots` examples per
    class, and the earlier batches come from the rest of the task.
    """

    def __init__(self, *args, tail_shots=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tail_shots = tail_shots

    def task_batches(self, samples, inner_batch_size, inner_iters, replacement):
        if self.tail_shots is None:
            return super().task_batches(samples, inner_batch_size, inner_iters, replacement)
        rest, tail = split_train_test(samples, test_shots=self.tail_shots)
        return super().task_batches(rest, inner_batch_size, inner_iters - 1, replacement) + [to_arrays(tail)]

    def _task_result(self, before_last, final):
        """The last inner step of the task."""
        return [f - b for b, f in zip(before_last, final)]

    def _meta_update(self, initial, mean_result, meta_step_size):
        return [i + m * meta_step_size for i, m in zip(initial, mean_result)]


def _stack_tasks(tasks):
    """((xs, ys), last_x, last_y): all but the last batch of each task [tasks, n-1, batch, ...]
    and the last batches [tasks, batch', ...] (their size may differ: FOML's tail)."""
    last_x, last_y = (np.stack(a) for a in zip(*[task[-1] for task in tasks]))
    if len(tasks[0]) == 1:
        empty = lambda a: np.zeros((len(tasks), 0) + a.shape[1:], a.dtype)
        return (empty(last_x), empty(last_y)), last_x, last_y
    heads = [(np.stack([x for x, _ in task[:-1]]), np.stack([y for _, y in task[:-1]])) for task in tasks]
    return tuple(np.stack(a) for a in zip(*heads)), last_x, last_y
