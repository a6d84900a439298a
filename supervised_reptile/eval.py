"""Evaluating a meta-learned initialization on few-shot tasks."""

import math
from typing import NamedTuple

import numpy as np

from .running import distribute, budget
from .running.progress import Progress
from .tasks import class_samples, make_task, sample_classes, split_train_test, lazy_arrays


class Episode(NamedTuple):
    """One evaluation task: the support `Task` (images and inner batches), the held-out
    queries (a `tasks.Stack`), and the names of its classes (for results files)."""
    task: object
    query_images: np.ndarray
    query_labels: np.ndarray
    classes: tuple


class Outcome(NamedTuple):
    """How a model did on one evaluation task."""
    classes: tuple
    correct: int
    total: int


def sample_episode(dataset, num_classes, num_shots, inner_batch_size, inner_iters, replacement):
    """One evaluation task, sampled as the original samples it: `num_shots + 1` samples per
    class, of which the first of each class is the query."""
    classes = sample_classes(dataset, num_classes)
    support, query = split_train_test(class_samples(classes, num_shots + 1))
    query_images, query_labels = lazy_arrays(query)
    return Episode(make_task(support, inner_batch_size, inner_iters, replacement), query_images, query_labels,
                   tuple(c.name for c in classes))


def evaluate(algo, dataset, num_classes=5, num_shots=5, eval_inner_batch_size=5, eval_inner_iters=50,
             replacement=False, num_samples=10000, episodes_per_call=None, runner=distribute.LOCAL):
    """The `Outcome` of each of `num_samples` tasks (a progress bar on a terminal).

    Tasks are sampled in order, exactly as the original samples them one by one, and then
    fine-tuned `episodes_per_call` at a time (default: as many as `budget` says fit; in a
    distributed run, the smallest number of any worker): episodes are independent, so the
    results do not depend on it.
    """
    return evaluate_paired([algo], dataset, num_classes, num_shots, eval_inner_batch_size, eval_inner_iters,
                           replacement, num_samples, episodes_per_call, runner)[0]


def evaluate_paired(algos, dataset, num_classes, num_shots, eval_inner_batch_size, eval_inner_iters,
                    replacement, num_samples, episodes_per_call=None, runner=distribute.LOCAL):
    """`evaluate` for several models on exactly the same tasks and inner mini-batches:
    one list of outcomes per model."""
    if episodes_per_call is None:
        episodes_per_call = min(fitting(algo, num_classes, num_shots, eval_inner_batch_size, runner) for algo in algos)
    else:
        episodes_per_call = runner.agreed_minimum(episodes_per_call)
    results = [[] for _ in algos]
    with Progress(num_samples, runner.is_chief) as progress:
        while len(results[0]) < num_samples:
            count = min(episodes_per_call, num_samples - len(results[0]))
            episodes = [sample_episode(dataset, num_classes, num_shots, eval_inner_batch_size, eval_inner_iters,
                                       replacement) for _ in range(count)]
            for algo, outcomes in zip(algos, results):
                outcomes += score(algo, episodes, runner, episodes_per_call)
            progress.update(len(results[0]))
    return results


def score(algo, episodes, runner, episodes_per_call):
    """The `Outcome` of `algo` on each episode, fine-tuned `episodes_per_call` at a time."""
    outcomes = []
    for start in range(0, len(episodes), episodes_per_call):
        chunk = episodes[start:start + episodes_per_call]
        logits = runner.logits(algo, [(e.task, e.query_images) for e in chunk])
        outcomes += [Outcome(e.classes, int(np.sum(np.argmax(l, axis=-1) == e.query_labels)), len(e.query_labels))
                     for l, e in zip(logits, chunk)]
    return outcomes


def fitting(algo, num_classes, num_shots, inner_batch_size, runner):
    """How many evaluation episodes fit one call: `budget`'s count per replica, the smallest
    of all workers' (each sizes it from its own free memory, and all must run the same
    calls), times the replicas."""
    count = budget.episodes_per_call(algo, num_classes, num_shots, inner_batch_size, runner.device_type)
    return runner.agreed_minimum(count) * runner.replicas


def mean_and_ci(values):
    """Mean and the half-width of its 95% confidence interval (normal approximation)."""
    values = np.asarray(values, dtype=np.float64)
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float('nan')
    return values.mean(), half_width


def accuracy(outcomes):
    """Mean accuracy over tasks and the half-width of its 95% confidence interval."""
    return mean_and_ci([o.correct / o.total for o in outcomes])


def accuracy_line(name, outcomes):
    """`<name> accuracy: 0.8420 ± 0.0104 (95% CI, 1000 tasks)`: the mean over tasks with the
    normal-approximation interval over per-task accuracies."""
    mean, half_width = accuracy(outcomes)
    return f'{name} accuracy: {mean:.4f} ± {half_width:.4f} (95% CI, {len(outcomes)} tasks)'
