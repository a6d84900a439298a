"""Train and evaluate Reptile or FOML on Omniglot, with the original's flags."""

from supervised_reptile.args import argument_parser, parse
from supervised_reptile.errors import guarded
from supervised_reptile.running.startup import quiet_tensorflow


def main():
    """Split characters as the original (seeded), train on the rotated training characters."""
    args = parse(argument_parser('data/omniglot', omniglot=True))
    quiet_tensorflow()  # TensorFlow: only once the flags are valid
    from supervised_reptile.experiment import read_splits, run_experiment
    splits = read_splits('omniglot', args)
    run_experiment(args, 'omniglot', splits, [('Train', 'train'), ('Test', 'test')])


if __name__ == '__main__':
    guarded(main)
