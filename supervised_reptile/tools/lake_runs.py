"""Lake's 20 one-shot 20-way runs (Lake, Salakhutdinov & Tenenbaum, Science 2015): reading a
run's drawings and answer key, making evaluation episodes of them, and reporting error rates
beside the published ones. The command is `supervised_reptile.lake`."""

import os
from typing import NamedTuple

import numpy as np

from .. import omniglot
from ..data.reference import OMNIGLOT_RUN_WAYS, OMNIGLOT_RUNS, omniglot_answer_key
from ..errors import InputError
from ..eval import Episode, mean_and_ci
from ..running import checkpoint
from .finetune import support_task

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
            key = omniglot_answer_key(file.read(), name)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f'cannot read {path} ({exc}): re-run ./fetch_data.sh omniglot') from None
    if key is None:
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
    checkpoint.check_model(algo, 'omniglot', OMNIGLOT_RUN_WAYS, path,
                           f'Lake\'s runs are {OMNIGLOT_RUN_WAYS}-way: train one with --classes {OMNIGLOT_RUN_WAYS}')
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
