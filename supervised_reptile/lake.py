"""Lake's one-shot benchmark: the 20 within-alphabet 20-way one-shot classification runs
of the Omniglot release (Lake, Salakhutdinov & Tenenbaum, Science 2015) as an evaluation
of a stored model.

    python -m supervised_reptile.lake --model MODEL [--runs data/omniglot_runs] [--results FILE]

A run (`runNN/` of `all_runs.zip`, which `./fetch_data.sh omniglot` extracts to
data/omniglot_runs) holds one training drawing of each of 20 characters of one evaluation
alphabet, 20 test drawings of the same characters, and the answer key `class_labels.txt`.
As in Lake's own demo, the training drawings are the classes in the sorted order of their
file names. The model (any 20-way Omniglot model `checkpoint.load_pretrained` reads) is
fine-tuned on each run's training drawings as its evaluation does (`fewshot`), then
classifies the test drawings, non-transductively and transductively.

Prints each run's error rate and the mean with its 95% CI beside the published figures,
then one JSON line: {"runs": 20, "mean_error": ..., "ci95": ..., "per_run_error": [...],
"transductive": {the same three}}. Errors are fractions; the top-level ones are
non-transductive -- each test drawing is classified on its own, as people and Bayesian
Program Learning classified them. --results writes a header line and one line per run
(split "lake", task 0-19 for run01-run20, its classes as the training drawings' paths,
correct and total non-transductive, and correct_transductive).
"""

import json
import math
import os
import sys
from typing import NamedTuple

from .startup import quiet_tensorflow

quiet_tensorflow()  # before the imports below, which start TensorFlow

import numpy as np  # noqa: E402

from . import checkpoint, distribute, omniglot  # noqa: E402
from .args import Parser  # noqa: E402
from .errors import InputError, guarded  # noqa: E402
from .eval import Episode, mean_and_ci, score  # noqa: E402
from .fewshot import fine_tune_steps, support_task  # noqa: E402
from .results import ResultsFile  # noqa: E402
from .standard import OMNIGLOT_RUN_WAYS, OMNIGLOT_RUNS  # noqa: E402

LABELS = 'class_labels.txt'
# Error rates on these runs in Lake, Salakhutdinov & Tenenbaum, Science 2015.
REFERENCES = (('people', 0.045), ('Bayesian Program Learning', 0.033))


class Run(NamedTuple):
    """One run: the paths of its training drawings in label order (sorted) and of its test
    drawings (sorted), the label of each test drawing, and the drawings themselves."""
    name: str
    training: list
    test: list
    answers: list
    support: np.ndarray
    queries: np.ndarray


def run_names(runs_dir):
    """run01 ... run20, which must all be folders of `runs_dir`."""
    if not os.path.isdir(runs_dir):
        raise InputError(f'folder of Lake\'s runs {runs_dir} not found: run ./fetch_data.sh omniglot '
                         '(it extracts all_runs.zip to data/omniglot_runs) or pass --runs')
    names = [f'run{r:02d}' for r in range(1, OMNIGLOT_RUNS + 1)]
    missing = [name for name in names if not os.path.isdir(os.path.join(runs_dir, name))]
    if missing:
        raise InputError(f'{runs_dir} lacks {", ".join(missing)} of Lake\'s {OMNIGLOT_RUNS} runs: '
                         're-run ./fetch_data.sh omniglot or pass the right --runs')
    return names


def read_run(runs_dir, name):
    """The `Run` `runs_dir/name`, drawings read: classes in the sorted order of the training
    drawings' file names, as Lake's demo sorts them; test drawings sorted too."""
    key = read_answer_key(runs_dir, name)
    training, test = sorted(key.values()), sorted(key)
    answers = [training.index(key[drawing]) for drawing in test]
    training, test = ([os.path.join(runs_dir, p) for p in paths] for paths in (training, test))
    return Run(name, training, test, answers, read_drawings(training), read_drawings(test))


def read_answer_key(runs_dir, name):
    """{test drawing: its training drawing} from `runs_dir/name/class_labels.txt`, whose lines
    are `runNN/test/itemNN.png runNN/training/classMM.png` (paths relative to `runs_dir`):
    each of the run's 20 test and 20 training drawings named once."""
    path = os.path.join(runs_dir, name, LABELS)
    try:
        with open(path) as file:
            pairs = [line.split() for line in file if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f'cannot read {path} ({exc}): re-run ./fetch_data.sh omniglot') from None
    key = dict(pair for pair in pairs if len(pair) == 2)
    well_formed = all(test.startswith(f'{name}/test/') and training.startswith(f'{name}/training/')
                      for test, training in key.items())
    if not well_formed or not len(pairs) == len(key) == len(set(key.values())) == OMNIGLOT_RUN_WAYS:
        raise InputError(f'{path} is not the answer key of a {OMNIGLOT_RUN_WAYS}-way run: it needs '
                         f'{OMNIGLOT_RUN_WAYS} lines "{name}/test/<drawing> {name}/training/<drawing>" naming '
                         'each drawing once; re-run ./fetch_data.sh omniglot')
    return key


def read_drawings(paths):
    """Drawings as the Omniglot reader converts them: float32 [n, 28, 28], 1 background.
    Lake's PNGs are 1-bit like the release's, so anything else is refused as a bad file
    rather than thresholded: its pixels would not be the benchmark's."""
    return np.stack([omniglot.as_input(omniglot.read_image(path)) for path in paths])


def episodes(runs, inner_iters, inner_batch):
    """One evaluation `Episode` per run: fine-tune on the training drawings, query the test
    drawings; the classes are the training drawings' paths, in label order."""
    return [Episode(support_task(list(run.support), inner_iters, inner_batch), run.queries, np.array(run.answers),
                    tuple(run.training)) for run in runs]


def load_model(path, transductive, args):
    """The stored model at `path` as a 20-way Omniglot `Reptile`, or one line saying why not."""
    algo = checkpoint.load_pretrained(path, args.learning_rate, True if args.sgd else None, transductive)
    classes = algo.model.output_shape[-1]
    if algo.model.name != 'omniglot' or classes != OMNIGLOT_RUN_WAYS:
        raise InputError(f'{path} holds a {classes}-way {algo.model.name} model, but Lake\'s runs are '
                         f'{OMNIGLOT_RUN_WAYS}-way Omniglot: train one with --classes {OMNIGLOT_RUN_WAYS}')
    return algo


def errors(outcomes):
    """Each task's error rate."""
    return [(o.total - o.correct) / o.total for o in outcomes]


def report(runs, plain, transductive):
    """The table of error rates (%) per run, their means with 95% CIs, and the references."""
    rows = [f'{"run":<28}{"error %":>16}{"transductive %":>18}']
    rows += [f'{run.name:<28}{100 * a:>16.1f}{100 * b:>18.1f}' for run, a, b in zip(runs, plain, transductive)]
    means = ['{:.2f} ± {:.2f}'.format(*(100 * x for x in mean_and_ci(e))) for e in (plain, transductive)]
    rows.append(f'{f"mean (95% CI, {len(runs)} runs)":<28}{means[0]:>16}{means[1]:>18}')
    rows += [f'{name:<28}{100 * error:>16.1f}' for name, error in REFERENCES]
    rows.append('(people and Bayesian Program Learning: Lake, Salakhutdinov & Tenenbaum, Science 2015)')
    return '\n'.join(rows)


def summary(plain, transductive):
    """The final JSON object: error fractions, non-transductive first-class."""
    figures = lambda e: {'mean_error': float(np.mean(e)), 'ci95': float(mean_and_ci(e)[1]), 'per_run_error': e}
    return {'runs': len(plain), **figures(plain), 'transductive': figures(transductive)}


def main(argv=None):
    """Parse flags, read the runs, fine-tune and classify each, print the table and the JSON line."""
    parser = Parser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', required=True, help='checkpoint folder or prefix, or web-demo .npz (20-way)')
    parser.add_argument('--runs', default='data/omniglot_runs',
                        help='folder of run01..run20 from all_runs.zip (default data/omniglot_runs)')
    parser.add_argument('--inner-iters', type=int, help='fine-tuning steps (default: the model\'s own)')
    parser.add_argument('--inner-batch', type=int, help='fine-tuning batch size (default: the model\'s own)')
    parser.add_argument('--learning-rate', type=float, default=1e-3, help='Adam step size (checkpoints)')
    parser.add_argument('--sgd', action='store_true',
                        help='fine-tune with plain SGD (default: the optimizer the model was trained with)')
    parser.add_argument('--results', metavar='FILE', help='write per-run results as JSON lines')
    args = parser.parse_args(argv)
    for flag in ('inner_iters', 'inner_batch', 'learning_rate'):
        value = getattr(args, flag)
        if value is not None and not (value > 0 and math.isfinite(value)):
            parser.error(f'--{flag.replace("_", "-")} must be a positive number, got {value}')
    results = ResultsFile(args.results, vars(args), args.model)
    runs = [read_run(args.runs, name) for name in run_names(args.runs)]
    algos = [load_model(args.model, transductive, args) for transductive in (False, True)]
    tasks = episodes(runs, *fine_tune_steps(algos[0], OMNIGLOT_RUN_WAYS, args.inner_iters, args.inner_batch))
    plain, transductive = (score(algo, tasks, distribute.LOCAL, len(tasks)) for algo in algos)  # 20 small episodes
    print(report(runs, errors(plain), errors(transductive)))
    results.add('lake', plain, correct_transductive=[o.correct for o in transductive])
    results.write()
    print(json.dumps(summary(errors(plain), errors(transductive))))


def cli():
    """The console command."""
    guarded(lambda: main(sys.argv[1:]))


if __name__ == '__main__':
    cli()
