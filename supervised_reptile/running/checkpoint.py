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

import glob
import json
import math
import os
import random
import weakref
import zipfile

import keras
import numpy as np
import tensorflow as tf

from ..errors import Diverged, InputError
from ..models import MODELS, dtypes
from ..optimizers import Adam, Preconditioned, inner_optimizer
from ..reptile import Reptile
from .files import fsync, write_atomically

PREFIX = 'model.ckpt'
TEMP = '.tmp-'  # what a save writes before renaming it into place
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
    the `checkpoint` file (itself replaced atomically) point to it, and the folder is
    synced. A kill at any moment leaves the previous latest checkpoint intact; the next
    save removes what it left behind. Raises `Diverged` rather than write a non-finite
    value, and InputError when the folder cannot be written (read-only, full disk).
    """
    tensors = state_tensors(algo)
    bad = non_finite(algo)
    if bad:
        raise Diverged(f'{bad} is not finite at meta-iteration {meta_iteration}: no checkpoint of it is written')
    if 'beta1_power' in tensors and algo.optimizer.beta1 == 0:  # the original passed beta1=0, an int
        tensors['beta1_power'] = tf.cast(tensors['beta1_power'], tf.int32)
    tensors[STEP_KEY] = algo.optimizer_state['step']
    tensors[ITERATION_KEY] = tf.constant(meta_iteration, tf.int64)
    tensors[OPTIMIZER_KEY] = tf.constant(type(algo.optimizer).__name__)
    tensors[RANDOM_KEY] = tf.constant(json.dumps(random_state or random.getstate()))
    if eval_stream is not None:
        tensors[EVAL_RANDOM_KEY] = tf.constant(json.dumps(eval_stream.state))
    try:
        os.makedirs(directory, exist_ok=True)
        remove_temporaries(directory)
        return _write(directory, meta_iteration, tensors)
    except (OSError, tf.errors.OpError) as exc:
        remove_temporaries(directory)
        raise InputError(f'cannot write a checkpoint in {directory} ({_reason(exc)}): free some space or make it '
                         'writable, or choose another --checkpoint folder; earlier checkpoints are intact') from None


def _write(directory, meta_iteration, tensors):
    """Write `tensors` as the bundle of `meta_iteration`, list it last, drop the oldest."""
    final = os.path.join(directory, f'{PREFIX}-{meta_iteration}')
    temp = os.path.join(directory, f'{TEMP}{PREFIX}-{meta_iteration}')
    tf.raw_ops.SaveV2(prefix=temp, tensor_names=list(tensors), shape_and_slices=[''] * len(tensors),
                      tensors=[tf.convert_to_tensor(t) for t in tensors.values()])
    for suffix in ('.data-00000-of-00001', '.index'):
        fsync(temp + suffix)
        os.replace(temp + suffix, final + suffix)
    state = _checkpoint_state(directory)  # unreadable: start a new list
    previous = [os.path.basename(p) for p in (state.all_model_checkpoint_paths if state else [])]
    previous = [p for p in previous if p != os.path.basename(final)]
    kept = (previous + [os.path.basename(final)])[-MAX_TO_KEEP:]
    _write_state_file(directory, kept)  # flushes the folder: the bundle's renames too
    for old in previous:
        if old not in kept:
            for path in tf.io.gfile.glob(os.path.join(directory, old) + '.*'):
                os.remove(path)
    return final


def _reason(exc):
    """The OS's words for a failed write ('No space left on device'), else the error's class."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    message = getattr(exc, 'message', '') or str(exc)
    return message.split(';')[-1].strip() or exc.__class__.__name__


def remove_temporaries(directory):
    """Delete what an interrupted save left in `directory` (its `.tmp-*` files: bundles, the
    state file, TensorFlow's `.tempstate` files). Only one run writes a folder at a time
    (see `running.lock`), so none of them is in use."""
    for path in glob.glob(os.path.join(glob.escape(directory), TEMP + '*')):
        try:
            os.remove(path)
        except OSError:
            pass  # gone already, or the folder is read-only: nothing to clean


def non_finite(algo):
    """The original name of the first weight or optimizer tensor of `algo` holding a NaN or
    an infinity, or None. One fused check, traced once per `algo` over its variables (about
    1 ms for the Omniglot model: cheap enough for every meta-iteration, see docs/faults.md);
    names are looked for only when it fails."""
    floating = {name: t for name, t in state_tensors(algo).items() if tf.as_dtype(t.dtype).is_floating}
    if algo not in _FINITE_CHECKS:
        tensors = list(floating.values())
        _FINITE_CHECKS[algo] = tf.function(lambda: tf.reduce_all([tf.reduce_all(tf.math.is_finite(t))
                                                                  for t in tensors]))
    if bool(_FINITE_CHECKS[algo]()):
        return None
    return next(name for name, t in floating.items() if not np.all(np.isfinite(np.asarray(t))))


_FINITE_CHECKS = weakref.WeakKeyDictionary()  # algorithm: its traced check (see non_finite)


def _write_state_file(directory, names):
    """Replace the `checkpoint` file atomically. Written by hand rather than with
    `update_checkpoint_state` to keep names relative, as tf.train.Saver does, so that a
    checkpoint folder still loads after it is moved or copied."""
    lines = [f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in names]
    write_atomically(os.path.join(directory, 'checkpoint'), '\n'.join(lines) + '\n', prefix=TEMP)


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


def last_saved(directory):
    """Path prefix of the latest checkpoint in `directory`, or None when there is none."""
    try:
        return latest(directory)
    except InputError:
        return None


def _open(path):
    """(prefix, reader) of a bundle prefix, or of the latest checkpoint in a folder."""
    prefix = path if tf.io.gfile.exists(f'{path}.index') else latest(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as exc:
        raise _unreadable(prefix, exc) from None
    _check_sizes(prefix, reader)
    return prefix, reader


def _check_sizes(prefix, reader):
    """Refuse a bundle whose index claims more bytes than its data files hold (a damaged or
    crafted index), before anything of that size is allocated."""
    dtypes = reader.get_variable_to_dtype_map()
    claimed = sum(math.prod(shape) * dtypes[name].size for name, shape in reader.get_variable_to_shape_map().items()
                  if dtypes[name] != tf.string)
    held = sum(os.path.getsize(p) for p in glob.glob(glob.escape(prefix) + '.data-*'))
    if claimed > held:
        raise _unreadable(prefix, ValueError(f'its index lists {claimed} bytes of tensors, its data files hold {held}'))


def _unreadable(prefix, exc):
    folder = os.path.dirname(prefix) or '.'
    return InputError(f'cannot read checkpoint {prefix} ({exc.__class__.__name__}: {_reason(exc)}): it is incomplete '
                      f'or corrupt; name an earlier model.ckpt-N in {folder}/checkpoint, or train again')


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
        _check_dtype(prefix, name, reader.get_variable_to_dtype_map()[name])
    try:  # read everything before assigning anything: loading is all or nothing
        values = {name: reader.get_tensor(name) for name in targets}
        steps = _inner_steps(prefix, reader, algo)
    except (tf.errors.OpError, ValueError, IndexError) as exc:
        raise _unreadable(prefix, exc) from None
    for name, value in values.items():
        _check_finite(prefix, name, value)
    for name, target in targets.items():
        target.assign(tf.cast(values[name], target.dtype))
    algo.optimizer_state['step'].assign(steps)


def _check_dtype(prefix, name, dtype):
    """Refuse a weight or optimizer tensor that is not floating point (the beta powers may
    be integers: the original stored beta1_power as int32)."""
    if not (dtype.is_floating or (name.endswith('_power') and dtype.is_integer)):
        raise InputError(f'checkpoint {prefix} holds {name} as {dtype.name}, not floating point: it is not a '
                         'model this project reads')


def _check_finite(prefix, name, value):
    """Refuse a stored tensor holding NaN or infinity: a run that diverged."""
    if not np.all(np.isfinite(value)):
        raise InputError(f'{prefix} holds non-finite values in {name} (from a run that diverged): use an '
                         'earlier checkpoint')


def _count(prefix, reader, key):
    """The non-negative integer scalar stored under `key`; InputError for anything else."""
    dtype, shape = reader.get_variable_to_dtype_map()[key], reader.get_variable_to_shape_map()[key]
    if dtype.is_integer and not shape:
        value = int(reader.get_tensor(key))
        if value >= 0:
            return value
    stored = value if dtype.is_integer and not shape else f'a {dtype.name} tensor of shape {shape}'
    raise InputError(f'checkpoint {prefix} holds {key} = {stored}, not a count: it is damaged; name an earlier '
                     'model.ckpt-N in the "checkpoint" file, or train again')


def _stored_optimizer(prefix, reader):
    """The inner optimizer a checkpoint was trained with: recorded by us, else 'Adam' when
    it holds Adam slots, 'Preconditioned' when it holds the web demo's `adam_v`, else 'SGD'."""
    try:
        if reader.has_tensor(OPTIMIZER_KEY):
            stored = reader.get_tensor(OPTIMIZER_KEY)
            if stored.decode() not in ('Adam', 'SGD', 'Preconditioned'):
                raise ValueError(f'unknown inner optimizer {stored.decode()!r}')
            return stored.decode()
    except (tf.errors.OpError, ValueError, IndexError, AttributeError, UnicodeDecodeError) as exc:
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
    iteration = _count(prefix, reader, ITERATION_KEY)
    states = {key: _random_state(prefix, reader, key) for key in (RANDOM_KEY, EVAL_RANDOM_KEY)
              if key == RANDOM_KEY or (eval_stream is not None and reader.has_tensor(key))}
    _restore(prefix, reader, algo)
    random.setstate(states[RANDOM_KEY])
    if EVAL_RANDOM_KEY in states:
        eval_stream.state = states[EVAL_RANDOM_KEY]
    return iteration + 1


def _random_state(prefix, reader, key):
    """A `random.getstate()` stored as JSON under `key`, checked by a trial `setstate`."""
    try:
        version, internal, gauss = json.loads(reader.get_tensor(key))
        state = version, tuple(internal), gauss
        random.Random().setstate(state)
    except (tf.errors.OpError, ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise InputError(f'checkpoint {prefix} holds a damaged {key} ({exc.__class__.__name__}): name an earlier '
                         'model.ckpt-N in the "checkpoint" file, or train again') from None
    return state


def _inner_steps(prefix, reader, algo):
    """Inner steps taken so far: recorded by us, or recovered from the original's
    beta2_power, which TF1 keeps as float32(beta2)^(t+1); 0 for SGD."""
    if reader.has_tensor(STEP_KEY):
        return _count(prefix, reader, STEP_KEY)
    beta2 = getattr(algo.optimizer, 'beta2', None)
    if reader.has_tensor('beta2_power') and beta2 is not None:
        power = float(reader.get_tensor('beta2_power'))
        if not 0 < power < 1:
            raise ValueError(f'beta2_power is {power}, outside (0, 1)')
        return round(math.log(power) / math.log(float(np.float32(beta2)))) - 1
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
    dtype, compute_dtype = dtypes(precision)
    kwargs = dict(transductive=transductive, weight_decay_rate=weight_decay_rate, compute_dtype=compute_dtype)
    if str(path).endswith('.npz'):
        return _load_webdemo(path, dtype, kwargs)
    prefix, reader = _open(path)
    shapes = reader.get_variable_to_shape_map()
    in_channels, filters, classes = _architecture(prefix, shapes)
    model = MODELS['miniimagenet' if in_channels == 3 else 'omniglot'](
        classes, filters=filters, conv_bias='conv2d/bias' in shapes, dtype=dtype)
    stored = _stored_optimizer(prefix, reader)
    if stored == 'Preconditioned':
        optimizer = Preconditioned([np.zeros(w.shape) for w in model.trainable_weights])  # restored below
    else:
        optimizer = inner_optimizer(learning_rate, stored == 'SGD' if sgd is None else sgd)
    algo = Reptile(model, optimizer, **kwargs)
    _restore(prefix, reader, algo)
    return algo


def _architecture(prefix, shapes):
    """(input channels, filters, classes) of the model in a checkpoint, from the shapes of
    its first kernel and its last bias, which must be those of a Reptile model."""
    kernel, bias = shapes.get('conv2d/kernel'), shapes.get('dense/bias')
    if (kernel is None or bias is None or len(kernel) != 4 or kernel[:2] != [3, 3] or kernel[2] not in (1, 3)
            or len(bias) != 1 or min(kernel + bias) < 1):
        raise InputError(f'checkpoint {prefix} holds no Reptile model (conv2d/kernel {kernel}, dense/bias {bias}; '
                         'expected [3, 3, 1 or 3, filters] and [classes])')
    return kernel[2], kernel[3], bias[0]


def check_model(algo, dataset, num_classes=None, path='the checkpoint', fix=None):
    """Refuse a loaded model of another data set or (unless `num_classes` is None) another
    number of classes than a tool needs, in one line ending with `fix` (default: pass
    --classes as the model's, or another checkpoint)."""
    classes = algo.model.output_shape[-1]
    if algo.model.name != dataset or classes != (num_classes or classes):
        wanted = f'{num_classes}-way {dataset}' if num_classes else dataset
        raise InputError(f'{path} holds a {classes}-way {algo.model.name} model, not a {wanted} one: '
                         f'{fix or f"pass --classes {classes} or another checkpoint"}')


def _load_webdemo(path, dtype, kwargs):
    """The web demo's parameters (`conv{0..3}/{kernel,gamma,beta}`, `dense/{kernel,bias}`,
    each with `<key>/adam_v`): an Omniglot model without conv biases. Every array's header
    is checked against the model before any array is read."""
    keys = [f'conv{i}/{w}' for i in range(4) for w in ('kernel', 'gamma', 'beta')] + ['dense/kernel', 'dense/bias']
    try:
        headers = _npz_headers(path)
        kernel, bias = headers['conv0/kernel'], headers['dense/bias']
        if len(kernel) != 4 or len(bias) != 1 or min(kernel[-1], bias[0]) < 1:
            raise ValueError(f'conv0/kernel of shape {kernel} and dense/bias of shape {bias} are no model\'s')
        model = MODELS['omniglot'](bias[0], filters=kernel[-1], conv_bias=False, dtype=dtype)
        for key, var in zip(keys, model.trainable_variables):
            for name in (key, f'{key}/adam_v'):
                if headers[name] != tuple(var.shape):
                    raise ValueError(f'{name} of shape {headers[name]}, the model needs {tuple(var.shape)}')
        with np.load(path) as arrays:
            values = [arrays[k] for k in keys]
            second_moments = [arrays[f'{k}/adam_v'] for k in keys]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f'cannot read web-demo parameters {path} ({exc}): the file is not the published '
                         'reptile_webdemo_*.npz') from None
    for key, value, moment in zip(keys, values, second_moments):
        _check_finite(path, key, value)
        _check_finite(path, f'{key}/adam_v', np.where(moment >= 0, moment, np.nan))  # negative: as bad
    for var, value in zip(model.trainable_variables, values):
        var.assign(value)
    return Reptile(model, Preconditioned(second_moments), **kwargs)


def _npz_headers(path):
    """{key: shape} of the floating-point arrays of an .npz, read from their headers; raises
    ValueError for any other array, or one whose header claims more bytes than it holds."""
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member)
            key = info.filename.removesuffix('.npy')
            if dtype.kind != 'f':
                raise ValueError(f'{key} holds {dtype} values, not floating point')
            if math.prod(shape) * dtype.itemsize > info.file_size:
                raise ValueError(f'{key} claims shape {shape}, more than its {info.file_size} bytes')
            headers[key] = shape
    return headers
