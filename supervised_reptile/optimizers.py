"""The inner-loop optimizers: the update rules the original uses, on working copies.

Keras optimizers keep their state in their own variables and update the model itself;
the inner loop instead runs steps on working copies of the weights (many groups at once,
see `reptile`), and snapshots and restores the optimizer state per evaluation episode. So
the rules are applied here exactly as TF1's `AdamOptimizer` and `GradientDescentOptimizer`
apply them: through the same fused kernels (`ResourceApplyAdam`,
`ResourceApplyGradientDescent`), which update the weights and slots in place in one pass.

A state is a dict: `step` (int64, steps taken so far), Adam's float32 `beta1_power`/
`beta2_power` accumulators -- the counters -- and per-variable slot lists named like the
original's slot variables. `apply` updates weights and slots (variables) in place and
returns the new counters, which depend on the updates.

TF1 turns hyper-parameters into float32 tensors and casts them to the variable's dtype,
and keeps the beta powers in float32 even for float64 models; `_hyper` and the float32
powers reproduce that, which matters for float64 parity (0.999 in float32 is 0.99900001).
"""

import tensorflow as tf


class Adam:
    """TF1 Adam: lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t), var -= lr_t * m / (sqrt(v) + eps).

    The original uses beta1 = 0, so the first moment is just the last gradient.
    """
    slot_names = ('Adam', 'Adam_1')  # the original's names for the first and second moments

    def __init__(self, learning_rate, beta1=0.0, beta2=0.999, epsilon=1e-8):
        self.learning_rate = learning_rate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon

    def init_state(self, params):
        """Zero moments, step 0 and beta powers beta^1, as a fresh TF1 optimizer."""
        zeros = [tf.zeros_like(p) for p in params]
        return {'step': tf.constant(0, tf.int64),
                'beta1_power': tf.constant(self.beta1, tf.float32),
                'beta2_power': tf.constant(self.beta2, tf.float32),
                'Adam': zeros, 'Adam_1': list(zeros)}

    def apply(self, variables, grads, slots, counters):
        """One Adam step on `variables` and `slots` in place; returns the new counters."""
        dtype = variables[0].dtype
        hyper = dict(beta1_power=tf.cast(counters['beta1_power'], dtype),
                     beta2_power=tf.cast(counters['beta2_power'], dtype),
                     lr=_hyper(self.learning_rate, dtype), beta1=_hyper(self.beta1, dtype),
                     beta2=_hyper(self.beta2, dtype), epsilon=_hyper(self.epsilon, dtype))
        updates = [tf.raw_ops.ResourceApplyAdam(var=var.handle, m=m.handle, v=v.handle, grad=g, **hyper)
                   for var, g, m, v in zip(variables, grads, slots['Adam'], slots['Adam_1'])]
        return after(updates, {'step': counters['step'] + 1,
                                'beta1_power': counters['beta1_power'] * self.beta1,
                                'beta2_power': counters['beta2_power'] * self.beta2})


class SGD:
    """Plain gradient descent: var -= lr * grad. Keeps only a step count."""
    slot_names = ()

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate

    def init_state(self, params):
        """Step 0; SGD has no slots."""
        return {'step': tf.constant(0, tf.int64)}

    def apply(self, variables, grads, slots, counters):
        """One SGD step on `variables` in place; returns the new counters."""
        learning_rate = _hyper(self.learning_rate, variables[0].dtype)
        updates = [tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=learning_rate, delta=g)
                   for var, g in zip(variables, grads)]
        return after(updates, {'step': counters['step'] + 1})

    def step(self, params, grads):
        """The same rule on tensors, `params - lr * grads`: a differentiable function of both,
        for `maml`, which differentiates through the inner steps."""
        learning_rate = _hyper(self.learning_rate, params[0].dtype)
        return [p - learning_rate * g for p, g in zip(params, grads)]


def inner_optimizer(learning_rate, sgd=False):
    """The original's inner optimizer: Adam (beta1 = 0), or plain SGD with --sgd."""
    return SGD(learning_rate) if sgd else Adam(learning_rate)


def after(updates, counters):
    """`counters`, computed only once the `updates` have run: passing them on orders what
    follows after the updates."""
    with tf.control_dependencies(updates):
        return tf.nest.map_structure(tf.identity, counters)


def _hyper(value, dtype):
    """A hyper-parameter as TF1 applies it: a float32 constant cast to the variable dtype."""
    return tf.cast(tf.constant(value, tf.float32), dtype)


class Preconditioned:
    """The published web demo's fine-tuning rule: var -= lr * grad / (sqrt(v) + eps), with v
    the fixed Adam second moments the model was trained with (no momentum, no updates to v)."""
    slot_names = ('adam_v',)

    def __init__(self, second_moments, learning_rate=0.001, epsilon=1e-5):
        self.second_moments = second_moments
        self.learning_rate = learning_rate
        self.epsilon = epsilon

    def init_state(self, params):
        """Step 0 and the fixed second moments."""
        return {'step': tf.constant(0, tf.int64),
                'adam_v': [tf.constant(v, p.dtype) for v, p in zip(self.second_moments, params)]}

    def apply(self, variables, grads, slots, counters):
        """One preconditioned gradient step on `variables` in place; returns the new counters."""
        dtype = variables[0].dtype
        learning_rate, epsilon = _hyper(self.learning_rate, dtype), _hyper(self.epsilon, dtype)
        updates = [var.assign_sub(learning_rate * g / (tf.sqrt(v) + epsilon), read_value=False)
                   for var, g, v in zip(variables, grads, slots['adam_v'])]
        return after(updates, {'step': counters['step'] + 1})
