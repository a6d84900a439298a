"""The demo as a static web page that fine-tunes in the browser, exported from any model.

`files(algo)` gives the folder `reptile-export MODEL --web DIR` writes (and the demo
server serves from memory): the page (`index.html`, `page.js`, shipped in `web/`), its
engine (`engine.js`: TensorFlow.js, `web/cpunet.js` and `web/worker.js` as one JavaScript string, because
browsers refuse worker script URLs on file:// pages, so the page builds its worker from a
Blob), the model (`model.js`) and the original demo's default drawing (`default.js`).
Every file is a script loaded by <script src>, never fetched: the folder works opened from
disk and from any static host, offline.

`model.js` holds the model's weights and optimizer slots as their float32 bytes (little
endian, base64, with a CRC-32 that the page checks) and its fine-tuning rule: the
optimizer (the web demo's preconditioned rule, Adam with beta1 = 0, or SGD) with its
hyper-parameters and state, and the inner mini-batches `fewshot` fine-tunes on, as index
lists into the support images (drawn from the same seed, so both engines take the same
steps on the same batches).
"""

import base64
import importlib.resources
import json
import zlib

import numpy as np

from ..assets import WEBDEMO
from ..errors import InputError
from ..optimizers import SGD, Adam, Preconditioned
from ..running import checkpoint
from . import finetune

WAYS = range(2, 6)  # classes the page has room for
WEB = importlib.resources.files(__package__).joinpath('web')
TFJS = 'vendor/tf.es2017.min.js'
TFJS_LICENSE = 'vendor/LICENSE'


def check_model(algo, path):
    """Refuse a model the page cannot run: not Omniglot, or a number of ways it has no room for."""
    checkpoint.check_model(algo, 'omniglot', path=path, fix='the web page runs Omniglot models only')
    classes = algo.model.output_shape[-1]
    if classes not in WAYS:
        raise InputError(f'{path} holds a {classes}-way model: the web page runs {WAYS[0]} to {WAYS[-1]} ways; '
                         f'train one with run_omniglot.py --classes 3')


def rule(algo):
    """The model's fine-tuning rule as the page's worker applies it (see module docstring)."""
    ways = algo.model.output_shape[-1]
    inner_iters, inner_batch = finetune.fine_tune_steps(algo, ways)
    task = finetune.support_task([np.zeros(algo.model.input_shape[1:], np.float32)] * ways, inner_iters, inner_batch)
    conv_bias = algo.model.layers[1].use_bias
    common = {'conv_bias': conv_bias, 'inner_iters': inner_iters, 'inner_batch': inner_batch,
              'batches': [b.tolist() for b in task.batches]}
    opt, state = algo.optimizer, algo.optimizer_state
    if isinstance(opt, Preconditioned):
        return {'optimizer': 'preconditioned', 'learning_rate': opt.learning_rate, 'epsilon': opt.epsilon, **common}
    if isinstance(opt, Adam):
        return {'optimizer': 'adam', 'learning_rate': opt.learning_rate, 'beta1': opt.beta1, 'beta2': opt.beta2,
                'epsilon': opt.epsilon, 'beta1_power': float(state['beta1_power'].numpy()),
                'beta2_power': float(state['beta2_power'].numpy()), **common}
    assert isinstance(opt, SGD), opt
    return {'optimizer': 'sgd', 'learning_rate': opt.learning_rate, **common}


def weights(algo):
    """The trainable weights, then (but for SGD) their second moments: (shapes, float32 bytes)."""
    second_moments = [algo.optimizer_state[name] for name in algo.optimizer.slot_names[-1:]]  # none for SGD
    tensors = list(algo.variables) + [v for slots in second_moments for v in slots]
    data = b''.join(np.asarray(t, dtype='<f4').tobytes() for t in tensors)
    return [list(v.shape) for v in algo.variables], data


def model_script(algo):
    """model.js: `self.REPTILE_MODEL = {...}` with the rule, shapes and base64 weights."""
    shapes, data = weights(algo)
    model = {'format': 1, 'ways': algo.model.output_shape[-1], 'rule': rule(algo), 'shapes': shapes,
             'bytes': len(data), 'crc32': zlib.crc32(data), 'data': base64.b64encode(data).decode('ascii')}
    return _script('REPTILE_MODEL', model, 'the model and its fine-tuning rule, written by reptile-export --web')


def _script(name, value, about):
    """A script that sets the global `name` to the JSON `value`."""
    return f'// {about}\nself.{name} = {json.dumps(value)};\n'.encode('utf-8')


def files(algo):
    """{file name: bytes} of the web page for `algo` (checked with `check_model` first)."""
    read = lambda name: WEB.joinpath(name).read_text(encoding='utf-8')
    default = json.loads(WEBDEMO.joinpath('default_drawing.json').read_text(encoding='utf-8'))
    return {
        'index.html': read('index.html').encode('utf-8'),
        'page.js': read('page.js').encode('utf-8'),
        'engine.js': _script('REPTILE_WORKER_SOURCE', '\n'.join(read(name) for name in (TFJS, 'cpunet.js', 'worker.js')),
                             'TensorFlow.js (Apache-2.0, see tfjs.LICENSE.txt), the CPU engine and the fine-tuning worker'),
        'tfjs.LICENSE.txt': read(TFJS_LICENSE).encode('utf-8'),
        'default_drawing.LICENSE.txt': WEBDEMO.joinpath('LICENSE').read_bytes(),
        'model.js': model_script(algo),
        'default.js': _script('REPTILE_DEFAULT_DRAWING', {'paths': default['paths']},
                              "the original demo's default drawing (MIT, see default_drawing.LICENSE.txt)"),
    }


def write(algo, path, directory):
    """Write the page for the model loaded from `path` into `directory`; returns the file names."""
    check_model(algo, path)
    pages = files(algo)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in pages.items():
            (directory / name).write_bytes(data)
    except OSError as exc:
        raise InputError(f'cannot write the web page into {directory} ({exc.strerror}): pick another --web folder') from None
    return sorted(pages)
