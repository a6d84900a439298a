"""Per-task evaluation results as JSON lines, so that analyses need no log scraping.

The first line is a header (`"type": "header"`: the flags, the package version and the
model); then one line per evaluated task: split, task index, the task's classes (their
folders, in label order), correct and total queries. The file is written atomically once
the evaluations are done: it is complete or absent.
"""

import json
import os
import tempfile

from .. import __version__
from ..errors import InputError
from .files import write_atomically


def _check_writable(path):
    """Refuse a --results path that cannot be written, before any work is done: found only
    at the end, the results would be lost."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise InputError(f'cannot write --results {path}: it is a folder; name a file in it')
    if not os.path.isdir(folder):
        raise InputError(f'cannot write --results {path}: its folder does not exist')
    try:  # access() says nothing about read-only mounts (and everything is writable for root)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(f'cannot write --results {path} ({exc.strerror}): choose a writable folder') from None


class ResultsFile:
    """Collects results to write to `path` (nothing is written when `path` is None)."""

    def __init__(self, path, flags, model):
        if path:
            _check_writable(path)
        self.path = path
        self.lines = [{'type': 'header', 'version': __version__, 'model': model, 'flags': flags}]

    def add(self, split, outcomes, model=None, **columns):
        """One line per task `Outcome` of `split`, in evaluation order (with the `model`
        path when a file holds several models' results). Each keyword adds a field to
        every line: a list of one value per task (e.g. the same tasks scored another way)."""
        tagged = {'model': model} if model else {}
        self.lines += [{**tagged, 'split': split, 'task': index, 'classes': list(o.classes), 'correct': o.correct,
                        'total': o.total, **{name: values[index] for name, values in columns.items()}}
                       for index, o in enumerate(outcomes)]

    def write(self):
        """Write every line to a temporary file beside `path`, then rename it into place."""
        if not self.path:
            return
        try:
            write_atomically(self.path, ''.join(json.dumps(line, allow_nan=False) + '\n' for line in self.lines),
                             prefix='.results-')
        except OSError as exc:
            raise InputError(f'cannot write --results {self.path} ({exc.strerror}): free some space') from None
