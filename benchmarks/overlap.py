"""Meta-iteration time with and without preparing the next meta-batch ahead.

    python benchmarks/overlap.py [--iterations N] [--repeats R]

Trains Mini-ImageNet 5-way (15 training shots, 8 inner iterations, meta-batch 5,
--parallel-tasks) on a generated tree of 84x84 JPEGs, one process, with `train`'s
`overlap` on (a background thread samples and decodes the next meta-batch while the
current one runs) and off. Each measurement starts from fresh readers (cold image caches,
as at the start of a run, where decoding costs most) and from traced functions. Prints
one JSON line per measurement (`overlap`, `seconds_per_iteration` = median over
repeats) and a table.
"""

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

from memory import make_tree  # benchmarks/ is the script's folder

from supervised_reptile import miniimagenet
from supervised_reptile.experiment import algorithm
from supervised_reptile.args import argument_parser
from supervised_reptile.models import MODELS
from supervised_reptile.train import train

FLAGS = ['--classes', '5', '--shots', '5', '--train-shots', '15', '--inner-batch', '10', '--inner-iters', '8',
         '--meta-batch', '5', '--parallel-tasks']


def timed(data_dir, algo, args, iterations, overlap, save_dir):
    """Seconds per meta-iteration of `iterations` meta-iterations (no periodic evaluation
    but the first one, which is timed apart)."""
    train_set = miniimagenet.read_dataset(data_dir)[0]
    kwargs = dict(num_classes=5, num_shots=5, train_shots=15, inner_batch_size=10, inner_iters=8,
                  meta_batch_size=5, eval_inner_iters=1, eval_interval=10 ** 9, parallel_tasks=True)
    train(algo, train_set, train_set, save_dir, meta_iters=1, overlap=overlap, **kwargs)
    start = time.perf_counter()
    train(algo, train_set, train_set, save_dir, meta_iters=iterations + 1, start_iteration=1,
          checkpoint_interval=10 ** 9, overlap=overlap, **kwargs)
    return (time.perf_counter() - start) / iterations


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iterations', type=int, default=20)
    parser.add_argument('--repeats', type=int, default=3)
    options = parser.parse_args()
    args = argument_parser('data/miniimagenet').parse_args(FLAGS)
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        make_tree(root)
        algo = algorithm(args, MODELS['miniimagenet'](5))
        results = []
        for overlap in (False, True):
            times = [timed(root / 'data' / 'miniimagenet', algo, args, options.iterations, overlap, root / 'ck')
                     for _ in range(options.repeats)]
            result = {'overlap': overlap, 'iterations': options.iterations, 'repeats': options.repeats,
                      'seconds_per_iteration': statistics.median(times), 'all': times}
            print(json.dumps(result), flush=True)
            results.append(result)
    print(f"\n{'overlap':>8} {'s/meta-iteration':>17}", file=sys.stderr)
    for r in results:
        print(f"{str(r['overlap']):>8} {r['seconds_per_iteration']:17.3f}", file=sys.stderr)


if __name__ == '__main__':
    main()
