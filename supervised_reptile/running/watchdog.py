"""Ending every worker of a distributed run, in bounded time, when one is lost.

A worker that dies shows up in the others as a TensorFlow error from their next
collective (`UnavailableError` and the like, once the coordination service misses its
heartbeats, about 10 s); `lost_worker` turns it into `errors.WorkerLost`, naming the
worker when TensorFlow's message does. A worker that hangs shows up as nothing at all:
its peers wait in a collective forever. `Watchdog` bounds that wait: when one collective
call has been under way for longer than --collective-timeout, it prints one line and ends
the process with the worker-lost status (the main thread is blocked in TensorFlow's C++
and cannot raise). tf.distribute's own `CommunicationOptions(timeout_seconds=...)` is not
used: it starts one sleeping thread per collective for the whole timeout, thousands per
run at several meta-iterations a second.
"""

import contextlib
import os
import re
import sys
import threading
import time

from ..errors import EXIT_STATUSES, WorkerLost

DEFAULT_TIMEOUT = 300
# What a collective raises when a peer is gone: its task named in the message, when it is.
LOST_ERRORS = ('UnavailableError', 'DeadlineExceededError', 'AbortedError', 'CancelledError')
_TASK = re.compile(r'/job:worker/(?:replica:\d+/)?task:(\d+)')


class Watchdog:
    """Ends the process (one line, exit status 75) when a `watching` block lasts longer than
    `timeout` seconds; `message()` gives the line's text."""

    def __init__(self, timeout, message):
        self.timeout, self.message = timeout, message
        self._deadline = None
        self._lock = threading.Lock()
        threading.Thread(target=self._watch, daemon=True, name='collective-watchdog').start()

    @contextlib.contextmanager
    def watching(self):
        """A block (one collective call) that must end within the timeout."""
        with self._lock:
            self._deadline = time.monotonic() + self.timeout
        try:
            yield
        finally:
            with self._lock:
                self._deadline = None

    def _watch(self):
        while True:
            time.sleep(min(1.0, self.timeout / 10))
            with self._lock:
                expired = self._deadline is not None and time.monotonic() > self._deadline
            if expired:
                sys.stdout.flush()
                print(f'error: {self.message()}', file=sys.stderr, flush=True)
                os._exit(EXIT_STATUSES[WorkerLost.status])


def lost_worker(exc, me, describe):
    """The `WorkerLost` that TensorFlow error `exc`, raised in worker `me`, means, or None
    when it means something else; `describe(task or None)` names the lost worker."""
    if type(exc).__name__ not in LOST_ERRORS:
        return None
    tasks = {int(task) for task in _TASK.findall(str(exc))} - {me}
    return WorkerLost(describe(tasks.pop() if len(tasks) == 1 else None))
