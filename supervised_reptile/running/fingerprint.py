"""What every worker of a distributed run must agree on before its first meta-iteration.

Each process resumes from its own --checkpoint folder and samples tasks from its own copy
of the seeded stream; the weights are broadcast from the chief, nothing else is. Workers
that start from different meta-iterations, random states, data, flags or package versions
would sample other tasks and drift apart silently, or fail later with an obscure
collective error. So the workers exchange a fingerprint of all of these (one number per
item: the value itself when it is a small integer, else 52 bits of its SHA-256, exact in
float64) and stop, every one of them, with one line naming the first item that differs
and the workers that hold different values.
"""

import hashlib
import json
import random

from .. import __version__
from ..errors import InputError

# Flags that may differ between workers: paths on each machine, and the number of
# evaluation episodes per call, which the workers agree on (the smallest; see `eval`).
PER_WORKER_FLAGS = ('data_dir', 'checkpoint', 'results', 'eval_parallel')
FIXES = {
    'package version': 'install the same version of supervised_reptile on every worker',
    'flag': 'pass the same flags to every worker',
    'data set': 'give every worker the same data (same classes and images)',
    'start meta-iteration': 'give every worker the same --checkpoint folder (on a file system they all see), '
                            'or copy the latest checkpoint into each worker\'s folder',
    'random state': 'give every worker the same --checkpoint folder (on a file system they all see), '
                    'or copy the latest checkpoint into each worker\'s folder',
}


def fingerprint(args, digest, start, eval_stream=None):
    """{item: value} that must be equal on every worker: the package version, each flag
    (but `PER_WORKER_FLAGS`), the data `digest`, the `start` meta-iteration and the random
    states (Python's and `eval_stream`'s) that the first meta-batch will be sampled from."""
    items = {'package version': __version__}
    items.update({f'--{name.replace("_", "-")}': value for name, value in sorted(vars(args).items())
                  if name not in PER_WORKER_FLAGS})
    items.update({'data set': digest, 'start meta-iteration': start,
                  'random state': [random.getstate(), eval_stream.state if eval_stream else None]})
    return items


def check(items, runner):
    """Compare `items` (see `fingerprint`) across the workers of `runner`; refuse the first
    that differs with one line (`errors.InputError`, on every worker)."""
    rows = runner.gather([_number(value) for value in items.values()])
    for column, name in enumerate(items):
        different = [w for w in range(len(rows)) if rows[w, column] != rows[0, column]]
        if different:
            a, b = 0, different[0]
            shown = {w: f' ({int(rows[w, column])})' if isinstance(items[name], int) else '' for w in (a, b)}
            fix = FIXES['flag' if name.startswith('--') else name]
            raise InputError(f'workers disagree on the {name}: worker {a} ({runner.workers[a]}){shown[a]} and '
                             f'worker {b} ({runner.workers[b]}){shown[b]} differ: {fix}')


def _number(value):
    """`value` as a float64 that two workers can compare exactly."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 52:
        return float(value)
    return float(int(hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:13], 16))
