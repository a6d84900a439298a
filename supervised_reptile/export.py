"""Export a stored model for other tools.

    python -m supervised_reptile.export CHECKPOINT --tf1 OUT_DIR
    python -m supervised_reptile.export CHECKPOINT --keras OUT.keras
    python -m supervised_reptile.export MODEL --web OUT_DIR

`--tf1` writes a TF1 checkpoint folder with the original's variable names (what
`tf.train.Saver().restore` in the original's scripts reads); `--keras` writes the Keras
model for inference. Call that model with `training=True`: like the original, it must
normalize with the statistics of the batch it is given (its moving averages are never
trained). `--web` writes the demo as a static page that fine-tunes in the browser
(see `tools.webexport` and docs/web-demo.md).
"""

import os
import pathlib
import sys

from .args import parse, parser
from .errors import InputError, guarded
from .running.startup import quiet_tensorflow


def argument_parser():
    """The command's flags."""
    return parser(['source', 'tf1', 'keras', 'web'], __doc__.split('\n\n')[0])


def main(argv=None):
    """Load any stored model and write it in the requested formats."""
    args = parse(argument_parser(), argv)
    if not (args.tf1 or args.keras or args.web):
        raise InputError('nothing to do: give --tf1 OUT_DIR, --keras OUT.keras and/or --web OUT_DIR')
    check_destinations(args.tf1, args.keras)
    quiet_tensorflow()  # TensorFlow: only once the flags are valid
    from .running import checkpoint
    from .running.lock import FolderLock
    from .tools import webexport
    algo = checkpoint.load_pretrained(args.source)
    if args.web:
        webexport.check_model(algo, args.source)  # before writing anything
    if args.tf1:
        with FolderLock(args.tf1):
            print(checkpoint.save(args.tf1, 0, algo))
    if args.keras:
        try:
            algo.model.save(args.keras)
        except OSError as exc:
            raise InputError(f'cannot write --keras {args.keras} ({exc.strerror or exc})') from None
        print(args.keras)
    if args.web:
        webexport.write(algo, args.source, pathlib.Path(args.web))
        print(args.web)


def check_destinations(tf1, keras_file):
    """Refuse, before loading anything, destinations that cannot be written."""
    if tf1 and os.path.exists(tf1) and not os.path.isdir(tf1):
        raise InputError(f'--tf1 {tf1} is a file: name a folder (new, or holding checkpoints)')
    if keras_file and (os.path.isdir(keras_file) or not os.path.isdir(os.path.dirname(os.path.abspath(keras_file)))):
        raise InputError(f'cannot write --keras {keras_file}: it is a folder, or its folder does not exist')


def cli():
    """The console command."""
    guarded(lambda: main(sys.argv[1:]))


if __name__ == '__main__':
    cli()
