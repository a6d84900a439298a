"""Train and evaluate Reptile or FOML on Omniglot, with the original's flags."""

import os
import random

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from supervised_reptile.args import argument_parser, parse  # noqa: E402
from supervised_reptile.cli import guarded, run_experiment  # noqa: E402
from supervised_reptile.omniglot import augment_dataset, read_dataset, split_dataset  # noqa: E402


def main():
    """Split characters as the original (seeded), train on the rotated training characters."""
    parser = argument_parser('data/omniglot')
    parser.add_argument('--train-chars', help='characters in the training split', default=1200, type=int)
    args = parse(parser)
    if args.train_chars < 1:
        parser.error(f'--train-chars must be at least 1, got {args.train_chars}')
    random.seed(args.seed)
    train_set, test_set = split_dataset(read_dataset(args.data_dir), args.train_chars)
    train_set = list(augment_dataset(train_set))
    run_experiment(args, 'omniglot', train_set, [('Train', train_set), ('Test', test_set)])


if __name__ == '__main__':
    guarded(main)
