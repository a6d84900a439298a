"""Time and peak memory per meta-iteration of Reptile, FOML and MAML, by inner steps.

    python benchmarks/maml.py [--iterations 5] [--steps 1 5 10 20]

The paper's claim is that Reptile (and FOML) cost a fraction of MAML's time and memory,
because MAML differentiates through the inner loop. Each configuration runs in a fresh
Python process (so that peak memory is its own): Omniglot 5-way (5 training shots, inner
batches of 5, meta-batch 5) at each number of inner steps, and Mini-ImageNet 5-way
(15 training shots, inner batches of 10, meta-batch 5) at 5 steps, on seeded random
images, all with the `--sgd` inner optimizer, tasks one after another (the default). A
configuration builds the network, runs one meta-iteration (tracing), then times
`--iterations` more and reports their median time, its peak resident memory
(getrusage) and the resident memory before the first meta-iteration (the baseline: the
interpreter, TensorFlow and the model), so `peak - baseline` is what training adds.
Prints one JSON line per configuration, then a table.
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
ALGORITHMS = ('reptile', 'foml', 'maml')
# model: (image shape, training shots, inner batch); both 5-way with meta-batch 5.
SETTINGS = {'omniglot': ((28, 28), 5, 5), 'miniimagenet': ((84, 84, 3), 15, 10)}


def measure(model_name, algorithm, steps, iterations):
    """Run in the child process: {seconds per meta-iteration, memory} of one configuration."""
    import numpy as np
    from supervised_reptile.maml import MAML
    from supervised_reptile.models import MODELS
    from supervised_reptile.optimizers import SGD
    from supervised_reptile.reptile import FOML, Reptile
    from supervised_reptile.tasks import make_task

    shape, shots, batch = SETTINGS[model_name]
    algo = {'reptile': Reptile, 'foml': FOML, 'maml': MAML}[algorithm](MODELS[model_name](5), SGD(0.01))
    rng = np.random.default_rng(0)

    def meta_batch():
        return [make_task([(rng.random(shape, dtype=np.float32), label) for label in range(5) for _ in range(shots)],
                          batch, steps, replacement=False) for _ in range(5)]

    baseline = _rss_mb()
    algo.train_step(meta_batch(), 0.5)
    times = []
    for _ in range(iterations):
        tasks = meta_batch()
        start = time.perf_counter()
        algo.train_step(tasks, 0.5)
        times.append(time.perf_counter() - start)
    return {'model': model_name, 'algorithm': algorithm, 'inner_steps': steps,
            'seconds_per_meta_iteration': statistics.median(times), 'baseline_rss_mb': baseline,
            'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _rss_mb():
    """Current resident memory (Linux /proc), in MB."""
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2 ** 20


def run_child(model_name, algorithm, steps, iterations):
    """`measure` in a fresh interpreter; its JSON result."""
    command = [sys.executable, __file__, '--child', model_name, algorithm, str(steps), '--iterations', str(iterations)]
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='3')
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f'{model_name} {algorithm} {steps} failed: {result.stderr[-2000:]}')
    return json.loads(result.stdout.splitlines()[-1])


def print_table(results):
    print(f'\n{"model":<13} {"algorithm":<9} {"steps":>5} {"s/iter":>8} {"peak MB":>8} {"added MB":>9}')
    for r in results:
        print(f'{r["model"]:<13} {r["algorithm"]:<9} {r["inner_steps"]:>5} {r["seconds_per_meta_iteration"]:>8.3f} '
              f'{r["peak_rss_mb"]:>8.0f} {r["peak_rss_mb"] - r["baseline_rss_mb"]:>9.0f}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iterations', type=int, default=5, help='timed meta-iterations per configuration')
    parser.add_argument('--steps', type=int, nargs='*', default=[1, 5, 10, 20], help='Omniglot inner steps')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model_name, algorithm, steps = args.child
        print(json.dumps(measure(model_name, algorithm, int(steps), args.iterations)))
        return
    configurations = [('omniglot', a, s) for s in args.steps for a in ALGORITHMS]
    configurations += [('miniimagenet', a, 5) for a in ALGORITHMS]
    results = []
    for configuration in configurations:
        results.append(run_child(*configuration, args.iterations))
        print(json.dumps(results[-1]), flush=True)
    print_table(results)


if __name__ == '__main__':
    main()
