"""Keras models of the original's networks, and a functional forward pass over them.

The Keras models own the architecture and the variables (names, shapes, initializers,
order) -- `model.trainable_variables` is in the original's order: conv kernel, conv bias,
batch-norm gamma, beta per block, then dense kernel and bias. The inner loop, however,
must run many optimizer steps on *copies* of the weights without touching the variables,
so `apply` evaluates a model with explicitly given weights.
"""

import functools
import random

import keras
import numpy as np
import tensorflow as tf

BN_EPSILON = 1e-3  # tf.layers.batch_normalization's default, used by the original


def keeps_random(build):
    """Decorate `build` to leave Python's `random` as it found it. Building a Keras model
    draws from `random` (initializer seeds), but the few-shot tasks must come from the
    stream the original would have drawn, however many models are built or loaded."""
    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        state = random.getstate()
        try:
            return build(*args, **kwargs)
        finally:
            random.setstate(state)
    return wrapper


@keeps_random
def omniglot_model(num_classes, filters=64, dtype='float32', conv_bias=True):
    """4 x [conv 3x3 stride 2 'same'; batch norm; ReLU], flatten, dense: 28x28 inputs."""
    layers = [keras.Input((28, 28), dtype=dtype), keras.layers.Reshape((28, 28, 1), dtype=dtype)]
    for _ in range(4):
        layers += [keras.layers.Conv2D(filters, 3, strides=2, padding='same', use_bias=conv_bias, dtype=dtype),
                   keras.layers.BatchNormalization(epsilon=BN_EPSILON, dtype=dtype),
                   keras.layers.ReLU(dtype=dtype)]
    return _classifier(layers, num_classes, dtype, 'omniglot')


@keeps_random
def miniimagenet_model(num_classes, filters=32, dtype='float32', conv_bias=True):
    """4 x [conv 3x3 'same'; batch norm; max-pool 2x2 'same'; ReLU], flatten, dense: 84x84x3."""
    layers = [keras.Input((84, 84, 3), dtype=dtype)]
    for _ in range(4):
        layers += [keras.layers.Conv2D(filters, 3, padding='same', use_bias=conv_bias, dtype=dtype),
                   keras.layers.BatchNormalization(epsilon=BN_EPSILON, dtype=dtype),
                   keras.layers.MaxPooling2D(2, 2, padding='same', dtype=dtype),
                   keras.layers.ReLU(dtype=dtype)]
    return _classifier(layers, num_classes, dtype, 'miniimagenet')


def _classifier(layers, num_classes, dtype, name):
    layers += [keras.layers.Flatten(dtype=dtype), keras.layers.Dense(num_classes, dtype=dtype)]
    return keras.Sequential(layers, name=name)


MODELS = {'omniglot': omniglot_model, 'miniimagenet': miniimagenet_model}


def repeated_groups(value, groups):
    """`value` [..., c] repeated for `groups` groups in the grouped layout [..., groups * c]
    (see `from_groups`): `value` tiled along its last axis. One Tile op: `tf.repeat` would
    add some 30 ops per variable to every traced graph."""
    value = tf.convert_to_tensor(value)
    return tf.tile(value, [1] * (value.shape.rank - 1) + [groups])


def from_groups(tensor, groups):
    """[..., groups * c] -> [groups, ..., c]: each group's weights out of the grouped layout.

    In that layout, the one `apply` takes, conv kernels are grouped-convolution kernels and
    per-channel vectors line up with the grouped channels, so the inner loop updates
    weights in it and never rearranges them per step.
    """
    rank = tensor.shape.rank
    split = tf.reshape(tensor, tf.concat([tf.shape(tensor)[:-1], [groups, -1]], 0))
    return tf.transpose(split, [rank - 1] + list(range(rank - 1)) + [rank])


def apply(model, params, inputs, second_order=False):
    """Logits [groups, batch, classes] of `model` for groups of inputs, each with its own weights.

    `inputs` is [groups, batch, *image]; `params` are the trainable weights (in
    `model.trainable_variables` order) in the grouped layout (see `from_groups`). Batch norm
    normalizes each group's batch with its own statistics, as the original always does
    (training mode). `second_order` computes it in a form whose second derivatives are
    right too (see `_batch_norm`), for MAML; the values are the same.

    The groups share one tensor [batch, H, W, groups * channels] and run as one grouped
    convolution per layer, so many small episodes cost one op per layer; only the small
    dense layer regroups its inputs and weights per group.
    """
    inputs = tf.convert_to_tensor(inputs)
    groups = inputs.shape[0]
    image = inputs.shape[2:]
    if isinstance(model.layers[0], keras.layers.Reshape):
        image = model.layers[0].target_shape
    out = tf.reshape(inputs, [groups, -1, *image])
    out = tf.reshape(tf.transpose(out, [1, 2, 3, 0, 4]), [-1, *image[:2], groups * image[2]])
    params = iter(params)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out = grouped_conv2d(out, next(params), groups, layer.strides, layer.padding.upper())
            if layer.use_bias:
                out = tf.nn.bias_add(out, next(params))
        elif isinstance(layer, keras.layers.BatchNormalization):
            out = _batch_norm(out, next(params), next(params), layer.epsilon, second_order)
        elif isinstance(layer, keras.layers.Dense):  # per group, flattened in (H, W, C) order
            features = from_groups(out, groups)
            features = tf.reshape(features, [groups, tf.shape(features)[1], -1])
            kernel, bias = (from_groups(next(params), groups) for _ in range(2))
            return tf.matmul(features, kernel) + bias[:, None]
        elif isinstance(layer, keras.layers.ReLU):
            out = tf.nn.relu(out)
        elif isinstance(layer, keras.layers.MaxPooling2D):  # per channel: every group at once
            out = tf.nn.max_pool2d(out, layer.pool_size, layer.strides, layer.padding.upper())
        elif not isinstance(layer, (keras.layers.Reshape, keras.layers.Flatten)):
            raise ValueError(f'apply() does not know layer {layer.name}')
    raise ValueError(f'apply() needs a model ending in a Dense layer, not {model.layers[-1].name}')


def _batch_norm(out, gamma, beta, epsilon, second_order=False):
    """Batch norm of [batch, H, W, C] with the batch's own statistics.

    Exact paths compute it as the original's graph does, op by op. In bfloat16, which is
    not exact anyway, TF's fused kernel runs instead: one op each way, with statistics in
    float32, where the op-by-op form would add many slow bfloat16 passes.

    `tf.nn.moments` stops the gradient through the mean inside the variance: right for
    gradients (that term is zero), wrong for Hessians. `second_order` computes the same
    moments with the same ops, without the stop.
    """
    if second_order:
        mean = tf.reduce_mean(out, axis=[0, 1, 2], keepdims=True)
        variance = tf.reduce_mean(tf.math.squared_difference(out, mean), axis=[0, 1, 2], keepdims=True)
        return tf.nn.batch_normalization(out, mean, variance, beta, gamma, epsilon)
    if out.dtype == tf.bfloat16:
        out, _, _ = tf.compat.v1.nn.fused_batch_norm(out, tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32),
                                                     epsilon=epsilon, is_training=True)
        return out
    mean, variance = tf.nn.moments(out, axes=[0, 1, 2], keepdims=True)
    return tf.nn.batch_normalization(out, mean, variance, beta, gamma, epsilon)


def grouped_conv2d(out, kernel, groups, strides, padding):
    """Convolution with `groups` independent channel groups.

    One grouped op where TF has a grouped kernel for this device and dtype (oneDNN on
    CPUs, cuDNN on GPUs); elsewhere (TF builds without oneDNN, float64) one convolution
    per group, which computes the same thing.
    """
    if groups == 1 or grouped_conv_supported(out.dtype):
        return tf.nn.conv2d(out, kernel, strides, padding)
    return _split_conv2d(out, kernel, groups, strides, padding)


def _split_conv2d(out, kernel, groups, strides, padding):
    """A grouped convolution as one convolution per group: runs on every device and dtype."""
    pairs = zip(tf.split(out, groups, axis=-1), tf.split(kernel, groups, axis=-1))
    return tf.concat([tf.nn.conv2d(x, k, strides, padding) for x, k in pairs], axis=-1)


def device_type():
    """'GPU' when TensorFlow sees one (it places the ops there), else 'CPU'."""
    return 'GPU' if tf.config.list_logical_devices('GPU') else 'CPU'


def dtypes(precision):
    """(variable dtype, compute dtype or None for the same) of a --precision: float64 keeps
    everything in float64; bfloat16 computes the network in bfloat16 on float32 weights."""
    return ('float64' if precision == 'float64' else 'float32'), ('bfloat16' if precision == 'bfloat16' else None)


def grouped_conv_supported(dtype):
    """Whether TF runs grouped convolutions in `dtype` on the device the ops go to (the
    first GPU if there is one, else the CPU): decided once per device type and dtype."""
    return _probe_grouped_conv(device_type(), tf.as_dtype(dtype).name)


@functools.cache
def _probe_grouped_conv(device, dtype):
    """Run a small grouped convolution, fused with a bias and ReLU as TF's graph optimizer
    fuses them, and its gradients, and compare with `_split_conv2d`. Support varies with
    the build and is not queryable: without oneDNN, TF's CPU kernels run the forward pass
    but not the fused op nor the filter gradient, and float64 is never grouped on CPUs."""
    def forward_and_gradients(conv, x, kernel, bias):
        @tf.function  # graph gradients: tapes do not record under init_scope
        def run(x, kernel):
            loss = tf.reduce_sum(tf.square(tf.nn.relu(tf.nn.bias_add(conv(x, kernel, 2, 1, 'SAME'), bias))))
            return [loss, *tf.gradients(loss, [x, kernel])]
        return run(x, kernel)

    grouped = lambda x, kernel, groups, strides, padding: tf.nn.conv2d(x, kernel, strides, padding)
    rng = np.random.default_rng(0)
    with tf.init_scope(), tf.device(f'/{device}:0'):  # runs eagerly, also when called while tracing
        inputs = [tf.constant(rng.standard_normal(shape), dtype) for shape in ([2, 6, 6, 4], [3, 3, 2, 6], [6])]
        try:
            actual = forward_and_gradients(grouped, *inputs)
        except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            return False
        expected = forward_and_gradients(_split_conv2d, *inputs)
    rtol = 0.05 if dtype == 'bfloat16' else 1e-4
    return all(np.allclose(np.float64(a), np.float64(e), rtol=rtol, atol=rtol) for a, e in zip(actual, expected))
