"""Train and evaluate Reptile or FOML on Omniglot, with the original's flags."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from supervised_reptile.args import argument_parser, parse  # noqa: E402
from supervised_reptile.errors import guarded  # noqa: E402


def main():
    """Split characters as the original (seeded), train on the rotated training characters."""
    args = parse(argument_parser('data/omniglot', omniglot=True))
    from supervised_reptile.cli import read_splits, run_experiment  # TensorFlow: only once the flags are valid
    splits = read_splits('omniglot', args)
    run_experiment(args, 'omniglot', splits['train'], [('Train', splits['train']), ('Test', splits['test'])])


if __name__ == '__main__':
    guarded(main)
