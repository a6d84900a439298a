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
import sys

from .args import parse, parser
from .data.reference import OMNIGLOT_RUN_WAYS
from .errors import guarded
from .running.startup import quiet_tensorflow


def argument_parser():
    """The command's flags."""
    return parser(['model', 'runs', 'fine_tune_iters', 'fine_tune_batch', 'learning_rate', 'sgd', 'results'],
                  __doc__.split('\n\n')[0], required=['model'])


def main(argv=None):
    """Parse flags, read the runs, fine-tune and classify each, print the table and the JSON line."""
    args = parse(argument_parser(), argv)
    quiet_tensorflow()  # TensorFlow: only once the flags are valid
    from .eval import score
    from .running import distribute
    from .running.results import ResultsFile
    from .tools.finetune import fine_tune_steps
    from .tools.lake_runs import episodes, errors, load_model, read_run, report, run_names, summary
    results = ResultsFile(args.results, vars(args), args.model)
    runs = [read_run(args.runs, name) for name in run_names(args.runs)]
    algos = [load_model(args.model, transductive, args) for transductive in (False, True)]
    tasks = episodes(runs, *fine_tune_steps(algos[0], OMNIGLOT_RUN_WAYS, args.fine_tune_iters, args.fine_tune_batch))
    plain, transductive = (score(algo, tasks, distribute.LOCAL, len(tasks)) for algo in algos)  # 20 small episodes
    print(report(runs, errors(plain), errors(transductive)))
    results.add('lake', plain, correct_transductive=[o.correct for o in transductive])
    results.write()
    print(json.dumps(summary(errors(plain), errors(transductive)), allow_nan=False))


def cli():
    """The console command."""
    guarded(lambda: main(sys.argv[1:]))


if __name__ == '__main__':
    cli()
