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


def check(directory, current, resume, changeable=()):
    """On --resume, check the recorded identity against `current` (see `identity`), except
    the flags `changeable` (a new learning rate after a divergence); on a new run, refuse a
    folder that already holds one."""
    recorded = _read(os.path.join(directory, FILE))
    holds_run = recorded is not None or os.path.isfile(os.path.join(directory, 'checkpoint'))
    if holds_run and not resume:
        raise InputError(f'{directory} already holds a training run: add --resume to continue it, '
                         'or choose another --checkpoint folder')
    if recorded is not None:
        _check(directory, recorded, current, changeable)


def record(directory, current):
    """Write `current` as the folder's `run.json` (atomically). A folder that holds one keeps
    it, with the values of any flag `check` let change and a `changes` list of them."""
    path = os.path.join(directory, FILE)
    recorded = _read(path)
    if recorded is not None:
        changes = [{'flag': name, 'from': value, 'to': current['flags'][name]}
                   for name, value in recorded['flags'].items() if current['flags'].get(name, value) != value]
        if not changes:
            return
        current = {**recorded, 'flags': {**recorded['flags'], **current['flags']},
                   'changes': recorded.get('changes', []) + changes}
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


def _check(directory, recorded, current, changeable):
    """Stop at the first flag (but those `changeable`), or the data, that differs from the
    recorded run."""
    for name, value in current['flags'].items():
        if name in recorded['flags'] and recorded['flags'][name] != value and name not in changeable:
            flag = '--' + name.replace('_', '-')
            raise InputError(f'{flag} is {value!r} but the run in {directory} was started with {flag} '
                             f'{recorded["flags"][name]!r}: resume with the same value, or train into another folder')
    if recorded['data']['digest'] != current['data']['digest']:
        raise InputError(f'--data-dir {current["data"]["dir"]} holds other data (classes or image counts) than '
                         f'{recorded["data"]["dir"]}, which the run in {directory} was started with: resume with '
                         'that data, or train into another folder')
