"""Paired comparison of stored models on exactly the same tasks.

    python -m supervised_reptile.compare CKPT_A CKPT_B [...] [evaluation flags]

Every model (any format `checkpoint.load_pretrained` reads: ours, the original's, the web
demo's when the task shape fits) is fine-tuned on the same sampled tasks with the same
inner mini-batches, so per-task differences measure the models, not the sampling. Prints
each model's accuracy with its 95% confidence interval, then every paired difference with
its 95% confidence interval (normal approximation over per-task differences).
"""

import itertools
import sys

from .args import TRAINING, check_split, evaluate_kwargs, parse, parser
from .errors import InputError, guarded
from .running.startup import quiet_tensorflow


def argument_parser():
    """The command's flags: the models, and the training scripts' flags for evaluation."""
    return parser(['checkpoints', 'dataset', 'split', *TRAINING], __doc__.split('\n\n')[0],
                  defaults={'data_dir': 'data/omniglot'})


def main(argv=None):
    """Parse flags, evaluate every model on the same tasks, print accuracies and differences."""
    args = parse(argument_parser(), argv)
    quiet_tensorflow()  # TensorFlow: only once the flags are valid
    from .eval import accuracy_line, evaluate_paired, mean_and_ci
    from .experiment import read_splits, start
    from .running import checkpoint
    from .running.results import ResultsFile
    runner = start(args)
    if args.dataset == 'miniimagenet' and args.data_dir == 'data/omniglot':
        args.data_dir = 'data/miniimagenet'
    results = ResultsFile(args.results, vars(args), args.checkpoints)
    splits = read_splits(args.dataset, args)
    if args.split not in splits:
        raise InputError(f'--split must be one of {", ".join(splits)} for {args.dataset}')
    check_split(splits[args.split], args.split, args.classes, args.shots + 1)
    algos = []
    for path in args.checkpoints:
        algo = checkpoint.load_pretrained(path, args.learning_rate, args.sgd, args.transductive, args.weight_decay,
                                          args.precision)
        checkpoint.check_model(algo, args.dataset, args.classes)
        algos.append(algo)
    kwargs = evaluate_kwargs(args)
    outcomes = evaluate_paired(algos, splits[args.split], kwargs.pop('num_classes'), kwargs.pop('num_shots'),
                               runner=runner, **kwargs)
    if not runner.is_chief:
        return
    for path, model_outcomes in zip(args.checkpoints, outcomes):
        print(accuracy_line(path, model_outcomes))
        results.add(args.split, model_outcomes, model=path)
    for (i, a), (j, b) in itertools.combinations(enumerate(outcomes), 2):
        differences = [y.correct / y.total - x.correct / x.total for x, y in zip(a, b)]
        mean, half_width = mean_and_ci(differences)
        print(f'{args.checkpoints[j]} - {args.checkpoints[i]}: {mean:+.4f} ± {half_width:.4f} '
              f'(95% CI of the paired difference, {len(a)} tasks)')
    results.write()


def cli():
    """The console command."""
    guarded(lambda: main(sys.argv[1:]))


if __name__ == '__main__':
    cli()
