"""Second-order MAML (Finn et al., 2017): FOML with its first-order approximation removed.

A task's inner loop takes K steps from the initialization theta_0 (`--inner-iters K`);
FOML, as the original implements it, moves theta_0 along the last one,
delta = theta_K - theta_{K-1}, which with plain SGD and no weight decay is
-lr * grad L(theta_{K-1}): the last mini-batch's loss L, differentiated at the weights the
step starts from. MAML differentiates the same loss with respect to the initialization,
through the K - 1 steps before it:

    delta_MAML = J^T delta,  J = d theta_{K-1} / d theta_0,
               = -lr * d L(theta_{K-1}(theta_0)) / d theta_0       (no weight decay)

and moves theta_0 exactly as FOML does: theta_0 += eps * mean over tasks of delta_MAML.
So `--foml` and `--maml` differ by the inner loop's Jacobian only (`first_order=True`
cuts it, J = I, and gives FOML's update). With a weight-decay rate w, FOML's last step
is delta = (w - 1) theta - lr grad L(w theta) = -lr grad F(theta) with
F(theta) = L(w theta) / w + (1 - w) |theta|^2 / (2 lr), and J^T delta is again the
gradient of F through the inner loop, scaled by -lr.

The last batch plays the part of MAML's query set (separate examples with --foml-tail),
the K - 1 batches before it the support set: `--inner-iters K` is MAML with K - 1
adaptation steps, and `--inner-iters 1` is joint training, as FOML.

The inner steps are the `--sgd` rule Finn et al. used, unrolled as tensors and
differentiated twice (a `tf.GradientTape` per step inside one around the loop); the TF1
Adam rule is not differentiated. The outer tape keeps every step's activations and
gradients until the backward pass, which costs about a Hessian-vector product per step:
time and memory grow with K on top of FOML's (benchmarks/maml.py measures them).
Evaluation fine-tunes exactly as Reptile and FOML do.
"""

import tensorflow as tf

from .models import from_groups, repeated_groups
from .optimizers import SGD
from .reptile import FOML, _gather, mean


class MAML(FOML):
    """MAML on a Keras model, inner SGD only; FOML's tasks, tail and meta-update.

    The tasks of a meta-batch run one after another by default (one task's unrolled loop
    in memory at a time) and side by side with `parallel` (`Reptile.train_step`); with SGD,
    which has no moments, both compute the same update.
    """

    def __init__(self, model, optimizer, *args, first_order=False, **kwargs):
        """`first_order=True` replaces the inner loop's Jacobian by the identity (a
        stop-gradient): FOML's update through this class's code, as the tests check."""
        if not isinstance(optimizer, SGD):
            raise ValueError(f'MAML differentiates through plain SGD inner steps, not {type(optimizer).__name__}')
        super().__init__(model, optimizer, *args, **kwargs)
        self.first_order = first_order

    @tf.function
    def _train(self, images, labels, heads, last, meta_step_size):
        num_tasks = tf.shape(images)[0]
        total = [tf.zeros_like(v) for v in self.variables]
        for t in tf.range(num_tasks):
            sums = self.task_sums(images[t][None], labels[t][None], heads[t][None], last[t][None])
            total = [a + s for a, s in zip(total, sums)]
        self.finish(mean(total, tf.cast(num_tasks, self.dtype)), {}, self._counters(num_tasks, heads), meta_step_size)

    def adapt(self, images, labels, heads, last):
        """`Reptile.adapt` for MAML: (sum over the tasks of delta_MAML, no slots, the
        counters after one task's steps)."""
        return self.task_sums(images, labels, heads, last), {}, self._counters(1, heads)

    def _counters(self, num_tasks, heads):
        """The step count after `num_tasks` tasks' inner steps (those of `heads`, plus the last)."""
        steps = tf.cast(num_tasks * (tf.shape(heads)[1] + 1), tf.int64)
        return {'step': tf.convert_to_tensor(self.optimizer_state['step']) + steps}

    def task_sums(self, images, labels, heads, last):
        """The sum of delta_MAML (module docstring) over tasks stacked by `stack_tasks`,
        all at once in the grouped layout, each from the current weights."""
        groups = images.shape[0]
        initial = [repeated_groups(v, groups) for v in self.variables]
        pool = (images, labels)
        with tf.GradientTape() as tape:
            tape.watch(initial)
            before_last = self._unroll(initial, pool, heads)
            if self.first_order:
                before_last = [i + tf.stop_gradient(b - i) for i, b in zip(initial, before_last)]
        last_step = [f - b for f, b in zip(self._sgd_step(before_last, *_gather(pool, last)), before_last)]
        pulled_back = tape.gradient(before_last, initial, output_gradients=last_step)
        return [tf.reduce_sum(from_groups(p, groups), axis=0) for p in pulled_back]

    def _unroll(self, params, pool, batches):
        """Grouped `params` after one inner step per column of `batches` [groups, steps,
        batch], as tensors an enclosing tape differentiates (second order)."""
        for i in tf.range(tf.shape(batches)[1]):
            params = self._sgd_step(params, *_gather(pool, batches[:, i]))
        return params

    def _sgd_step(self, params, x, y):
        """One inner step as a function of `params`: weight decay, then SGD on the summed
        cross-entropy of (x, y) -- `Reptile._step`'s rule, differentiable."""
        params = self._decayed(params)
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = self._loss(params, x, y, second_order=True)
        return self.optimizer.step(params, tape.gradient(loss, params))

