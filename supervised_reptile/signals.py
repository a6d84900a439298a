"""Stopping on Ctrl-C and SIGTERM: one line, the shell's exit status, never a traceback.

Outside training, SIGINT raises KeyboardInterrupt (Python's default) and SIGTERM raises
`Stopped`; `errors.guarded` turns either into one line and exit status 130 or 143.
Training instead only records the signal (`StopRequests`), finishes its meta-iteration,
writes a checkpoint and then raises `Stopped`, so that nothing is lost (batch schedulers
send SIGTERM before they preempt a job).
"""

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """The run was stopped by a signal: `message` says how far it got. A BaseException, like
    KeyboardInterrupt, so that no handler of ordinary errors swallows it."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = signum or signal.SIGTERM  # None: stopped because another worker was

    @property
    def exit_status(self):
        """128 + the signal number: what a shell reports for a process killed by it."""
        return 128 + self.signum

    def __str__(self):
        return ' '.join(filter(None, ['stopped by', signal.Signals(self.signum).name, self.args[0]]))


def raise_on_sigterm():
    """Make SIGTERM raise `Stopped` in the main thread, as SIGINT raises KeyboardInterrupt."""
    def handler(signum, frame):
        raise Stopped(signum, '')
    signal.signal(signal.SIGTERM, handler)


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
