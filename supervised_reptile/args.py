"""Command-line flags: one declaration per flag, from which every tool's parser, the checks,
the training and evaluation inputs, the run identity and the docs' flag table all come.

`FLAGS` declares each flag once: its type, default, help, allowed range, whether it is part
of a training run's identity (`running.identity`), and which parameter of `train.train` or
`eval.evaluate` it feeds. The original's flags keep their names, defaults and help texts;
new flags default to the original's behaviour. Every tool builds its parser with `parser`
from the names it takes, and `parse` checks ranges and impossible combinations for all of
them alike, so one flag gets one message everywhere. Nothing here imports TensorFlow, so
flag errors come back at once.
"""

import argparse
import math
import sys
from typing import NamedTuple

from .errors import InputError, one_line


class Flag(NamedTuple):
    """One flag. `low`/`high` bound numbers (inclusive; `above` excludes `low`); `identity`
    says whether a training run's results depend on it (None: not a training flag);
    `train`/`evaluate` name the keyword of `train.train`/`eval.evaluate` it feeds."""
    name: str
    type: object = None          # int, float, str, or bool for an on/off switch
    default: object = None
    help: str = ''
    low: float = None
    high: float = None
    above: bool = False
    choices: tuple = None
    identity: bool = None
    changeable: bool = False     # an identity flag that --resume may change (recorded in run.json)
    train: str = None
    evaluate: str = None
    nargs: str = None
    metavar: str = None
    key: str = None              # the attribute, when not the name's (two tools' flags share a name)

    @property
    def dest(self):
        return self.key or self.name.lstrip('-').replace('-', '_')


def _declare(*flags):
    return {flag.dest: flag for flag in flags}


FLAGS = _declare(
    # The original's flags (supervised_reptile/args.py of the original), in its order.
    Flag('--pretrained', bool, help='evaluate a pre-trained model', identity=False),
    Flag('--seed', int, 0, 'random seed', low=0, high=2 ** 32 - 1, identity=True),
    Flag('--checkpoint', str, 'model_checkpoint', 'checkpoint directory', identity=False),
    Flag('--classes', int, 5, 'number of classes per inner task', low=2, identity=True,
         train='num_classes', evaluate='num_classes'),
    Flag('--shots', int, 5, 'number of examples per class', low=1, identity=True,
         train='num_shots', evaluate='num_shots'),
    Flag('--train-shots', int, 0, 'shots in a training batch', low=0, identity=True,
         train='train_shots'),
    Flag('--inner-batch', int, 5, 'inner batch size', low=1, identity=True, train='inner_batch_size'),
    Flag('--inner-iters', int, 20, 'inner iterations', low=1, identity=True, train='inner_iters'),
    Flag('--replacement', bool, help='sample with replacement', identity=True,
         train='replacement', evaluate='replacement'),
    Flag('--learning-rate', float, 1e-3, 'Adam step size', low=0, above=True, identity=True, changeable=True),
    Flag('--meta-step', float, 0.1, 'meta-training step size', identity=True, train='meta_step_size'),
    Flag('--meta-step-final', float, 0.1, 'meta-training step size by the end', identity=True,
         train='meta_step_size_final'),
    Flag('--meta-batch', int, 1, 'meta-training batch size', low=1, identity=True, train='meta_batch_size'),
    Flag('--meta-iters', int, 400000, 'meta-training iterations', low=1, identity=True, train='meta_iters'),
    Flag('--eval-batch', int, 5, 'eval inner batch size', low=1, identity=True,
         train='eval_inner_batch_size', evaluate='eval_inner_batch_size'),
    Flag('--eval-iters', int, 50, 'eval inner iterations', low=1, identity=True,
         train='eval_inner_iters', evaluate='eval_inner_iters'),
    Flag('--eval-samples', int, 10000, 'evaluation samples', low=1, identity=False, evaluate='num_samples'),
    Flag('--eval-interval', int, 10, 'train steps per eval', low=1, identity=True, train='eval_interval'),
    Flag('--weight-decay', float, 1, 'weight decay rate', identity=True),
    Flag('--transductive', bool, help='evaluate all samples at once', identity=True),
    Flag('--foml', bool, help='use FOML instead of Reptile', identity=True),
    Flag('--foml-tail', int, None, 'number of shots for the final mini-batch in FOML', low=1, identity=True),
    Flag('--maml', bool, help='use second-order MAML instead of Reptile: FOML through the inner loop\'s Jacobian '
         '(needs --sgd; see docs/maml.md)', identity=True),
    Flag('--sgd', bool, help='use vanilla SGD instead of Adam', identity=True),
    # Ours.
    Flag('--train-chars', int, 1200, 'characters in the training split (Omniglot)', low=1, identity=True),
    Flag('--data-dir', str, None, 'data set folder (see fetch_data.sh)', identity=False),
    Flag('--resume', bool, help='continue training from the latest checkpoint in --checkpoint, if any',
         identity=False),
    Flag('--parallel-tasks', bool, help='run the tasks of a meta-batch at once, each from the same optimizer '
         'state (faster; not the original\'s sequential semantics)', identity=True, train='parallel_tasks'),
    Flag('--precision', str, 'float32', 'bfloat16: the network computes in bfloat16 (weights and optimizer state '
         'stay float32); float64: everything in float64, as the golden parity tests',
         choices=('float32', 'bfloat16', 'float64'), identity=True),
    Flag('--eval-parallel', int, None, 'evaluation episodes fine-tuned at once (default: as many as fit a share '
         'of the device\'s memory); results do not depend on it', low=1, identity=False,
         evaluate='episodes_per_call', metavar='N'),
    Flag('--eval-interval-samples', int, 0, 'also average N tasks per periodic evaluation (drawn apart from the '
         'training tasks; 0: off)', low=0, identity=True, train='eval_interval_samples', metavar='N'),
    Flag('--results', str, None, 'write per-task evaluation results as JSON lines', identity=False,
         metavar='FILE'),
    Flag('--deterministic', bool, help='deterministic TensorFlow ops (tf.config.experimental.enable_op_determinism), '
         'so that runs and resumed runs repeat exactly on GPUs too', identity=False),
    Flag('--distribute', str, None, 'split --parallel-tasks meta-batches and evaluation episodes across devices '
         '(mirrored: this machine\'s GPUs) or machines (multi-worker: TF_CONFIG or SLURM)',
         choices=('mirrored', 'multi-worker'), identity=False),
    Flag('--cpu-replicas', int, None, 'with --distribute mirrored and no GPU: N logical CPU devices', low=1,
         identity=False, metavar='N'),
    Flag('--checkpoint-interval', int, 100, 'write a checkpoint every N meta-iterations (and after the last one)',
         low=1, identity=False, train='checkpoint_interval', metavar='N'),
    Flag('--collective-timeout', float, 300, 'with --distribute multi-worker: end every worker (exit status 75) when '
         'one has not answered for SECONDS', low=0, above=True, identity=False, metavar='SECONDS'),
    Flag('--worker-port', int, None, 'with --distribute multi-worker under SLURM: the first port of the workers on a '
         'node (default: the first port srun reserved with --resv-ports, else 8888)', low=1, high=65535,
         identity=False, metavar='PORT'),
    # The tools' own (fewshot, lake, compare, export, demo).
    Flag('--model', str, None, 'checkpoint folder or prefix, or web-demo .npz'),
    Flag('source', str, None, 'the stored model: checkpoint folder or prefix, or web-demo .npz', metavar='MODEL'),
    Flag('checkpoints', str, None, 'checkpoint folders/prefixes or web-demo .npz files', nargs='+'),
    Flag('--images', str, None, '.npy stack: support images in class order, then the query'),
    Flag('--support', str, None, 'support images (PNG/JPEG), one per class in order', nargs='+'),
    Flag('--drawings', str, None, 'JSON drawings (as default_drawing.json): support in class order, then the query'),
    Flag('--query', str, None, 'query image (with --support)'),
    Flag('--save-tensors', str, None, 'also save the images classified (support, then query) as .npy',
         metavar='OUT.npy'),
    Flag('--inner-iters', int, None, 'fine-tuning steps (default: the model\'s own)', low=1, key='fine_tune_iters'),
    Flag('--inner-batch', int, None, 'fine-tuning batch size (default: the model\'s own)', low=1,
         key='fine_tune_batch'),
    Flag('--runs', str, 'data/omniglot_runs', 'folder of run01..run20 from all_runs.zip'),
    Flag('--dataset', str, 'omniglot', 'data set of the models', choices=('omniglot', 'miniimagenet')),
    Flag('--split', str, 'test', 'split to evaluate on: train, val (Mini-ImageNet) or test'),
    Flag('--tf1', str, None, 'write a TF1 checkpoint folder (original names)', metavar='OUT_DIR'),
    Flag('--keras', str, None, 'write a Keras model file', metavar='OUT.keras'),
    Flag('--web', str, None, 'write the demo as a static web page (an Omniglot model)', metavar='OUT_DIR'),
    Flag('--ways', int, 3, 'classes of the demo', low=2, high=5),
    Flag('--port', int, 8000, 'port (0: any free one)', low=0, high=65535),
    Flag('--host', str, '127.0.0.1', 'address to bind (127.0.0.1: this machine only)'),
)
TRAINING = [name for name, flag in FLAGS.items() if flag.identity is not None]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2) instead of a usage dump."""

    def error(self, message):
        print(one_line(f'{self.prog}: error: {message} (see --help)'), file=sys.stderr)
        sys.exit(2)


def parser(names, description=None, defaults=None, required=(), exclusive=()):
    """A parser for the declared flags `names`; `defaults` overrides a default (e.g. a data
    folder), `required` names flags that must be given, and `exclusive` names flags of which
    exactly one must be given."""
    result = Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    group = result.add_mutually_exclusive_group(required=True) if exclusive else None
    for name in names:
        _add(group if name in exclusive else result, FLAGS[name], (defaults or {}).get(name, FLAGS[name].default),
             name in required)
    return result


def _add(target, flag, default, required):
    if not flag.name.startswith('-'):  # positional
        target.add_argument(flag.name, type=flag.type, help=flag.help, nargs=flag.nargs, metavar=flag.metavar)
        return
    if flag.type is bool:
        target.add_argument(flag.name, dest=flag.dest, action='store_true', help=flag.help)
        return
    extra = {'required': True} if required else {}
    target.add_argument(flag.name, dest=flag.dest, type=flag.type, default=default, help=flag.help,
                        choices=flag.choices, nargs=flag.nargs, metavar=flag.metavar, **extra)


def argument_parser(data_dir, omniglot=False):
    """The training scripts' parser: every training flag; --train-chars only for Omniglot."""
    names = [name for name in TRAINING if omniglot or name != 'train_chars']
    return parser(names, defaults={'data_dir': data_dir})


def parse(parser, argv=None):
    """Parse and check flags; impossible values exit with status 2 and a one-line reason."""
    args = parser.parse_args(argv)
    for name, value in vars(args).items():
        problem = _out_of_range(FLAGS[name], value) if name in FLAGS else None
        if problem:
            parser.error(f'{FLAGS[name].name} {problem}, got {value!r}')
    for rule in RULES:
        problem = rule(args)
        if problem:
            parser.error(problem)
    return args


def _out_of_range(flag, value):
    """Why `value` is outside the flag's declared range, or None."""
    if flag.type is str and value == '':
        return 'must not be empty'
    if value is None or flag.type not in (int, float):
        return None
    if flag.type is float and not math.isfinite(value):
        return 'must be a finite number'
    if flag.low is not None and (value <= flag.low if flag.above else value < flag.low):
        bound = f'above {flag.low}' if flag.above else f'at least {flag.low}'
        return f'must be {bound}' + (f' and at most {flag.high}' if flag.high is not None else '')
    if flag.high is not None and value > flag.high:
        return f'must be at most {flag.high}'
    return None


def _get(args, *names):
    """The values of `names` in `args` (None for flags a tool does not take)."""
    return [getattr(args, name, None) for name in names]


def _resume_or_pretrained(args):
    if all(_get(args, 'resume', 'pretrained')):
        return '--resume continues training; --pretrained only evaluates: drop one of them'


def _cpu_replicas(args):
    replicas, strategy = _get(args, 'cpu_replicas', 'distribute')
    if replicas is not None and strategy != 'mirrored':
        return '--cpu-replicas applies to --distribute mirrored: add it or drop --cpu-replicas'


def _bfloat16_sgd_foml(args):
    if _get(args, 'precision')[0] == 'bfloat16' and all(_get(args, 'sgd', 'foml')):
        return ('--precision bfloat16 loses accuracy with --sgd --foml (measured on Omniglot: 0.461 test accuracy '
                'against 0.485 ± 0.014 in float32): use float32 for this setting')


def _foml_tail(args):
    tail, foml, shots, train_shots = _get(args, 'foml_tail', 'foml', 'shots', 'train_shots')
    if tail is None:
        return None
    if not (foml or _get(args, 'maml')[0]):
        return '--foml-tail only applies with --foml or --maml: add --foml (or --maml) or drop --foml-tail'
    if tail >= (train_shots or shots):
        return f'--foml-tail must be below the training shots ({train_shots or shots}), got {tail}'


def _maml(args):
    """What --maml does not do: another algorithm at once, Adam inner steps (not
    differentiated), and the precision and distribution modes it is not tested in."""
    maml, foml, sgd, precision, strategy = _get(args, 'maml', 'foml', 'sgd', 'precision', 'distribute')
    if not maml:
        return None
    if foml:
        return '--maml and --foml are two algorithms: pass one of them'
    if not sgd:
        return '--maml differentiates through plain SGD inner steps only: add --sgd'
    if precision == 'bfloat16':
        return '--maml takes second derivatives, which are not tested in bfloat16: use --precision float32'
    if strategy:
        return '--maml does not run with --distribute: drop it (--parallel-tasks runs the tasks side by side on one device)'


def _replacement_batches(args):
    replacement, classes, shots, train_shots, tail = _get(args, 'replacement', 'classes', 'shots', 'train_shots',
                                                          'foml_tail')
    if not replacement:
        return None
    for flag, batch, pool in (('--inner-batch', args.inner_batch, (train_shots or shots) - (tail or 0)),
                              ('--eval-batch', args.eval_batch, shots)):
        if batch > classes * pool:
            return (f'{flag} {batch} cannot be drawn with --replacement from {classes * pool} samples per task: '
                    'lower it or raise the shots')


def _support_needs_query(args):
    if _get(args, 'support')[0] and not _get(args, 'query')[0]:
        return '--support needs --query'


def _keras_suffix(args):
    path = _get(args, 'keras')[0]
    if path and not path.endswith('.keras'):
        return f'--keras {path}: the file name must end in .keras'


RULES = (_resume_or_pretrained, _cpu_replicas, _bfloat16_sgd_foml, _foml_tail, _maml, _replacement_batches,
         _support_needs_query, _keras_suffix)


def train_kwargs(args):
    """Keyword arguments of `train.train` from the flags that declare one."""
    return {flag.train: getattr(args, name) for name, flag in FLAGS.items() if flag.train and hasattr(args, name)}


def evaluate_kwargs(args):
    """Keyword arguments of `eval.evaluate` from the flags that declare one."""
    return {flag.evaluate: getattr(args, name) for name, flag in FLAGS.items()
            if flag.evaluate and hasattr(args, name)}


def identity_flags(args):
    """{flag: value} of the flags a training run's results depend on (see `running.identity`)."""
    return {name: getattr(args, name) for name, flag in FLAGS.items() if flag.identity and hasattr(args, name)}


CHANGEABLE = {name for name, flag in FLAGS.items() if flag.changeable}


def markdown_table(names=TRAINING):
    """The docs' table of the flags `names`: flag, default, range or choices, run identity, meaning."""
    rows = ['| flag | default | allowed | identity | meaning |', '| --- | --- | --- | --- | --- |']
    for name in names:
        flag = FLAGS[name]
        allowed = ', '.join(flag.choices) if flag.choices else _range_text(flag)
        default = 'off' if flag.type is bool else ('' if flag.default is None else f'`{flag.default}`')
        rows.append(f'| `{flag.name}` | {default} | {allowed} | {"yes" if flag.identity else "no"} | {flag.help} |')
    return '\n'.join(rows) + '\n'


def _range_text(flag):
    if flag.low is None:
        return 'finite' if flag.type is float else ''
    low = f'> {flag.low}' if flag.above else f'≥ {flag.low}'
    return low + (f', ≤ {flag.high}' if flag.high is not None else '')


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


if __name__ == '__main__':
    print(markdown_table(), end='')
