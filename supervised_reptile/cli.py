"""What run_omniglot.py and run_miniimagenet.py share: reading the splits and the
train-or-restore-then-evaluate flow of the original's scripts."""

import random

import keras

from . import checkpoint
from .args import check_split, evaluate_kwargs, train_kwargs
from .eval import accuracy_line, evaluate
from . import miniimagenet, omniglot
from .models import MODELS, keeps_random
from .optimizers import inner_optimizer
from .reptile import FOML, Reptile
from .train import train


def read_splits(dataset, args):
    """{split name: classes} as the original's scripts build them: Omniglot characters split
    with `random.seed(args.seed)` (training characters augmented with rotations), or
    Mini-ImageNet's train/val/test folders."""
    random.seed(args.seed)
    if dataset == 'miniimagenet':
        return dict(zip(('train', 'val', 'test'), miniimagenet.read_dataset(args.data_dir)))
    train_set, test_set = omniglot.split_dataset(omniglot.read_dataset(args.data_dir), args.train_chars)
    return {'train': list(omniglot.augment_dataset(train_set)), 'test': test_set}


def run_experiment(args, dataset, train_set, eval_sets):
    """Train (or resume, or restore with --pretrained), then print one accuracy line per
    evaluation set. `dataset` names the model ('omniglot' or 'miniimagenet'); `eval_sets`
    is [(name, classes)], the last one being the test set."""
    for name, classes in eval_sets:
        check_split(classes, name.lower(), args.classes, args.shots + 1)
    if args.pretrained:
        print('Restoring from checkpoint...')
        algo = checkpoint.load_pretrained(args.checkpoint, args.learning_rate, args.sgd, args.transductive,
                                          args.weight_decay, args.precision)
        checkpoint.check_model(algo, dataset, args.classes)
    else:
        check_split(train_set, 'training', args.classes, args.train_shots or args.shots)
        model = _seeded_model(dataset, args.classes, args.seed)
        algo = algorithm(args, model)
        start = checkpoint.resume(args.checkpoint, algo) if args.resume else 0
        print(f'Resuming at meta-iteration {start}...' if start else 'Training...')
        train(algo, train_set, eval_sets[-1][1], args.checkpoint, start_iteration=start, **train_kwargs(args))
    print('Evaluating...')
    for name, classes in eval_sets:
        print(accuracy_line(name, evaluate(algo, classes, **evaluate_kwargs(args)), args.classes))


def algorithm(args, model):
    """The Reptile or FOML instance the flags ask for."""
    optimizer = inner_optimizer(args.learning_rate, args.sgd)
    kwargs = dict(transductive=args.transductive, weight_decay_rate=args.weight_decay,
                  compute_dtype=args.precision)
    if args.foml:
        return FOML(model, optimizer, tail_shots=args.foml_tail, **kwargs)
    return Reptile(model, optimizer, **kwargs)


@keeps_random
def _seeded_model(dataset, num_classes, seed):
    """A model whose initial weights depend only on `seed` (seeding Keras seeds `random`
    too, which the tasks must not see)."""
    keras.utils.set_random_seed(seed)
    return MODELS[dataset](num_classes)

