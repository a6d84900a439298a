"""Preparing the next meta-batch while the current one runs.

Sampling a meta-batch (Python's `random`) and decoding its images is host work that the
device does not need to wait for: `Prefetch` does it in one background thread while the
main thread runs the previous meta-iteration in TensorFlow (which releases the GIL). The
tasks stay the original's: only one sampling runs at a time, and the training loop starts
the next one only where the original would sample next, never while it samples
evaluation tasks itself. A checkpoint written meanwhile saves `random_state`, the state of
`random` before the sampling under way, so that a resumed run samples that meta-batch again.
"""

import random
from concurrent.futures import ThreadPoolExecutor


class Prefetch:
    """Calls `sample()` one call ahead, in a thread (inline when `overlap` is false)."""

    def __init__(self, sample, overlap=True):
        self.sample, self.overlap = sample, overlap
        self._pool = ThreadPoolExecutor(1, thread_name_prefix='prefetch') if overlap else None
        self._pending = None
        self._state = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._pool:
            self._pool.shutdown(wait=True)  # a sampling under way ends before `random` is touched again

    def start(self):
        """Begin the next call; from now until `take`, the main thread must not use `random`."""
        self._state = random.getstate()
        self._pending = self._pool.submit(self.sample) if self.overlap else self.sample()

    def take(self):
        """The result of the call begun by `start` (waiting for it; its error, if it raised)."""
        pending, self._pending = self._pending, None
        return pending.result() if self.overlap else pending

    @property
    def random_state(self):
        """The state of `random` as if nothing were sampled ahead: what checkpoints save."""
        return self._state if self._pending is not None else random.getstate()
