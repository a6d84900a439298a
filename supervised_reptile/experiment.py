"""What run_omniglot.py and run_miniimagenet.py share: reading the splits and the
train-or-restore-then-evaluate flow of the original's scripts."""

import contextlib
import random

import keras
import tensorflow as tf

from .running import checkpoint, distribute, fingerprint, identity
from . import miniimagenet, omniglot
from .args import CHANGEABLE, check_split, evaluate_kwargs, identity_flags, train_kwargs
from .errors import InputError
from .eval import accuracy_line, evaluate
from .models import MODELS, dtypes, keeps_random
from .optimizers import inner_optimizer
from .maml import MAML
from .reptile import FOML, Reptile
from .running.lock import FolderLock
from .running.results import ResultsFile
from .tasks import RandomStream
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


def start(args):
    """Where the work runs (--distribute) and whether ops are deterministic: set first,
    before anything else touches TensorFlow's devices. Returns the runner."""
    runner = distribute.make_runner(args.distribute, args.cpu_replicas, args.collective_timeout, args.worker_port)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    return runner


def run_experiment(args, dataset, splits, eval_sets):
    """Train (or resume, or restore with --pretrained), then print one accuracy line per
    evaluation set. `dataset` names the model ('omniglot' or 'miniimagenet'); `eval_sets`
    is [(name, split)], the last one being the test set."""
    runner = start(args)
    results = ResultsFile(args.results, vars(args), args.checkpoint)
    for name, split in eval_sets:
        check_split(splits[split], name.lower(), args.classes, args.shots + 1)
    if args.pretrained:
        print('Restoring from checkpoint...')
        algo = checkpoint.load_pretrained(args.checkpoint, args.learning_rate, args.sgd, args.transductive,
                                          args.weight_decay, args.precision)
        checkpoint.check_model(algo, dataset, args.classes)
    else:
        algo = _train(args, dataset, splits, runner)
    if runner.is_chief:
        print('Evaluating...')
    for name, split in eval_sets:
        outcomes = evaluate(algo, splits[split], runner=runner, **evaluate_kwargs(args))
        results.add(split, outcomes)
        if runner.is_chief:
            print(accuracy_line(name, outcomes))
    if runner.is_chief:
        results.write()


def _train(args, dataset, splits, runner):
    """Meta-train a new model, or resume the run in --checkpoint; returns the algorithm."""
    check_split(splits['train'], 'training', args.classes, args.train_shots or args.shots)
    if args.distribute and not args.parallel_tasks:
        raise InputError(f'--distribute splits meta-batches across replicas ({runner.replicas} here), which the '
                         'exact sequential mode cannot do: add --parallel-tasks')
    if args.meta_batch < runner.replicas:
        raise InputError(f'--meta-batch {args.meta_batch} gives some of the {runner.replicas} replicas no task: '
                         f'raise it to at least {runner.replicas}')
    with FolderLock(args.checkpoint) if runner.is_chief else contextlib.nullcontext():
        return _train_in_folder(args, dataset, splits, runner)


def _train_in_folder(args, dataset, splits, runner):
    """Check the run's identity against --checkpoint's, then train (the chief holds the folder's lock)."""
    digest = identity.data_digest(splits, args.data_dir)
    run_identity = identity.identity(identity_flags(args), args.data_dir, digest)
    identity.check(args.checkpoint, run_identity, args.resume, CHANGEABLE)
    runner.barrier()  # every process has checked the folder before the chief writes to it
    if runner.is_chief:
        identity.record(args.checkpoint, run_identity)
    algo = algorithm(args, _seeded_model(dataset, args.classes, args.seed, args.precision))
    eval_stream = RandomStream(f'eval-interval-samples/{args.seed}') if args.eval_interval_samples else None
    start = checkpoint.resume(args.checkpoint, algo, eval_stream) if args.resume else 0
    fingerprint.check(fingerprint.fingerprint(args, digest, start, eval_stream), runner)
    if runner.is_chief:
        print(f'Resuming at meta-iteration {start}...' if start else 'Training...')
    train(algo, splits['train'], splits['test'], args.checkpoint, start_iteration=start, eval_stream=eval_stream,
          runner=runner, **train_kwargs(args))
    return algo


def algorithm(args, model):
    """The Reptile, FOML or MAML instance the flags ask for."""
    optimizer = inner_optimizer(args.learning_rate, args.sgd)
    kwargs = dict(transductive=args.transductive, weight_decay_rate=args.weight_decay,
                  compute_dtype=dtypes(args.precision)[1])
    if args.maml:
        return MAML(model, optimizer, tail_shots=args.foml_tail, **kwargs)
    if args.foml:
        return FOML(model, optimizer, tail_shots=args.foml_tail, **kwargs)
    return Reptile(model, optimizer, **kwargs)


@keeps_random
def _seeded_model(dataset, num_classes, seed, precision):
    """A model whose initial weights depend only on `seed` (seeding Keras seeds `random`
    too, which the tasks must not see); float64 with --precision float64."""
    keras.utils.set_random_seed(seed)
    return MODELS[dataset](num_classes, dtype=dtypes(precision)[0])
