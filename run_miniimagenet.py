"""Train and evaluate Reptile or FOML on Mini-ImageNet, with the original's flags."""

import os
import random

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from supervised_reptile.args import argument_parser, parse  # noqa: E402
from supervised_reptile.cli import guarded, run_experiment  # noqa: E402
from supervised_reptile.miniimagenet import read_dataset  # noqa: E402


def main():
    """Train on the train split (testing on the test split), then report all three."""
    args = parse(argument_parser('data/miniimagenet'))
    random.seed(args.seed)
    train_set, val_set, test_set = read_dataset(args.data_dir)
    run_experiment(args, 'miniimagenet', train_set, [('Train', train_set), ('Validation', val_set), ('Test', test_set)])


if __name__ == '__main__':
    guarded(main)
