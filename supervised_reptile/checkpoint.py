"""Checkpoints in the original's own format, written atomically.

A checkpoint is a TF1 tensor bundle (`model.ckpt-N.index` + `.data-00000-of-00001`) plus
the `checkpoint` state file, with the original's variable names (`conv2d/kernel`,
`batch_normalization_1/gamma`, `dense/bias/Adam_1`, `beta2_power`, ...). So the original's
`tf.train.Saver` can restore ours, and ours loads the original's, through one code path.
Extra entries under `reptile/` (the inner step count, and for resuming: the meta-iteration
and Python's random state) are ignored by the original.
"""

import json
import math
import os
import random

import keras
import tensorflow as tf

from .errors import InputError

PREFIX = 'model.ckpt'
MAX_TO_KEEP = 5  # as tf.train.Saver
STEP_KEY = 'reptile/inner_step'
ITERATION_KEY = 'reptile/meta_iteration'
RANDOM_KEY = 'reptile/python_random_state'


def original_names(model):
    """The original's names for the model's weights, in `model.weights` order."""
    counts, names = {}, []
    for layer in model.layers:
        kind = {keras.layers.Conv2D: 'conv2d', keras.layers.BatchNormalization: 'batch_normalization',
                keras.layers.Dense: 'dense'}.get(type(layer))
        if kind is None:
            continue
        index = counts.get(kind, 0)
        counts[kind] = index + 1
        scope = kind if index == 0 else f'{kind}_{index}'
        names += [f'{scope}/{w.name}' for w in layer.weights]
    return names


def state_tensors(algo):
    """{original name: value} for the weights and optimizer state of a Reptile/FOML."""
    names = original_names(algo.model)
    tensors = {name: w for name, w in zip(names, algo.model.weights)}
    trainable = [n for n, w in zip(names, algo.model.weights) if w.trainable]
    state = algo.optimizer_state
    for slot in algo.optimizer.slot_names:
        tensors.update({f'{name}/{slot}': value for name, value in zip(trainable, state[slot])})
    tensors.update({key: state[key] for key in ('beta1_power', 'beta2_power') if key in state})
    return tensors


def save(directory, meta_iteration, algo):
    """Write `model.ckpt-<meta_iteration>` atomically and make it the latest.

    The bundle is written under a temporary prefix and renamed into place; only then does
    the `checkpoint` file (itself replaced atomically) point to it. A kill at any moment
    leaves the previous latest checkpoint intact.
    """
    os.makedirs(directory, exist_ok=True)
    tensors = dict(state_tensors(algo))
    tensors[STEP_KEY] = algo.optimizer_state['step']
    tensors[ITERATION_KEY] = tf.constant(meta_iteration, tf.int64)
    tensors[RANDOM_KEY] = tf.constant(json.dumps(random.getstate()))
    final = os.path.join(directory, f'{PREFIX}-{meta_iteration}')
    temp = os.path.join(directory, f'.tmp-{PREFIX}-{meta_iteration}')
    tf.raw_ops.SaveV2(prefix=temp, tensor_names=list(tensors), shape_and_slices=[''] * len(tensors),
                      tensors=[tf.convert_to_tensor(t) for t in tensors.values()])
    for suffix in ('.data-00000-of-00001', '.index'):
        os.replace(temp + suffix, final + suffix)
    state = tf.train.get_checkpoint_state(directory)
    previous = [os.path.basename(p) for p in (state.all_model_checkpoint_paths if state else [])]
    previous = [p for p in previous if p != os.path.basename(final)]
    _write_state_file(directory, (previous + [os.path.basename(final)])[-MAX_TO_KEEP:])
    for old in previous[:len(previous) + 1 - MAX_TO_KEEP]:
        for path in tf.io.gfile.glob(os.path.join(directory, old) + '.*'):
            os.remove(path)
    return final


def _write_state_file(directory, names):
    """Replace the `checkpoint` file atomically. Written by hand rather than with
    `update_checkpoint_state` to keep names relative, as tf.train.Saver does, so that a
    checkpoint folder still loads after it is moved or copied."""
    lines = [f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in names]
    temp = os.path.join(directory, '.tmp-checkpoint')
    with open(temp, 'w') as out:
        out.write('\n'.join(lines) + '\n')
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, os.path.join(directory, 'checkpoint'))


def latest(directory):
    """Path prefix of the latest checkpoint in `directory`."""
    prefix = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
    if prefix is None:
        raise InputError(f'no checkpoint in {directory}: train first, or pass --checkpoint with a '
                         'folder holding a "checkpoint" file and model.ckpt-N files')
    return prefix


def load(directory, algo):
    """Restore weights and optimizer state from the latest checkpoint in `directory`
    (ours or the original's); returns its path prefix."""
    prefix = latest(directory)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as exc:
        raise InputError(f'cannot read checkpoint {prefix} ({exc.__class__.__name__}): '
                         'it is incomplete or corrupt; delete it to fall back to an earlier one') from None
    shapes = reader.get_variable_to_shape_map()
    for name, target in state_tensors(algo).items():
        if name not in shapes:
            raise InputError(f'checkpoint {prefix} has no {name}: it was written for another model '
                             'or optimizer (check --classes, --sgd and the data set)')
        if list(shapes[name]) != list(target.shape):
            raise InputError(f'checkpoint {prefix} holds {name} of shape {shapes[name]}, the model needs '
                             f'{list(target.shape)}: check --classes and the data set')
        target.assign(tf.cast(reader.get_tensor(name), target.dtype))
    algo.optimizer_state['step'].assign(_inner_steps(reader, shapes, algo))
    return prefix


def resume(directory, algo):
    """Restore everything a training run needs to continue exactly where the latest
    checkpoint in `directory` was written: weights, optimizer state and Python's random
    state. Returns the meta-iteration to continue from (0 when there is no checkpoint)."""
    if not os.path.isdir(directory) or tf.train.latest_checkpoint(directory) is None:
        return 0
    reader = tf.train.load_checkpoint(load(directory, algo))
    if not reader.has_tensor(ITERATION_KEY):
        raise InputError(f'the checkpoint in {directory} was not written by this project\'s training '
                         'and cannot be resumed: evaluate it with --pretrained instead')
    version, internal, gauss = json.loads(reader.get_tensor(RANDOM_KEY))
    random.setstate((version, tuple(internal), gauss))
    return int(reader.get_tensor(ITERATION_KEY)) + 1


def _inner_steps(reader, shapes, algo):
    """Inner steps taken so far: recorded by us, or recovered from the original's beta2_power."""
    if STEP_KEY in shapes:
        return int(reader.get_tensor(STEP_KEY))
    if 'beta2_power' in shapes:  # TF1 keeps beta2^(t+1)
        return round(math.log(float(reader.get_tensor('beta2_power'))) / math.log(algo.optimizer.beta2)) - 1
    return 0
