"""What run_omniglot.py and run_miniimagenet.py share: seeding, the train-or-restore-then-
evaluate flow of the original's scripts, and turning bad input into exit status 2."""

import random
import sys

import keras

from . import checkpoint
from .args import algorithm, check_split, evaluate_kwargs, train_kwargs
from .errors import InputError
from .eval import accuracy_line, evaluate
from .train import train


def guarded(main):
    """Run `main`; bad input ends with one line on stderr and exit status 2."""
    try:
        main()
    except InputError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(2)


def seeded_model(seed, make_model, *args):
    """Build a model with seeded initial weights, then seed Python's `random` as the
    original did, so that building the model cannot shift the original's split and tasks."""
    keras.utils.set_random_seed(seed)
    model = make_model(*args)
    random.seed(seed)
    return model


def run_experiment(args, model, train_set, eval_sets):
    """Train (or restore with --pretrained), then print one accuracy line per evaluation
    set: `eval_sets` is [(name, classes)], the last one being the test set."""
    algo = algorithm(args, model)
    if not args.pretrained:
        check_split(train_set, 'training', args.classes, args.train_shots or args.shots)
    for name, dataset in eval_sets:
        check_split(dataset, name.lower(), args.classes, args.shots + 1)
    if not args.pretrained:
        start = checkpoint.resume(args.checkpoint, algo) if args.resume else 0
        print(f'Resuming at meta-iteration {start}...' if start else 'Training...')
        train(algo, train_set, eval_sets[-1][1], args.checkpoint, start_iteration=start, **train_kwargs(args))
    else:
        print('Restoring from checkpoint...')
        checkpoint.load(args.checkpoint, algo)
    print('Evaluating...')
    for name, dataset in eval_sets:
        print(accuracy_line(name, evaluate(algo, dataset, **evaluate_kwargs(args)), args.classes))
