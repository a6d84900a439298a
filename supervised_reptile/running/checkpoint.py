"""Checkpoints: the original's own format (written atomically), and the published web demo's.

A checkpoint is a TF1 tensor bundle (`model.ckpt-N.index` + `.data-00000-of-00001`) plus
the `checkpoint` state file, with the original's variable names (`conv2d/kernel`,
`batch_normalization_1/gamma`, `dense/bias/Adam_1`, `beta2_power`, ...). So the original's
`tf.train.Saver` can restore ours, and ours loads the original's, through one code path.
Extra entries under `reptile/` (the inner step count, the inner optimizer's name, and for
resuming: the meta-iteration and Python's random states) are ignored by the original.

`load_pretrained` is the one entry point for evaluation: it reads the architecture from a
checkpoint folder (or bundle prefix) or from the web demo's `.npz`, builds that model and
the algorithm that fine-tunes it the way the model was meant to be evaluated.
"""

import json
import math
import os
import random
import zipfile

import keras
import numpy as np
import tensorflow as tf

from ..errors import InputError
from ..models import MODELS
from ..optimizers import Adam, Preconditioned, inner_optimizer
from ..reptile import Reptile

PREFIX = 'model.ckpt'
MAX_TO_KEEP = 5  # as tf.train.Saver
STEP_KEY = 'reptile/inner_step'
ITERATION_KEY = 'reptile/meta_iteration'
RANDOM_KEY = 'reptile/python_random_state'
EVAL_RANDOM_KEY = 'reptile/eval_random_state'  # the stream of --eval-interval-samples
OPTIMIZER_KEY = 'reptile/optimizer'


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


def save(directory, meta_iteration, algo, eval_stream=None, random_state=None):
    """Write `model.ckpt-<meta_iteration>` atomically and make it the latest, with the
    state of `random` (`random_state`, default the current one: another while the next
    meta-batch is being sampled ahead) and of `eval_stream` (a `tasks.RandomStream`) for resuming.

    The bundle is written under a temporary prefix and renamed into place; only then does
    the `checkpoint` file (itself replaced atomically) point to it. A kill at any moment
    leaves the previous latest checkpoint intact.
    """
    os.makedirs(directory, exist_ok=True)
    tensors = state_tensors(algo)
    if 'beta1_power' in tensors and algo.optimizer.beta1 == 0:  # the original passed beta1=0, an int
        tensors['beta1_power'] = tf.cast(tensors['beta1_power'], tf.int32)
    tensors[STEP_KEY] = algo.optimizer_state['step']
    tensors[ITERATION_KEY] = tf.constant(meta_iteration, tf.int64)
    tensors[OPTIMIZER_KEY] = tf.constant(type(algo.optimizer).__name__)
    tensors[RANDOM_KEY] = tf.constant(json.dumps(random_state or random.getstate()))
    if eval_stream is not None:
        tensors[EVAL_RANDOM_KEY] = tf.constant(json.dumps(eval_stream.state))
    final = os.path.join(directory, f'{PREFIX}-{meta_iteration}')
    temp = os.path.join(directory, f'.tmp-{PREFIX}-{meta_iteration}')
    tf.raw_ops.SaveV2(prefix=temp, tensor_names=list(tensors), shape_and_slices=[''] * len(tensors),
                      tensors=[tf.convert_to_tensor(t) for t in tensors.values()])
    for suffix in ('.data-00000-of-00001', '.index'):
        _fsync(temp + suffix)
        os.replace(temp + suffix, final + suffix)
    state = _checkpoint_state(directory)  # unreadable: start a new list
    previous = [os.path.basename(p) for p in (state.all_model_checkpoint_paths if state else [])]
    previous = [p for p in previous if p != os.path.basename(final)]
    _write_state_file(directory, (previous + [os.path.basename(final)])[-MAX_TO_KEEP:])
    for old in previous[:len(previous) + 1 - MAX_TO_KEEP]:
        for path in tf.io.gfile.glob(os.path.join(directory, old) + '.*'):
            os.remove(path)
    return final


def _fsync(path):
    """Flush a file to disk, so that a renamed checkpoint survives a power loss too."""
    with open(path, 'rb+') as handle:
        os.fsync(handle.fileno())


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


def _checkpoint_state(directory):
    """The parsed `checkpoint` file of `directory`, or None when it is empty or garbled."""
    try:
        return tf.train.get_checkpoint_state(directory)
    except ValueError:
        return None


def latest(directory):
    """Path prefix of the latest checkpoint in `directory`, which must exist."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel('FATAL')  # TF logs its own lines about missing files; ours says it all
    try:
        state = _checkpoint_state(directory) if os.path.isdir(directory) else None
    finally:
        logger.setLevel(level)
    if state is None or not state.model_checkpoint_path:
        raise InputError(f'no checkpoint in {directory}: train first, or name a folder holding a '
                         '"checkpoint" file and model.ckpt-N files (or a web-demo .npz)')
    prefix = state.model_checkpoint_path
    if not tf.io.gfile.exists(f'{prefix}.index'):
        raise InputError(f'{directory}/checkpoint points to {os.path.basename(prefix)}, whose files are missing: '
                         'restore them, or edit the "checkpoint" file to name an earlier model.ckpt-N')
    return prefix


def _open(path):
    """(prefix, reader) of a bundle prefix, or of the latest checkpoint in a folder."""
    prefix = path if tf.io.gfile.exists(f'{path}.index') else latest(path)
    try:
        return prefix, tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as exc:
        raise _unreadable(prefix, exc) from None


def _unreadable(prefix, exc):
    return InputError(f'cannot read checkpoint {prefix} ({exc.__class__.__name__}): it is incomplete '
                      'or corrupt; delete it to fall back to an earlier one')


def load(path, algo):
    """Restore weights and optimizer state from a bundle prefix or the latest checkpoint in a
    folder (ours or the original's); returns the prefix."""
    prefix, reader = _open(path)
    _restore(prefix, reader, algo)
    return prefix


def _restore(prefix, reader, algo):
    """Assign every weight and optimizer tensor `algo` has from `reader`, all or nothing."""
    shapes = reader.get_variable_to_shape_map()
    if isinstance(algo.optimizer, Adam) and _stored_optimizer(prefix, reader) != 'Adam':
        raise InputError(f'checkpoint {prefix} holds no Adam state: it was trained with --sgd; '
                         'add --sgd to fine-tune it as it was trained')
    targets = state_tensors(algo)
    for name, target in targets.items():
        if name not in shapes:
            raise InputError(f'checkpoint {prefix} has no {name}: it was written for another model '
                             'or optimizer (check --classes, --sgd and the data set)')
        if list(shapes[name]) != list(target.shape):
            raise InputError(f'checkpoint {prefix} holds {name} of shape {shapes[name]}, the model needs '
                             f'{list(target.shape)}: check --classes and the data set')
    try:  # read everything before assigning anything: loading is all or nothing
        values = {name: reader.get_tensor(name) for name in targets}
        steps = _inner_steps(reader, shapes, algo)
    except (tf.errors.OpError, ValueError, IndexError) as exc:
        raise _unreadable(prefix, exc) from None
    for name, target in targets.items():
        target.assign(tf.cast(values[name], target.dtype))
    algo.optimizer_state['step'].assign(steps)


def _stored_optimizer(prefix, reader):
    """The inner optimizer a checkpoint was trained with: recorded by us, else 'Adam' when
    it holds Adam slots, 'Preconditioned' when it holds the web demo's `adam_v`, else 'SGD'."""
    try:
        if reader.has_tensor(OPTIMIZER_KEY):
            return reader.get_tensor(OPTIMIZER_KEY).decode()
    except (tf.errors.OpError, ValueError, IndexError) as exc:
        raise _unreadable(prefix, exc) from None
    names = reader.get_variable_to_shape_map()
    for slot, optimizer in (('/Adam', 'Adam'), ('/adam_v', 'Preconditioned')):
        if any(name.endswith(slot) for name in names):
            return optimizer
    return 'SGD'


def resume(directory, algo, eval_stream=None):
    """Restore everything a training run needs to continue exactly where the latest
    checkpoint in `directory` was written: weights, optimizer state and Python's random
    states (the global one, and `eval_stream`'s if given). Returns the meta-iteration to
    continue from (0 when there is no checkpoint)."""
    if not os.path.isfile(os.path.join(directory, 'checkpoint')):
        return 0
    prefix, reader = _open(directory)
    if not reader.has_tensor(ITERATION_KEY):
        raise InputError(f'the checkpoint in {directory} was not written by this project\'s training '
                         'and cannot be resumed: evaluate it with --pretrained instead')
    _restore(prefix, reader, algo)
    random.setstate(_random_state(reader, RANDOM_KEY))
    if eval_stream is not None and reader.has_tensor(EVAL_RANDOM_KEY):
        eval_stream.state = _random_state(reader, EVAL_RANDOM_KEY)
    return int(reader.get_tensor(ITERATION_KEY)) + 1


def _random_state(reader, key):
    """A `random.getstate()` stored as JSON under `key`."""
    version, internal, gauss = json.loads(reader.get_tensor(key))
    return version, tuple(internal), gauss


def _inner_steps(reader, shapes, algo):
    """Inner steps taken so far: recorded by us, or recovered from the original's
    beta2_power, which TF1 keeps as float32(beta2)^(t+1); 0 for SGD."""
    if STEP_KEY in shapes:
        return int(reader.get_tensor(STEP_KEY))
    beta2 = getattr(algo.optimizer, 'beta2', None)
    if 'beta2_power' in shapes and beta2 is not None:
        return round(math.log(float(reader.get_tensor('beta2_power'))) / math.log(float(np.float32(beta2)))) - 1
    return 0


def load_pretrained(path, learning_rate=1e-3, sgd=None, transductive=False, weight_decay_rate=1.0,
                    precision=None):
    """A Reptile instance holding the model stored at `path`, ready to evaluate.

    `path` is a checkpoint folder or bundle prefix (ours or the original's) or the web
    demo's `.npz`. The model fine-tunes with the inner optimizer it was trained with: the
    web demo's preconditioned rule, Adam, or SGD. `sgd` is the --sgd flag: True also
    fine-tunes an Adam checkpoint with SGD (as the original allowed), False refuses an SGD
    checkpoint, None takes what is stored. `precision` is 'float64' (model and optimizer
    state in float64), 'bfloat16' (computations in bfloat16) or float32 (None). The model's
    `name` is its data set ('omniglot' or 'miniimagenet').
    """
    dtype = 'float64' if precision == 'float64' else 'float32'
    kwargs = dict(transductive=transductive, weight_decay_rate=weight_decay_rate,
                  compute_dtype=None if precision == 'float64' else precision)
    if str(path).endswith('.npz'):
        return _load_webdemo(path, dtype, kwargs)
    prefix, reader = _open(path)
    shapes = reader.get_variable_to_shape_map()
    if 'conv2d/kernel' not in shapes or 'dense/bias' not in shapes:
        raise InputError(f'checkpoint {prefix} holds no Reptile model (no conv2d/kernel or dense/bias)')
    in_channels, filters = shapes['conv2d/kernel'][2:]
    model = MODELS['miniimagenet' if in_channels == 3 else 'omniglot'](
        shapes['dense/bias'][0], filters=filters, conv_bias='conv2d/bias' in shapes, dtype=dtype)
    stored = _stored_optimizer(prefix, reader)
    if stored == 'Preconditioned':
        optimizer = Preconditioned([np.zeros(w.shape) for w in model.trainable_weights])  # restored below
    else:
        optimizer = inner_optimizer(learning_rate, stored == 'SGD' if sgd is None else sgd)
    algo = Reptile(model, optimizer, **kwargs)
    _restore(prefix, reader, algo)
    return algo


def check_model(algo, dataset, num_classes):
    """Refuse evaluating a loaded model on another data set or number of classes."""
    classes = algo.model.output_shape[-1]
    if algo.model.name != dataset or classes != num_classes:
        raise InputError(f'the checkpoint holds a {classes}-way {algo.model.name} model, not a '
                         f'{num_classes}-way {dataset} one: pass --classes {classes} or another checkpoint')


def _load_webdemo(path, dtype, kwargs):
    """The web demo's parameters (`conv{0..3}/{kernel,gamma,beta}`, `dense/{kernel,bias}`,
    each with `<key>/adam_v`): an Omniglot model without conv biases."""
    keys = [f'conv{i}/{w}' for i in range(4) for w in ('kernel', 'gamma', 'beta')] + ['dense/kernel', 'dense/bias']
    try:
        arrays = dict(np.load(path))
        values = [arrays[k] for k in keys]
        second_moments = [arrays[f'{k}/adam_v'] for k in keys]
        model = MODELS['omniglot'](values[-1].shape[0], filters=values[0].shape[-1], conv_bias=False, dtype=dtype)
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f'cannot read web-demo parameters {path} ({exc}): expected the published '
                         'reptile_webdemo_*.npz') from None
    for key, var, value, moment in zip(keys, model.trainable_variables, values, second_moments):
        if value.shape != tuple(var.shape) or moment.shape != value.shape:
            raise InputError(f'web-demo parameters {path} hold {key} of shape {value.shape} (adam_v '
                             f'{moment.shape}), the model needs {tuple(var.shape)}: the file is not the published one')
        var.assign(value)
    return Reptile(model, Preconditioned(second_moments), **kwargs)
