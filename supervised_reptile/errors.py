"""How every command ends on bad input or a stop signal: one line, never a traceback.

`InputError` is the one exception type for bad input (data, flags, checkpoints); its
message names the problem and the fix. `guarded` runs a command's main function and turns
an InputError into exit status 2, Ctrl-C into 130 and SIGTERM into 143 (see `signals`).
"""

import signal
import sys

from .signals import Stopped, raise_on_sigterm


class InputError(Exception):
    """Bad user input: missing or malformed data, impossible flags, unreadable checkpoints."""


def guarded(main):
    """Run `main`; bad input and stop signals end with one line on stderr and the status."""
    raise_on_sigterm()
    try:
        main()
    except InputError as exc:
        _exit(f'error: {exc}', 2)
    except KeyboardInterrupt:
        _exit('stopped by SIGINT (Ctrl-C)', 128 + signal.SIGINT)
    except Stopped as exc:
        _exit(str(exc), exc.exit_status)


def _exit(line, status):
    """Print `line` on stderr, on a row of its own, and exit with `status`."""
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    sys.exit(status)
