"""Progress of long loops on a terminal, with the periodic lines printed above the bar."""

import sys

import keras


class Progress:
    """A Keras progress bar when `enabled` and stdout is a terminal (nothing otherwise).

    `log` prints a line on a row of its own and redraws the bar below it, so that piped
    output holds exactly the printed lines and a terminal never shows a line glued to the
    bar. Used as a context manager, it ends the bar's row when the loop stops early.
    """

    def __init__(self, total, enabled=True, start=0):
        self._bar = keras.utils.Progbar(total, interval=0) if enabled and sys.stdout.isatty() else None
        self._total = total
        self._current = start
        if self._bar and start:
            self._bar.update(start)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._bar and self._current < self._total:
            print(flush=True)

    def update(self, current):
        """Move the bar to `current` of the total."""
        self._current = current
        if self._bar:
            self._bar.update(current)

    def log(self, line):
        """Print `line` on its own row, above the bar."""
        if self._bar:
            sys.stdout.write('\r\x1b[2K')  # erase the bar's row, then draw it again below the line
        print(line, flush=True)
        if self._bar:
            self._bar.update(self._current)
