"""Command-line flags shared by run_omniglot.py and run_miniimagenet.py.

Every flag of the original, with its name, default and meaning; new flags default to the
original's behaviour. `parse` also rejects impossible combinations up front. Nothing here
imports TensorFlow, so flag errors come back at once.
"""

import argparse
import math
import sys

from .errors import InputError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2) instead of a usage dump."""

    def error(self, message):
        print(f'{self.prog}: error: {message} (see --help)', file=sys.stderr)
        sys.exit(2)


def argument_parser(data_dir, omniglot=False):
    """The original's flags, plus --data-dir (default `data_dir`), --resume, the flags of
    speed, precision, distribution and results files, and, for Omniglot, --train-chars."""
    parser = Parser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--pretrained', help='evaluate a pre-trained model', action='store_true', default=False)
    parser.add_argument('--seed', help='random seed', default=0, type=int)
    parser.add_argument('--checkpoint', help='checkpoint directory', default='model_checkpoint')
    parser.add_argument('--classes', help='number of classes per inner task', default=5, type=int)
    parser.add_argument('--shots', help='number of examples per class', default=5, type=int)
    parser.add_argument('--train-shots', help='shots in a training batch', default=0, type=int)
    parser.add_argument('--inner-batch', help='inner batch size', default=5, type=int)
    parser.add_argument('--inner-iters', help='inner iterations', default=20, type=int)
    parser.add_argument('--replacement', help='sample with replacement', action='store_true')
    parser.add_argument('--learning-rate', help='Adam step size', default=1e-3, type=float)
    parser.add_argument('--meta-step', help='meta-training step size', default=0.1, type=float)
    parser.add_argument('--meta-step-final', help='meta-training step size by the end', default=0.1, type=float)
    parser.add_argument('--meta-batch', help='meta-training batch size', default=1, type=int)
    parser.add_argument('--meta-iters', help='meta-training iterations', default=400000, type=int)
    parser.add_argument('--eval-batch', help='eval inner batch size', default=5, type=int)
    parser.add_argument('--eval-iters', help='eval inner iterations', default=50, type=int)
    parser.add_argument('--eval-samples', help='evaluation samples', default=10000, type=int)
    parser.add_argument('--eval-interval', help='train steps per eval', default=10, type=int)
    parser.add_argument('--weight-decay', help='weight decay rate', default=1, type=float)
    parser.add_argument('--transductive', help='evaluate all samples at once', action='store_true')
    parser.add_argument('--foml', help='use FOML instead of Reptile', action='store_true')
    parser.add_argument('--foml-tail', help='number of shots for the final mini-batch in FOML',
                        default=None, type=int)
    parser.add_argument('--maml', action='store_true',
                        help='use second-order MAML instead of Reptile: FOML through the inner loop\'s Jacobian '
                             '(needs --sgd; see docs/maml.md)')
    parser.add_argument('--sgd', help='use vanilla SGD instead of Adam', action='store_true')
    parser.add_argument('--data-dir', help='data set folder (see fetch_data.sh)', default=data_dir)
    parser.add_argument('--resume', action='store_true',
                        help='continue training from the latest checkpoint in --checkpoint, if any')
    parser.add_argument('--parallel-tasks', action='store_true',
                        help='run the tasks of a meta-batch at once, each from the same optimizer state '
                             '(faster; not the original\'s sequential semantics, see README)')
    parser.add_argument('--precision', choices=('float32', 'bfloat16', 'float64'), default='float32',
                        help='bfloat16: the network computes in bfloat16 (weights and optimizer state stay float32); '
                             'float64: everything in float64, as the golden parity tests')
    parser.add_argument('--eval-parallel', type=int, default=None, metavar='N',
                        help='evaluation episodes fine-tuned at once (default: as many as fit a share of the '
                             'device\'s memory); results do not depend on it')
    parser.add_argument('--eval-interval-samples', type=int, default=0, metavar='N',
                        help='also average N tasks per periodic evaluation (drawn apart from the training tasks)')
    parser.add_argument('--results', metavar='FILE', help='write per-task evaluation results as JSON lines')
    parser.add_argument('--deterministic', action='store_true',
                        help='deterministic TensorFlow ops (tf.config.experimental.enable_op_determinism), '
                             'so that runs and resumed runs repeat exactly on GPUs too')
    parser.add_argument('--distribute', choices=('mirrored', 'multi-worker'), default=None,
                        help='split --parallel-tasks meta-batches and evaluation episodes across devices '
                             '(mirrored: this machine\'s GPUs) or machines (multi-worker: TF_CONFIG or SLURM)')
    parser.add_argument('--cpu-replicas', type=int, default=None, metavar='N',
                        help='with --distribute mirrored and no GPU: N logical CPU devices')
    if omniglot:
        parser.add_argument('--train-chars', help='characters in the training split', default=1200, type=int)
    return parser


def parse(parser, argv=None):
    """Parse and check flags; impossible values exit with status 2 and a one-line reason."""
    args = parser.parse_args(argv)
    positive = ['classes', 'shots', 'inner_batch', 'inner_iters', 'meta_batch', 'meta_iters', 'eval_batch',
                'eval_iters', 'eval_samples', 'eval_interval', 'train_chars', 'eval_parallel', 'cpu_replicas']
    for name in (n for n in positive if getattr(args, n, None) is not None):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1, got {getattr(args, name)}')
    for name in ('learning_rate', 'meta_step', 'meta_step_final', 'weight_decay'):
        if not math.isfinite(getattr(args, name)):
            parser.error(f'--{name.replace("_", "-")} must be a finite number, got {getattr(args, name)}')
    if not 0 <= args.seed < 2 ** 32:
        parser.error(f'--seed must be in [0, 2**32), got {args.seed}')
    if args.eval_interval_samples < 0:
        parser.error(f'--eval-interval-samples must be 0 (off) or positive, got {args.eval_interval_samples}')
    if args.resume and args.pretrained:
        parser.error('--resume continues training; --pretrained only evaluates: drop one of them')
    if args.cpu_replicas is not None and args.distribute != 'mirrored':
        parser.error('--cpu-replicas applies to --distribute mirrored: add it or drop --cpu-replicas')
    if args.train_shots < 0:
        parser.error(f'--train-shots must be 0 (use --shots) or positive, got {args.train_shots}')
    if args.precision == 'bfloat16' and args.sgd and args.foml:
        parser.error('--precision bfloat16 loses accuracy with --sgd --foml (measured on Omniglot: 0.461 '
                     'test accuracy against 0.485 ± 0.014 in float32): use float32 for this setting')
    _check_maml(parser, args)
    if args.learning_rate <= 0:
        parser.error(f'--learning-rate must be positive, got {args.learning_rate}')
    if args.foml_tail is not None:
        if not (args.foml or args.maml):
            parser.error('--foml-tail only applies with --foml or --maml: add --foml (or --maml) or drop --foml-tail')
        if not 1 <= args.foml_tail < (args.train_shots or args.shots):
            parser.error(f'--foml-tail must be at least 1 and below the training shots '
                         f'({args.train_shots or args.shots}), got {args.foml_tail}')
    if args.replacement:
        train_pool = (args.train_shots or args.shots) - (args.foml_tail or 0)
        for flag, batch, shots in (('--inner-batch', args.inner_batch, train_pool),
                                   ('--eval-batch', args.eval_batch, args.shots)):
            if batch > args.classes * shots:
                parser.error(f'{flag} {batch} cannot be drawn with --replacement from {args.classes * shots} '
                             'samples per task: lower it or raise the shots')
    return args


def _check_maml(parser, args):
    """Refuse what --maml does not do: another algorithm at once, Adam inner steps (not
    differentiated), and the precision and distribution modes it is not tested in."""
    if not args.maml:
        return
    if args.foml:
        parser.error('--maml and --foml are two algorithms: pass one of them')
    if not args.sgd:
        parser.error('--maml differentiates through plain SGD inner steps only: add --sgd')
    if args.precision == 'bfloat16':
        parser.error('--maml takes second derivatives, which are not tested in bfloat16: use --precision float32')
    if args.distribute:
        parser.error('--maml does not run with --distribute: drop it (--parallel-tasks runs the tasks side by side '
                     'on one device)')


def train_kwargs(args):
    """Keyword arguments of `train.train` from the flags."""
    return {
        'num_classes': args.classes,
        'num_shots': args.shots,
        'train_shots': args.train_shots or None,
        'inner_batch_size': args.inner_batch,
        'inner_iters': args.inner_iters,
        'replacement': args.replacement,
        'meta_step_size': args.meta_step,
        'meta_step_size_final': args.meta_step_final,
        'meta_batch_size': args.meta_batch,
        'meta_iters': args.meta_iters,
        'eval_inner_batch_size': args.eval_batch,
        'eval_inner_iters': args.eval_iters,
        'eval_interval': args.eval_interval,
        'eval_interval_samples': args.eval_interval_samples,
        'parallel_tasks': args.parallel_tasks,
    }


def evaluate_kwargs(args):
    """Keyword arguments of `eval.evaluate` from the flags."""
    return {
        'num_classes': args.classes,
        'num_shots': args.shots,
        'eval_inner_batch_size': args.eval_batch,
        'eval_inner_iters': args.eval_iters,
        'replacement': args.replacement,
        'num_samples': args.eval_samples,
        'episodes_per_call': args.eval_parallel,
    }


def check_split(dataset, split, num_classes, num_shots):
    """Refuse a split that cannot give tasks of `num_classes` classes x `num_shots` images
    (the original silently used fewer)."""
    if len(dataset) < num_classes:
        raise InputError(f'the {split} split has {len(dataset)} classes but tasks need --classes {num_classes}: '
                         'lower --classes or use more data')
    short = next((c for c in dataset if len(c) < num_shots), None)
    if short is not None:
        raise InputError(f'{short.dir_path} has {len(short)} images but tasks need {num_shots} per class: '
                         'lower --shots/--train-shots or add images')
