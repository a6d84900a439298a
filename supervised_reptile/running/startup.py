"""Starting TensorFlow without its start-up chatter.

TensorFlow's C++ runtime logs through absl before anything can configure it: the line
'All log messages before absl::InitializeLog() is called are written to STDERR', CUDA
probing on machines without a GPU, the oneDNN notice and CPU-feature notes, each often
twice. TF_CPP_MIN_LOG_LEVEL no longer reaches those, so `quiet_tensorflow` imports
TensorFlow and lets it find its devices with file descriptor 2 captured, then prints every
captured line except those notices: real warnings and errors still show. A user who sets
TF_CPP_MIN_LOG_LEVEL gets TensorFlow's own behaviour, unfiltered.

Nothing here imports TensorFlow at module level: command-line tools call
`quiet_tensorflow()` before importing the modules that do. Ctrl-C during the import (a
few seconds) ends with one line, as everywhere else (see `errors.guarded`).
"""

import os
import re
import sys
import tempfile

_NOTICES = re.compile(r'^(WARNING: All log messages before absl::InitializeLog\(\) is called'
                      r'|I\d{4} '  # absl's informational lines: oneDNN, CPU features, cudart stub
                      r'|To enable the following instructions: )')  # the CPU-feature note's 2nd line
_NO_GPU = re.compile(r'^E\d{4} .*failed call to cuInit')  # a CUDA build on a machine without a GPU


def quiet_tensorflow():
    """Import TensorFlow and discover its devices, printing only what is worth reading."""
    from ..errors import guarded
    guarded(_import_tensorflow)


def _import_tensorflow():
    if 'TF_CPP_MIN_LOG_LEVEL' in os.environ or 'tensorflow' in sys.modules:
        import tensorflow  # noqa: F401
        return
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'  # what TF still honours: its later INFO and WARNING lines
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf
            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors='replace').splitlines()
            sys.stderr.write(''.join(line + '\n' for line in lines if not _is_notice(line)))


def _is_notice(line):
    """Whether a captured line is start-up chatter rather than a warning or an error."""
    return bool(_NOTICES.match(line) or (_NO_GPU.match(line) and not os.path.exists('/dev/nvidia0')))
