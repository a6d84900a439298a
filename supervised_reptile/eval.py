"""Evaluating a meta-learned initialization on few-shot tasks."""

import math
import sys

import keras
import numpy as np

from .tasks import inner_batches, sample_mini_dataset, split_train_test, to_arrays


EPISODES_PER_CALL = 25  # evaluation episodes fine-tuned at once (see benchmarks/bench.py)


def sample_episode(dataset, num_classes, num_shots, inner_batch_size, inner_iters, replacement):
    """One evaluation task: (inner batches, support images, query images, query labels).

    The task has `num_shots + 1` samples per class; the first of each class is the query.
    """
    support, query = split_train_test(sample_mini_dataset(dataset, num_classes, num_shots + 1))
    batches = inner_batches(support, inner_batch_size, inner_iters, replacement)
    query_x, query_y = to_arrays(query)
    return batches, to_arrays(support)[0], query_x, query_y


def evaluate(algo, dataset, num_classes=5, num_shots=5, eval_inner_batch_size=5, eval_inner_iters=50,
             replacement=False, num_samples=10000):
    """Number of correct queries in each of `num_samples` tasks (a progress bar on a terminal).

    Tasks are sampled in order, exactly as the original samples them one by one, and then
    fine-tuned `EPISODES_PER_CALL` at a time: episodes are independent, so this is exact.
    """
    return evaluate_paired([algo], dataset, num_classes, num_shots, eval_inner_batch_size, eval_inner_iters,
                           replacement, num_samples)[0]


def evaluate_paired(algos, dataset, num_classes, num_shots, eval_inner_batch_size, eval_inner_iters,
                    replacement, num_samples):
    """`evaluate` for several models on exactly the same tasks and inner mini-batches:
    one list of per-task correct counts per model."""
    progress = keras.utils.Progbar(num_samples, verbose=1 if sys.stdout.isatty() else 0)
    results = [[] for _ in algos]
    while len(results[0]) < num_samples:
        episodes = [sample_episode(dataset, num_classes, num_shots, eval_inner_batch_size, eval_inner_iters,
                                   replacement) for _ in range(min(EPISODES_PER_CALL, num_samples - len(results[0])))]
        for algo, counts in zip(algos, results):
            counts += correct_counts(algo, episodes)
        progress.update(len(results[0]))
    return results


def correct_counts(algo, episodes):
    """How many queries of each `sample_episode` episode `algo` classifies right."""
    logits = algo.evaluate([episode[:3] for episode in episodes])
    return [int(np.sum(np.argmax(l, axis=-1) == episode[3])) for l, episode in zip(logits, episodes)]


def mean_and_ci(values):
    """Mean and the half-width of its 95% confidence interval (normal approximation)."""
    values = np.asarray(values, dtype=np.float64)
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float('nan')
    return values.mean(), half_width


def accuracy_line(name, correct_per_task, num_classes):
    """`<name> accuracy: <mean> ± <95% CI half-width> (95% CI, N tasks)`.

    The mean is printed as the original prints it; the interval is the normal
    approximation over per-task accuracies.
    """
    _, half_width = mean_and_ci(np.array(correct_per_task) / num_classes)
    n = len(correct_per_task)
    mean = sum(correct_per_task) / (num_classes * n)
    return f'{name} accuracy: {mean} ± {half_width:.4f} (95% CI, {n} tasks)'
