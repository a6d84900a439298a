"""Fine-tuning a stored model on one example per class and classifying a query: what the
few-shot command, Lake's benchmark and the demo share.

A model is fine-tuned the way its evaluation does it (the web demo's weights: 5 steps on all
support images with their own rule; others: the original's defaults, 50 Adam steps on
batches of 5), from a fixed seed so that answers repeat.
"""

import json
import os
import random

import numpy as np
import tensorflow as tf

from .. import miniimagenet, omniglot
from ..errors import Diverged, InputError
from ..optimizers import Preconditioned
from ..running import checkpoint
from ..tasks import make_task
from . import drawing

WEBDEMO_STEPS = 5


def fine_tune_steps(algo, num_support, inner_iters=None, inner_batch=None):
    """(inner iterations, inner batch size) for a model: its own evaluation's defaults."""
    if isinstance(algo.optimizer, Preconditioned):
        return inner_iters or WEBDEMO_STEPS, inner_batch or num_support
    return inner_iters or 50, inner_batch or 5


def support_task(support, inner_iters, inner_batch):
    """The `Task` that fine-tunes on `support` (image i = class i): `inner_iters`
    mini-batches of `inner_batch`, drawn as in evaluation from a fixed seed, so that
    results repeat (the same seed for every call: each call's answers stand alone)."""
    samples = list(zip(support, range(len(support))))
    random.seed(0)
    return make_task(samples, inner_batch, inner_iters, False)


def classify(algo, support, query, inner_iters, inner_batch):
    """Class probabilities of `query` after fine-tuning on `support` (image i = class i);
    `Diverged` when fine-tuning made them NaN (a step size too large)."""
    task = support_task(support, inner_iters, inner_batch)
    logits = algo.evaluate([(task, np.stack([query]))])[0, 0]
    probs = tf.nn.softmax(tf.cast(logits, tf.float64)).numpy()
    if not np.all(np.isfinite(probs)):
        raise Diverged('fine-tuning diverged: the class probabilities are not finite; use a smaller --learning-rate')
    return probs


def read_images(algo, args):
    """The support images and the query from --images, --drawings or --support/--query."""
    if args.drawings:
        return split_stack(read_drawings(algo, args.drawings))
    if args.images:
        return split_stack(read_stack(args.images))
    if algo.model.name == 'omniglot':
        read = lambda path: omniglot.as_input(omniglot.read_image(path, binarize=True))
    else:
        read = lambda path: miniimagenet.as_input(miniimagenet.read_image(path))
    return [read(p) for p in args.support], read(args.query)


def read_stack(path):
    """The float32 image stack [n, height, width(, channels)] of a .npy file of real numbers."""
    try:
        stack = np.load(path)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f'cannot read {path} ({exc}): expected a .npy image stack') from None
    if not isinstance(stack, np.ndarray) or stack.ndim not in (3, 4) or stack.dtype.kind not in 'fiub':
        what = f'a {stack.ndim}-d array of {stack.dtype}' if isinstance(stack, np.ndarray) else 'no single array'
        raise InputError(f'{path} holds {what}: expected a .npy stack of images [n, height, width] of numbers')
    stack = stack.astype(np.float32)
    if not np.all(np.isfinite(stack)):
        raise InputError(f'{path} holds NaN or infinite pixels: expected images of finite numbers')
    return stack


def split_stack(stack):
    """(support images, query) of a stack whose last image is the query."""
    if len(stack) < 2:
        raise InputError(f'got {len(stack)} image(s): give the support images, then the query')
    return list(stack[:-1]), stack[-1]


def read_drawings(algo, path):
    """The drawings in a JSON file rasterized as the web demo does: float32 [n, 28, 28]."""
    checkpoint.check_model(algo, 'omniglot', path='the model', fix='--drawings are Omniglot characters')
    try:
        with open(path) as file:
            data = json.load(file)
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f'cannot read drawings {path} ({exc}): expected JSON like default_drawing.json') from None
    paths = data.get('paths') if isinstance(data, dict) else data
    if not isinstance(paths, list):
        raise InputError(f'{path} holds no list of drawings: expected {{"paths": [drawing, ...]}}')
    size = algo.model.input_shape[1]
    images = [drawing.rasterize(d, size, f'drawing {i + 1}') for i, d in enumerate(paths)]
    return np.stack(images) if images else np.zeros((0, size, size), np.float32)


def save_stack(path, stack):
    """Write the image stack to `path` (.npy), as --images reads it."""
    if not str(path).endswith('.npy') or os.path.isdir(path):
        raise InputError(f'cannot write {path}: name a .npy file (numpy would write another name)')
    try:
        np.save(path, stack)
    except OSError as exc:
        raise InputError(f'cannot write {path} ({exc.strerror or exc})') from None


def check_images(algo, support, query):
    """Refuse image stacks that do not fit the model: one support image per class, right shape."""
    classes, shape = algo.model.output_shape[-1], tuple(algo.model.input_shape[1:])
    if len(support) != classes:
        raise InputError(f'the model is {classes}-way: give {classes} support images (one per class) '
                         f'and then the query, not {len(support)} + 1')
    if tuple(query.shape) != shape:
        raise InputError(f'images must be {shape} for this {algo.model.name} model, got {tuple(query.shape)}')
