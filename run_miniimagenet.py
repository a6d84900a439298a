"""Train and evaluate Reptile or FOML on Mini-ImageNet, with the original's flags."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from supervised_reptile.args import argument_parser, parse  # noqa: E402
from supervised_reptile.errors import guarded  # noqa: E402


def main():
    """Train on the train split (testing on the test split), then report all three."""
    args = parse(argument_parser('data/miniimagenet'))
    from supervised_reptile.cli import read_splits, run_experiment  # TensorFlow: only once the flags are valid
    splits = read_splits('miniimagenet', args)
    run_experiment(args, 'miniimagenet', splits['train'],
                   [('Train', splits['train']), ('Validation', splits['val']), ('Test', splits['test'])])


if __name__ == '__main__':
    guarded(main)
