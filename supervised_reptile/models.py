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


MODELS = {'omniglot': omniglot_model, 'miniimagenet': miniimagenet_model}


def apply(model, params, inputs):
    """Logits of `model` for several independent groups at once, each with its own weights.

    `params` are the trainable weights (in `model.trainable_variables` order), each with a
    leading group axis: [groups, *shape]. `inputs` is [groups, batch, *image], or
    [groups, sub_batches, batch, *image] to run several batches with each group's weights.
    Returns logits of the same leading shape. Batch norm normalizes each batch with its own
    statistics, as the original always does (training mode).

    The groups share one tensor [all batches, H, W, groups * channels] and run as one
    grouped convolution, so many small episodes cost one op per layer.
    """
    inputs = tf.convert_to_tensor(inputs)
    groups = tf.shape(inputs)[0]
    single = inputs.shape.rank == len(model.input_shape) + 1
    if single:
        inputs = inputs[:, None]
    sub_batches, batch = tf.shape(inputs)[1], tf.shape(inputs)[2]
    out, params = inputs, iter(params)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Reshape):
            out = tf.reshape(out, tf.concat([[groups, sub_batches, batch], layer.target_shape], 0))
        elif isinstance(layer, keras.layers.Conv2D):
            if out.shape.rank == 6:  # [groups, sub, batch, H, W, C] -> [sub * batch, H, W, groups * C]
                out = tf.transpose(out, [1, 2, 3, 4, 0, 5])
                out = tf.reshape(out, tf.concat([[sub_batches * batch], tf.shape(out)[2:4], [-1]], 0))
            kernel = _merge_groups(tf.transpose(next(params), [1, 2, 3, 0, 4]))
            out = _grouped_conv2d(out, kernel, inputs.shape[0], layer.strides, layer.padding.upper())
            if layer.use_bias:
                out = out + tf.reshape(next(params), [-1])
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta = (tf.reshape(next(params), [-1]) for _ in range(2))
            out = _batch_norm(out, sub_batches, gamma, beta, layer.epsilon)
        elif isinstance(layer, keras.layers.Flatten):  # per group, in (H, W, C) order
            shape = tf.shape(out)
            out = tf.reshape(out, tf.concat([shape[:3], [groups, -1]], 0))
            out = tf.reshape(tf.transpose(out, [3, 0, 1, 2, 4]), [groups, sub_batches * batch, -1])
        elif isinstance(layer, keras.layers.Dense):
            out = tf.matmul(out, next(params)) + next(params)[:, None]
        elif isinstance(layer, keras.layers.ReLU):
            out = tf.nn.relu(out)
        elif isinstance(layer, keras.layers.MaxPooling2D):  # per channel: every group at once
            out = tf.nn.max_pool2d(out, layer.pool_size, layer.strides, layer.padding.upper())
        else:
            raise ValueError(f'apply() does not know layer {layer.name}')
    logits = tf.reshape(out, [groups, sub_batches, batch, -1])
    return logits[:, 0] if single else logits


def _batch_norm(out, sub_batches, gamma, beta, epsilon):
    """Batch norm of [sub_batches * batch, H, W, C] with statistics per sub-batch."""
    shape = tf.shape(out)
    split = tf.reshape(out, tf.concat([[sub_batches, -1], shape[1:]], 0))
    mean, variance = tf.nn.moments(split, axes=[1, 2, 3], keepdims=True)
    return tf.reshape(tf.nn.batch_normalization(split, mean, variance, beta, gamma, epsilon), shape)


def _grouped_conv2d(out, kernel, groups, strides, padding):
    """Convolution with `groups` independent channel groups.

    TF's CPU kernels group only float32/bfloat16 convolutions (through oneDNN); other
    dtypes (float64, used for the exact parity tests) run group by group.
    """
    if groups == 1 or out.dtype in (tf.float32, tf.bfloat16):
        return tf.nn.conv2d(out, kernel, strides, padding)
    pairs = zip(tf.split(out, groups, axis=-1), tf.split(kernel, groups, axis=-1))
    return tf.concat([tf.nn.conv2d(x, k, strides, padding) for x, k in pairs], axis=-1)


def _merge_groups(tensor):
    """[..., groups, C] -> [..., groups * C]."""
    shape = tf.shape(tensor)
    return tf.reshape(tensor, tf.concat([shape[:-2], [-1]], 0))
