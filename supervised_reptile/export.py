"""Export a stored model for other tools.

    python -m supervised_reptile.export CHECKPOINT --tf1 OUT_DIR
    python -m supervised_reptile.export CHECKPOINT --keras OUT.keras

`--tf1` writes a TF1 checkpoint folder with the original's variable names (what
`tf.train.Saver().restore` in the original's scripts reads); `--keras` writes the Keras
model for inference. Call that model with `training=True`: like the original, it must
normalize with the statistics of the batch it is given (its moving averages are never
trained).
"""

import sys

from .args import parse, parser
from .errors import InputError, guarded
from .running.startup import quiet_tensorflow


def argument_parser():
    """The command's flags."""
    return parser(['source', 'tf1', 'keras'], __doc__.split('\n\n')[0])


def main(argv=None):
    """Load any stored model and write it in the requested formats."""
    args = parse(argument_parser(), argv)
    if not (args.tf1 or args.keras):
        raise InputError('nothing to do: give --tf1 OUT_DIR and/or --keras OUT.keras')
    quiet_tensorflow()  # TensorFlow: only once the flags are valid
    from .running import checkpoint
    algo = checkpoint.load_pretrained(args.source)
    if args.tf1:
        print(checkpoint.save(args.tf1, 0, algo))
    if args.keras:
        algo.model.save(args.keras)
        print(args.keras)


def cli():
    """The console command."""
    guarded(lambda: main(sys.argv[1:]))


if __name__ == '__main__':
    cli()
