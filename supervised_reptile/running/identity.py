"""A training run's identity, recorded in its checkpoint folder and checked on --resume.

`run.json` holds the flags that decide the run's split, tasks, schedule and numbers (those
declared with `identity` in `args.FLAGS`; the others change where or how fast a run goes,
or only its final evaluation), and a digest of the data set as read (every class and its
image count). Resuming with another
value of any of them, or with other data, would silently mix two runs (test characters
could even leak into training), so it stops with one line; so does starting a new run in
a folder that already holds one.
"""

import hashlib
import json
import os

from ..errors import InputError
from .files import write_atomically

FILE = 'run.json'


def data_digest(splits, data_dir):
    """A digest of the data as split: each split's classes (folders relative to `data_dir`)
    and image counts, in order."""
    listing = {name: [[os.path.relpath(c.name, data_dir), len(c)] for c in classes]
               for name, classes in splits.items()}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def identity(flags, data_dir, digest):
    """What `run.json` records: the identity `flags` ({name: value}, see
    `args.identity_flags`) and the data (`data_dir` as given and its `digest`)."""
    return {'flags': flags, 'data': {'dir': data_dir, 'digest': digest}}


def check(directory, current, resume):
    """On --resume, check the recorded identity against `current` (see `identity`); on a new
    run, refuse a folder that already holds one."""
    recorded = _read(os.path.join(directory, FILE))
    holds_run = recorded is not None or os.path.isfile(os.path.join(directory, 'checkpoint'))
    if holds_run and not resume:
        raise InputError(f'{directory} already holds a training run: add --resume to continue it, '
                         'or choose another --checkpoint folder')
    if recorded is not None:
        _check(directory, recorded, current)


def record(directory, current):
    """Write `current` as the folder's `run.json` (atomically), unless it holds one."""
    path = os.path.join(directory, FILE)
    if os.path.exists(path):
        return
    os.makedirs(directory, exist_ok=True)
    write_atomically(path, json.dumps(current, indent=1, sort_keys=True))


def _read(path):
    try:
        with open(path) as file:
            return json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f'cannot read {path} ({exc}): restore it, or train into another --checkpoint folder') from None


def _check(directory, recorded, current):
    """Stop at the first flag (or the data) that differs from the recorded run."""
    for name, value in current['flags'].items():
        if name in recorded['flags'] and recorded['flags'][name] != value:
            flag = '--' + name.replace('_', '-')
            raise InputError(f'{flag} is {value!r} but the run in {directory} was started with {flag} '
                             f'{recorded["flags"][name]!r}: resume with the same value, or train into another folder')
    if recorded['data']['digest'] != current['data']['digest']:
        raise InputError(f'--data-dir {current["data"]["dir"]} holds other data (classes or image counts) than '
                         f'{recorded["data"]["dir"]}, which the run in {directory} was started with: resume with '
                         'that data, or train into another folder')
