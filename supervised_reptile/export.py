"""Export a stored model for other tools.

    python -m supervised_reptile.export CHECKPOINT --tf1 OUT_DIR
    python -m supervised_reptile.export CHECKPOINT --keras OUT.keras

`--tf1` writes a TF1 checkpoint folder with the original's variable names (what
`tf.train.Saver().restore` in the original's scripts reads); `--keras` writes the Keras
model for inference. Call that model with `training=True`: like the original, it must
normalize with the statistics of the batch it is given (its moving averages are never
trained).
"""

import os
import sys

from .running.startup import quiet_tensorflow

quiet_tensorflow()  # before the imports below, which start TensorFlow

from .running import checkpoint  # noqa: E402
from .running.lock import FolderLock  # noqa: E402
from .args import Parser  # noqa: E402
from .errors import guarded  # noqa: E402
from .errors import InputError  # noqa: E402


def main(argv=None):
    """Load any stored model and write it in the requested formats."""
    parser = Parser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='checkpoint folder or prefix, or web-demo .npz')
    parser.add_argument('--tf1', metavar='OUT_DIR', help='write a TF1 checkpoint folder (original names)')
    parser.add_argument('--keras', metavar='OUT.keras', help='write a Keras model file')
    args = parser.parse_args(argv)
    if not (args.tf1 or args.keras):
        parser.error('nothing to do: give --tf1 OUT_DIR and/or --keras OUT.keras')
    check_destinations(args.tf1, args.keras)
    algo = checkpoint.load_pretrained(args.checkpoint)
    if args.tf1:
        with FolderLock(args.tf1):
            print(checkpoint.save(args.tf1, 0, algo))
    if args.keras:
        try:
            algo.model.save(args.keras)
        except OSError as exc:
            raise InputError(f'cannot write --keras {args.keras} ({exc.strerror or exc})') from None
        print(args.keras)


def check_destinations(tf1, keras_file):
    """Refuse, before loading anything, destinations that cannot be written."""
    if tf1 and os.path.exists(tf1) and not os.path.isdir(tf1):
        raise InputError(f'--tf1 {tf1} is a file: name a folder (new, or holding checkpoints)')
    if keras_file and not keras_file.endswith('.keras'):
        raise InputError(f'--keras {keras_file}: the file name must end in .keras')
    if keras_file and (os.path.isdir(keras_file) or not os.path.isdir(os.path.dirname(os.path.abspath(keras_file)))):
        raise InputError(f'cannot write --keras {keras_file}: it is a folder, or its folder does not exist')


def cli():
    """The console command."""
    guarded(lambda: main(sys.argv[1:]))


if __name__ == '__main__':
    cli()
