"""How fast TensorFlow's own kernels let Omniglot's inner loop run here: a lower bound.

    python benchmarks/floor.py

Times the inner steps of the grouped network with everything but its convolutions
stripped away (`convs`: four grouped convolutions with ReLU, forward and backward, and a
plain gradient step on their kernels), then with batch norm put back (`convs+bn`), in the
layout and batch shapes that `bench.py`'s `batched` evaluation (25 episodes of batch 5)
and `parallel` training (5 tasks of batch 10) use. No implementation built from these
kernels can be faster than this, so it shows which of bench.py's targets this machine
allows. Prints JSON lines in bench.py's units (`eval_task`, `meta_iter`), then a table.
"""

import json
import statistics
import sys
import time

import tensorflow as tf

from supervised_reptile.models import grouped_conv2d

SETTINGS = {  # name: (groups, batch, inner steps per unit, units per call, unit)
    'omniglot_5w_eval_transductive': (25, 5, 50, 25, 'eval_task'),
    'omniglot_5w': (5, 10, 5, 1, 'meta_iter'),
}
STEPS = 50


def network(x, kernels, batch_norm):
    """Omniglot's four conv blocks on [batch, 28, 28, groups], groups side by side in channels
    (grouped as the package groups them: one op where TF can, else one per group)."""
    groups = x.shape[-1]
    for kernel in kernels:
        x = grouped_conv2d(x, kernel, groups, 2, 'SAME')
        if batch_norm:
            mean, variance = tf.nn.moments(x, axes=[0, 1, 2], keepdims=True)
            x = tf.nn.batch_normalization(x, mean, variance, None, None, 1e-3)
        x = tf.nn.relu(x)
    return x


def seconds_per_step(groups, batch, dtype, batch_norm):
    """Median time of one inner step over `STEPS` steps in one compiled loop."""
    kernels = [tf.cast(tf.random.normal([3, 3, c, groups * 64], stddev=0.1), dtype) for c in (1, 64, 64, 64)]
    x = tf.cast(tf.random.normal([batch, 28, 28, groups]), dtype)

    @tf.function
    def steps(kernels):
        for _ in tf.range(STEPS):
            with tf.GradientTape() as tape:
                tape.watch(kernels)
                loss = tf.reduce_sum(tf.cast(network(x, kernels, batch_norm), tf.float32))
            grads = tape.gradient(loss, kernels)
            kernels = [k - tf.cast(1e-3, dtype) * g for k, g in zip(kernels, grads)]
        return kernels

    steps(kernels)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        steps(kernels)[0].numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / STEPS


def main():
    results = []
    for name, (groups, batch, steps_per_unit, units, unit) in SETTINGS.items():
        for dtype in (tf.float32, tf.bfloat16):
            for batch_norm in (False, True):
                step = seconds_per_step(groups, batch, dtype, batch_norm)
                result = {'name': name, 'impl': 'convs+bn' if batch_norm else 'convs', 'dtype': dtype.name,
                          'unit': unit, 'seconds_per_unit': step * steps_per_unit / units}
                print(json.dumps(result), flush=True)
                results.append(result)
    print(f"\n{'name':34} {'impl':9} {'dtype':9} {'s/unit':>8}", file=sys.stderr)
    for r in results:
        print(f"{r['name']:34} {r['impl']:9} {r['dtype']:9} {r['seconds_per_unit']:8.4f}", file=sys.stderr)


if __name__ == '__main__':
    main()
