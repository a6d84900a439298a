"""Stopping on Ctrl-C and SIGTERM: one line, the shell's exit status, never a traceback.

Outside training, SIGINT raises KeyboardInterrupt (Python's default) and SIGTERM raises
`errors.Stopped` (see `errors.raise_on_sigterm`); `errors.guarded` turns either into one
line and exit status 130 or 143. Training instead only records the signal (`StopRequests`),
finishes its meta-iteration, writes a checkpoint and then raises `errors.Stopped`, so that
nothing is lost (batch schedulers send SIGTERM before they preempt a job).
"""

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """A context in which SIGINT and SIGTERM are only recorded (`requested`, `signum`)."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    def __enter__(self):
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _record(self, signum, frame):
        self.signum = self.signum or signum
