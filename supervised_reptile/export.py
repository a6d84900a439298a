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

import pathlib
import sys

from .startup import quiet_tensorflow

quiet_tensorflow()  # before the imports below, which start TensorFlow

from . import checkpoint  # noqa: E402
from .tools import webexport  # noqa: E402
from .args import Parser  # noqa: E402
from .errors import guarded  # noqa: E402
from .errors import InputError  # noqa: E402


def main(argv=None):
    """Load any stored model and write it in the requested formats."""
    parser = Parser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='checkpoint folder or prefix, or web-demo .npz')
    parser.add_argument('--tf1', metavar='OUT_DIR', help='write a TF1 checkpoint folder (original names)')
    parser.add_argument('--keras', metavar='OUT.keras', help='write a Keras model file')
    parser.add_argument('--web', metavar='OUT_DIR', help='write the demo as a static web page (an Omniglot model)')
    args = parser.parse_args(argv)
    if not (args.tf1 or args.keras or args.web):
        parser.error('nothing to do: give --tf1 OUT_DIR, --keras OUT.keras and/or --web OUT_DIR')
    if args.keras and not args.keras.endswith('.keras'):
        raise InputError(f'--keras {args.keras}: the file name must end in .keras')
    algo = checkpoint.load_pretrained(args.checkpoint)
    if args.web:
        webexport.check_model(algo, args.checkpoint)  # before writing anything
    if args.tf1:
        print(checkpoint.save(args.tf1, 0, algo))
    if args.keras:
        algo.model.save(args.keras)
        print(args.keras)
    if args.web:
        webexport.write(algo, args.checkpoint, pathlib.Path(args.web))
        print(args.web)


def cli():
    """The console command."""
    guarded(lambda: main(sys.argv[1:]))


if __name__ == '__main__':
    cli()
