"""One run per checkpoint folder: an OS lock on the folder's `.lock` file.

Two runs training into one folder would interleave their checkpoints and event files. The
lock is `fcntl.flock`, which the kernel releases when its holder exits in any way (kill -9
included), so a dead run never leaves a stale lock; the file stays, holding the PID of its
last holder, which is what a refused run names. Only the chief of a multi-worker run
takes it (the other workers write nothing there).
"""

import fcntl
import os

from ..errors import InputError
from . import checkpoint

FILE = '.lock'


class FolderLock:
    """A context that holds the lock of `directory` (created if needed), or raises InputError
    naming the PID of the run that holds it. On entry it also removes what an interrupted
    save of an earlier run left behind."""

    def __init__(self, directory):
        self.directory = directory
        self._fd = None

    def __enter__(self):
        path = os.path.join(self.directory, FILE)
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InputError(f'cannot use {self.directory} as the checkpoint folder ({exc.strerror}): choose a '
                             'writable --checkpoint folder') from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors='replace').strip() or 'unknown'
            os.close(fd)
            raise InputError(f'{self.directory} is in use by another run (PID {holder}): wait for it to end, '
                             'or choose another --checkpoint folder') from None
        os.ftruncate(fd, 0)
        os.write(fd, f'{os.getpid()}\n'.encode())
        self._fd = fd
        checkpoint.remove_temporaries(self.directory)
        return self

    def __exit__(self, *exc_info):
        os.close(self._fd)  # releases the lock
        self._fd = None
