"""The one exception type for bad input (data, flags, checkpoints).

Command-line tools catch it and print its message as a single line with exit status 2,
so every message should name the problem and the fix.
"""


class InputError(Exception):
    """Bad user input: missing or malformed data, impossible flags, unreadable checkpoints."""
