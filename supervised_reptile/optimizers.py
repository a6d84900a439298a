"""The inner-loop optimizers, as pure functions of (weights, gradients, state).

Keras optimizers keep their state in their own variables and update the model in place;
the inner loop instead needs to run steps on copies of the weights, snapshot and restore
the optimizer state per evaluation episode, and (for speed) carry it through a compiled
loop. So the two update rules the original uses are written out here, exactly as TF1's
`AdamOptimizer` and `GradientDescentOptimizer` apply them.

A state is a dict of tensors: `step` (int64, steps taken so far), Adam's float32
`beta1_power`/`beta2_power` accumulators, and per-variable slot lists named like the
original's slot variables.

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

    def apply(self, params, grads, state):
        """One Adam step; returns (new params, new state)."""
        dtype = params[0].dtype
        beta1, beta2 = _hyper(self.beta1, dtype), _hyper(self.beta2, dtype)
        lr_t = (_hyper(self.learning_rate, dtype) * tf.sqrt(1 - tf.cast(state['beta2_power'], dtype))
                / (1 - tf.cast(state['beta1_power'], dtype)))
        epsilon = _hyper(self.epsilon, dtype)
        new_params, moments, variances = [], [], []
        for p, g, m, v in zip(params, grads, state['Adam'], state['Adam_1']):
            m = m + (g - m) * (1 - beta1)
            v = v + (tf.square(g) - v) * (1 - beta2)
            new_params.append(p - lr_t * m / (tf.sqrt(v) + epsilon))
            moments.append(m)
            variances.append(v)
        return new_params, {'step': state['step'] + 1,
                            'beta1_power': state['beta1_power'] * self.beta1,
                            'beta2_power': state['beta2_power'] * self.beta2,
                            'Adam': moments, 'Adam_1': variances}


class SGD:
    """Plain gradient descent: var -= lr * grad. Keeps only a step count."""
    slot_names = ()

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate

    def init_state(self, params):
        """Step 0; SGD has no slots."""
        return {'step': tf.constant(0, tf.int64)}

    def apply(self, params, grads, state):
        """One SGD step; returns (new params, new state)."""
        learning_rate = _hyper(self.learning_rate, params[0].dtype)
        return ([p - learning_rate * g for p, g in zip(params, grads)], {'step': state['step'] + 1})


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

    def apply(self, params, grads, state):
        """One preconditioned gradient step; returns (new params, new state)."""
        dtype = params[0].dtype
        learning_rate, epsilon = _hyper(self.learning_rate, dtype), _hyper(self.epsilon, dtype)
        new_params = [p - learning_rate * g / (tf.sqrt(v) + epsilon)
                      for p, g, v in zip(params, grads, state['adam_v'])]
        return new_params, {'step': state['step'] + 1, 'adam_v': state['adam_v']}
