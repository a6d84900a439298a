"""Train and evaluate Reptile or FOML on Mini-ImageNet, with the original's flags."""

from supervised_reptile.args import argument_parser, parse
from supervised_reptile.errors import guarded
from supervised_reptile.running.startup import quiet_tensorflow


def main():
    """Train on the train split (testing on the test split), then report all three."""
    args = parse(argument_parser('data/miniimagenet'))
    quiet_tensorflow()  # TensorFlow: only once the flags are valid
    from supervised_reptile.experiment import read_splits, run_experiment
    splits = read_splits('miniimagenet', args)
    run_experiment(args, 'miniimagenet', splits, [('Train', 'train'), ('Validation', 'val'), ('Test', 'test')])


if __name__ == '__main__':
    guarded(main)
