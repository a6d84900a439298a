"""The one exception type for bad input (data, flags, checkpoints).

Command-line tools catch it and print its message as a single line with exit status 2,
so every message should name the problem and the fix.
"""


import sys


class InputError(Exception):
    """Bad user input: missing or malformed data, impossible flags, unreadable checkpoints."""


def guarded(main):
    """Run `main`; bad input ends with one line on stderr and exit status 2."""
    try:
        main()
    except InputError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(2)
