"""How every command ends on bad input, a failed run or a stop signal: one line on stderr and
a documented exit status, never a traceback.

`InputError` is the one exception type for bad input (data, flags, checkpoints); its
message names the problem and the fix. A `RunFailed` ends a run that cannot go on (its
subclasses say why, each with its own status); `Stopped` ends a run stopped
by a signal (see `running.signals`). `guarded` runs a command's main function and maps each to its status in
`EXIT_STATUSES`, the one table that the docs and batch scripts rely on.
"""

import signal
import sys



EXIT_STATUSES = {
    'bad input': 2,        # fix the input named in the message and run again
    'diverged': 65,        # a non-finite loss or weight: resume with a smaller learning rate
    'worker lost': 75,     # another worker died or stopped answering: requeue, --resume
    'SIGINT': 130,         # stopped by Ctrl-C, after a checkpoint when training
    'SIGTERM': 143,        # stopped by SIGTERM (preemption), after a checkpoint: requeue, --resume
}


class InputError(Exception):
    """Bad user input: missing or malformed data, impossible flags, unreadable checkpoints."""


class RunFailed(Exception):
    """A run that cannot go on; `status` names its row of EXIT_STATUSES."""
    status = None

    @property
    def exit_status(self):
        return EXIT_STATUSES[self.status]


class Diverged(RunFailed):
    """A non-finite loss or weight: training stops before anything non-finite is saved."""
    status = 'diverged'


class WorkerLost(RunFailed):
    """Another worker of a distributed run died or stopped answering."""
    status = 'worker lost'


class Stopped(BaseException):
    """The run was stopped by a signal: `message` says how far it got. A BaseException, like
    KeyboardInterrupt, so that no handler of ordinary errors swallows it. `quiet`: exit
    without a line (the workers of a distributed run but the chief, which prints it)."""

    def __init__(self, signum, message, quiet=False):
        super().__init__(message)
        self.signum = signum or signal.SIGTERM  # None: stopped because another worker was
        self.quiet = quiet

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


def guarded(main):
    """Run `main`; bad input and stop signals end with one line on stderr and the status."""
    raise_on_sigterm()
    try:
        main()
    except InputError as exc:
        _exit(f'error: {exc}', EXIT_STATUSES['bad input'])
    except RunFailed as exc:
        _exit(f'error: {exc}', exc.exit_status)
    except KeyboardInterrupt:
        _exit('stopped by SIGINT (Ctrl-C)', EXIT_STATUSES['SIGINT'])
    except Stopped as exc:
        _exit(None if exc.quiet else str(exc), exc.exit_status)


def one_line(text):
    """`text` with its line breaks and other unprintable characters escaped, so that a
    message quoting user input (a file name, a flag value) stays on one line."""
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _exit(line, status):
    """Print `line` (if any) on stderr, on a row of its own, and exit with `status`."""
    sys.stdout.flush()
    if line:
        print(one_line(line), file=sys.stderr, flush=True)
    sys.exit(status)
