"""Speed of meta-training and evaluation, against a straightforward implementation.

    python benchmarks/bench.py [--quick] [--only NAME_PREFIX] [--float32-only]

Prints one JSON line per measurement (`name`, `impl`, `unit`, `seconds_per_unit` = median
over repeats, `gflops`, `peak_rss_mb`), then a table with speed-ups over `naive`. A long
exact training run (`omniglot_5w_long_run`) reports resident memory instead: it must not
grow. `exact-checked` is `exact` plus the check for non-finite weights and optimizer state
that training makes after every meta-iteration: the difference is that check's cost.
Images are random binary/colour arrays: speed does not depend on their content.

`naive` is what a direct TF2 port looks like: the Keras model's own variables trained in
place by a Keras Adam(beta_1=0) in one compiled inner loop per task or episode, tasks one
after another, weights snapshotted and restored through NumPy.
"""

import argparse
import json
import resource
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from supervised_reptile.running import budget, checkpoint
from supervised_reptile.models import MODELS
from supervised_reptile.optimizers import Adam
from supervised_reptile.reptile import Reptile
from supervised_reptile.tasks import Task, task_of_batches

TRAIN_SETTINGS = {  # name: (model, classes, train shots, inner batch, inner iters, meta batch)
    'omniglot_5w': ('omniglot', 5, 10, 10, 5, 5),
    'omniglot_20w': ('omniglot', 20, 10, 20, 10, 5),
    'miniimagenet_5w': ('miniimagenet', 5, 15, 10, 8, 5),
}
EVAL_SETTINGS = {  # name: (transductive); 1-shot 5-way, eval batch 5, 50 inner iterations
    'omniglot_5w_eval_transductive': True,
    'omniglot_5w_eval_nontransductive': False,
}
EVAL_EPISODES = 25


class Naive:
    """The straightforward implementation (see the module docstring)."""

    def __init__(self, model, learning_rate=1e-3, transductive=True):
        self.model = model
        self.transductive = transductive
        self.optimizer = keras.optimizers.Adam(learning_rate, beta_1=0.0, epsilon=1e-8)
        self.optimizer.build(model.trainable_variables)

    @tf.function
    def _inner_loop(self, xs, ys):
        for i in tf.range(tf.shape(xs)[0]):
            with tf.GradientTape() as tape:
                logits = self.model(xs[i], training=True)
                loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(ys[i], logits))
            variables = self.model.trainable_variables
            self.optimizer.apply(tape.gradient(loss, variables), variables)

    @tf.function
    def _predict(self, x):
        return self.model(x, training=True)

    def train_step(self, tasks, meta_step_size):
        old = self.model.get_weights()
        new = []
        for xs, ys in tasks:
            self.model.set_weights(old)
            self._inner_loop(xs, ys)
            new.append(self.model.get_weights())
        mean = [np.mean(ws, axis=0) for ws in zip(*new)]
        self.model.set_weights([o + (m - o) * meta_step_size for o, m in zip(old, mean)])

    def evaluate(self, episodes):
        logits = []
        for xs, ys, support_x, query_x in episodes:
            weights = self.model.get_weights()
            slots = [v.numpy() for v in self.optimizer.variables]
            self._inner_loop(xs, ys)
            if self.transductive:
                logits.append(self._predict(query_x).numpy())
            else:
                logits.append(np.stack([self._predict(np.concatenate([support_x, q[None]]))[-1].numpy()
                                        for q in query_x]))
            self.model.set_weights(weights)
            for var, value in zip(self.optimizer.variables, slots):
                var.assign(value)
        return logits


def forward_flops(model):
    """Multiply-adds x 2 of one example's forward pass."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            flops += 2 * np.prod(layer.output.shape[1:3]) * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * np.prod(layer.kernel.shape)
    return flops


def random_images(rng, model_name, shape):
    if model_name == 'omniglot':
        return (rng.random(shape + (28, 28)) < 0.9).astype(np.float32)
    return rng.random(shape + (84, 84, 3), dtype=np.float32)


def random_tasks(rng, name):
    """One meta-batch of a training setting: (images, labels) arrays [iters, batch, ...] per task."""
    model_name, classes, shots, batch, iters, meta_batch = TRAIN_SETTINGS[name]
    return [(random_images(rng, model_name, (iters, batch)), rng.integers(0, classes, (iters, batch), dtype=np.int32))
            for _ in range(meta_batch)]


def random_episodes(rng, count=EVAL_EPISODES):
    """`count` 1-shot 5-way episodes as `Reptile.evaluate` takes them: (task of 5 support
    images and 50 inner batches of 5 of them, 5 query images)."""
    return [(Task(random_images(rng, 'omniglot', (5,)), np.arange(5, dtype=np.int32),
                  list(rng.integers(0, 5, (50, 5), dtype=np.int32))), random_images(rng, 'omniglot', (5,)))
            for _ in range(count)]


def as_arrays(episodes):
    """Episodes as `Naive.evaluate` takes them: (batch images, batch labels, support, query)."""
    return [(task.images[np.stack(task.batches)], task.labels[np.stack(task.batches)], task.images, query)
            for task, query in episodes]


def bench_training(name, impl, repeats):
    model_name, classes, shots, batch, iters, meta_batch = TRAIN_SETTINGS[name]
    model = MODELS[model_name](classes)
    tasks = random_tasks(np.random.default_rng(0), name)
    if impl == 'naive':
        algo = Naive(model)
        step = lambda: algo.train_step(tasks, 0.5)
    else:
        algo = Reptile(model, Adam(1e-3), compute_dtype='bfloat16' if impl.endswith('bf16') else None)
        ours = [task_of_batches(list(zip(xs, ys))) for xs, ys in tasks]
        step = lambda: algo.train_step(ours, 0.5, parallel=impl.startswith('parallel'))
        if impl == 'exact-checked':  # with the divergence check train.train makes every meta-iteration
            step = lambda: (algo.train_step(ours, 0.5), checkpoint.non_finite(algo))
    seconds = _time(step, repeats)
    flops = 3 * forward_flops(model) * batch * iters * meta_batch
    return {'name': name, 'impl': impl, 'unit': 'meta_iter', 'seconds_per_unit': seconds, 'gflops': flops / seconds / 1e9}


def bench_eval(name, impl, repeats):
    """Evaluation: `naive` one episode after another, `batched` 25 episodes per call,
    `batched-default` as many per call as the evaluation's default (memory-derived) setting."""
    transductive = EVAL_SETTINGS[name]
    model = MODELS['omniglot'](5)
    if impl == 'naive':
        algo = Naive(model, transductive=transductive)
        episodes = random_episodes(np.random.default_rng(0))
        arrays = as_arrays(episodes)
        run = lambda: algo.evaluate(arrays)
    else:
        algo = Reptile(model, Adam(1e-3), transductive=transductive,
                       compute_dtype='bfloat16' if impl.endswith('bf16') else None)
        count = budget.episodes_per_call(algo, 5, 1, 5, 'CPU') if impl == 'batched-default' else EVAL_EPISODES
        episodes = random_episodes(np.random.default_rng(0), count)
        run = lambda: algo.evaluate(episodes)
    seconds = _time(run, repeats) / len(episodes)
    flops = 3 * forward_flops(model) * 5 * 50 + forward_flops(model) * (5 if transductive else 5 * 6)
    return {'name': name, 'impl': impl, 'unit': 'eval_task', 'episodes_per_call': len(episodes),
            'seconds_per_unit': seconds, 'gflops': flops / seconds / 1e9}


def bench_long_run(iterations):
    """Memory over a long exact training run: fresh tasks every meta-iteration and a batch
    of 25 non-transductive evaluation episodes every 50. Resident memory is taken once the
    first quarter has run (all functions traced) and at the end: it must not grow."""
    algo = Reptile(MODELS['omniglot'](5), Adam(1e-3))
    rng = np.random.default_rng(0)
    for i in range(iterations):
        if i == iterations // 4:
            start = _resident_mb()
        if i % 50 == 0:
            algo.evaluate(random_episodes(rng))
        algo.train_step([task_of_batches(list(zip(xs, ys))) for xs, ys in random_tasks(rng, 'omniglot_5w')], 0.5)
    end = _resident_mb()
    return {'name': 'omniglot_5w_long_run', 'impl': 'exact', 'unit': 'meta_iter', 'iterations': iterations,
            'rss_start_mb': start, 'rss_end_mb': end, 'rss_growth_mb': end - start}


def _resident_mb():
    """This process's resident memory now (Linux)."""
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2 ** 20


def peak_gflops(dtype):
    """This machine's matrix-multiply rate in `dtype`: the yardstick for '% of peak'."""
    a = tf.random.normal([2048, 2048], dtype=tf.float32)
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda x: tf.matmul(x, x))
    return 2 * 2048 ** 3 / _time(lambda: matmul(a).numpy(), 5) / 1e9


def _time(fn, repeats):
    """Median wall time of `fn` over `repeats` runs, after one warm-up (tracing) run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='one repeat each: a smoke run')
    parser.add_argument('--only', default='', help='run only settings whose name starts with this')
    parser.add_argument('--float32-only', action='store_true',
                        help='skip the bfloat16 measurements (slow on CPUs without bfloat16 arithmetic)')
    args = parser.parse_args()
    repeats = 1 if args.quick else 5
    plan = [(bench_training, name, impl) for name in TRAIN_SETTINGS
            for impl in ('naive', 'exact', 'exact-checked', 'parallel', 'exact-bf16', 'parallel-bf16')]
    plan += [(bench_eval, name, impl) for name in EVAL_SETTINGS
             for impl in ('naive', 'batched', 'batched-default', 'batched-bf16')]
    results = []
    for fn, name, impl in plan:
        if not name.startswith(args.only) or (args.float32_only and impl.endswith('bf16')):
            continue
        result = fn(name, impl, repeats)
        result['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result), flush=True)
        results.append(result)
    if 'omniglot_5w_long_run'.startswith(args.only):
        memory = bench_long_run(100 if args.quick else 1000)
        memory['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(memory), flush=True)
    peaks = {'float32': peak_gflops(tf.float32), 'bfloat16': peak_gflops(tf.bfloat16)}
    print(json.dumps({'name': 'matmul_peak', 'unit': 'GFLOP/s', **peaks}), flush=True)
    print_table(results, peaks)
    if 'omniglot_5w_long_run'.startswith(args.only):
        print(f"long run: {memory['iterations']} meta-iterations, resident memory {memory['rss_start_mb']:.0f} MB "
              f"after the first quarter, {memory['rss_end_mb']:.0f} MB at the end", file=sys.stderr)


def print_table(results, peaks):
    """Seconds per unit, speed-up over `naive` and share of the matmul peak of each measurement."""
    naive = {r['name']: r['seconds_per_unit'] for r in results if r['impl'] == 'naive'}
    print(f"\n{'name':34} {'impl':14} {'s/unit':>9} {'speed-up':>9} {'GFLOP/s':>8} {'% peak':>7}", file=sys.stderr)
    for r in results:
        speedup = naive[r['name']] / r['seconds_per_unit'] if r['name'] in naive else float('nan')
        peak = peaks['bfloat16' if r['impl'].endswith('bf16') else 'float32']
        print(f"{r['name']:34} {r['impl']:14} {r['seconds_per_unit']:9.4f} {speedup:8.2f}x {r['gflops']:8.1f} "
              f"{100 * r['gflops'] / peak:6.1f}%", file=sys.stderr)
    print(f"matmul peak here: {peaks['float32']:.0f} GFLOP/s float32, {peaks['bfloat16']:.0f} bfloat16",
          file=sys.stderr)


if __name__ == '__main__':
    main()
