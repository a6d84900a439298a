"""Keras models of the original's networks, and a functional forward pass over them.

The Keras models own the architecture and the variables (names, shapes, initializers,
order) -- `model.trainable_variables` is in the original's order: conv kernel, conv bias,
batch-norm gamma, beta per block, then dense kernel and bias. The inner loop, however,
must run many optimizer steps on *copies* of the weights without touching the variables,
so `apply` evaluates a model with explicitly given weights.
"""

import keras
import tensorflow as tf

BN_EPSILON = 1e-3  # tf.layers.batch_normalization's default, used by the original


def omniglot_model(num_classes, filters=64, dtype='float32', conv_bias=True):
    """4 x [conv 3x3 stride 2 'same'; batch norm; ReLU], flatten, dense: 28x28 inputs."""
    layers = [keras.Input((28, 28), dtype=dtype), keras.layers.Reshape((28, 28, 1), dtype=dtype)]
    for _ in range(4):
        layers += [keras.layers.Conv2D(filters, 3, strides=2, padding='same', use_bias=conv_bias, dtype=dtype),
                   keras.layers.BatchNormalization(epsilon=BN_EPSILON, dtype=dtype),
                   keras.layers.ReLU(dtype=dtype)]
    return _classifier(layers, num_classes, dtype, 'omniglot')


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


def apply(model, params, inputs):
    """Logits of `model` with weights `params` (in trainable-variable order).

    `inputs` is [groups, batch, *image]; batch norm normalizes each group with that group's
    own batch statistics, as the original always does (training mode), so one call can run
    several independent batches (e.g. one per query in non-transductive evaluation).
    Returns [groups, batch, num_classes].
    """
    groups = inputs.shape[0] or tf.shape(inputs)[0]
    out = tf.reshape(inputs, tf.concat([[-1], tf.shape(inputs)[2:]], 0))
    params = iter(params)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out = tf.nn.conv2d(out, next(params), layer.strides, layer.padding.upper())
            if layer.use_bias:
                out = out + next(params)
        elif isinstance(layer, keras.layers.BatchNormalization):
            out = _group_batch_norm(out, groups, next(params), next(params), layer.epsilon)
        elif isinstance(layer, keras.layers.Dense):
            out = tf.matmul(out, next(params)) + next(params)
        else:  # stateless layers: Reshape, ReLU, MaxPooling2D, Flatten
            out = layer(out)
    return tf.reshape(out, [groups, -1, out.shape[-1]])


def _group_batch_norm(out, groups, gamma, beta, epsilon):
    """Batch norm of NHWC `out` with statistics over (batch, H, W) within each group."""
    shape = tf.shape(out)
    grouped = tf.reshape(out, tf.concat([[groups, -1], shape[1:]], 0))
    mean, variance = tf.nn.moments(grouped, axes=[1, 2, 3], keepdims=True)
    normed = tf.nn.batch_normalization(grouped, mean, variance, beta, gamma, epsilon)
    return tf.reshape(normed, shape)
