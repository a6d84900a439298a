"""Writing files so that a crash, a kill -9 or a power loss leaves the old version or the
new one, never a mix: the one way the package replaces a file (checkpoint index, run
identity, results)."""

import os
import tempfile


def write_atomically(path, text, prefix='.tmp-'):
    """Replace `path` with `text`: write a temporary file beside it (named `prefix`...,
    so that leftovers of a kill are recognizable), flush it to disk, rename it into place
    and flush the folder's entry. The file gets the mode open() would give it."""
    folder = os.path.dirname(os.path.abspath(path))
    out = tempfile.NamedTemporaryFile('w', dir=folder, prefix=prefix, delete=False)
    try:
        with out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), 0o666 & ~_umask())  # what open() would give, not mkstemp's 0600
            os.fsync(out.fileno())
        os.replace(out.name, path)
    except BaseException:
        os.unlink(out.name)
        raise
    fsync(folder)


def fsync(path):
    """Flush a file, or a folder's entries (renames), to disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _umask():
    """The process's umask (reading it means setting it: set it back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
