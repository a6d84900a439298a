"""The meta-training loop: sample tasks, step the algorithm, evaluate, log, checkpoint."""

import os

import numpy as np
import tensorflow as tf

from .running import checkpoint, distribute
from .eval import fitting, sample_episode, score
from .running.progress import Progress
from .errors import Diverged, Stopped
from .running.prefetch import Prefetch
from .running.signals import StopRequests
from .tasks import sample_mini_dataset

CHECKPOINT_INTERVAL = 100


def train(algo, train_set, test_set, save_dir, num_classes=5, num_shots=5, train_shots=None,
          inner_batch_size=5, inner_iters=20, replacement=False, meta_step_size=0.1,
          meta_step_size_final=0.1, meta_batch_size=1, meta_iters=400000, eval_inner_batch_size=5,
          eval_inner_iters=50, eval_interval=10, eval_interval_samples=0, parallel_tasks=False,
          start_iteration=0, eval_stream=None, runner=distribute.LOCAL,
          checkpoint_interval=CHECKPOINT_INTERVAL, overlap=True):
    """Meta-train `algo` for `meta_iters` iterations, as the original's `train`.

    Every `eval_interval` iterations one training and one test task are evaluated: the
    line `batch %d: train=%f test=%f` and TensorBoard scalars `accuracy` under
    `<save_dir>/train` and `<save_dir>/test`. With `eval_interval_samples`, the line shows
    the mean over that many more tasks of each split, drawn from `eval_stream` (a
    `RandomStream`, so the training tasks stay the original's), also logged as
    `mean_accuracy`. A checkpoint is written every `checkpoint_interval` iterations and
    after the last one. The meta step size anneals linearly to `meta_step_size_final`. A
    resumed run starts at `start_iteration` (see `checkpoint.resume`). `parallel_tasks`
    runs each meta-batch's tasks at once (see `Reptile.train_step`); `runner` says on
    which devices. With `overlap`, the next meta-batch is sampled while one runs (`Prefetch`).

    SIGINT or SIGTERM (in any process of a distributed run) ends the meta-iteration under
    way, writes a checkpoint of it and raises `signals.Stopped` (printed by the chief only).
    A weight or optimizer state that stops being finite ends the run with `errors.Diverged`,
    before any checkpoint of it is written.
    """
    writers = _summary_writers(save_dir) if runner.is_chief else None
    periodic = dict(num_classes=num_classes, num_shots=num_shots, inner_batch_size=eval_inner_batch_size,
                    inner_iters=eval_inner_iters, replacement=replacement)
    per_call = fitting(algo, num_classes, num_shots, eval_inner_batch_size, runner)
    sample = lambda: _meta_batch(algo, train_set, num_classes, train_shots or num_shots, inner_batch_size,
                                 inner_iters, replacement, meta_batch_size, runner)
    with StopRequests() as stop, Progress(meta_iters, runner.is_chief, start=start_iteration) as progress, \
            Prefetch(sample, overlap) as prefetch:
        if start_iteration < meta_iters:
            prefetch.start()
        for i in range(start_iteration, meta_iters):
            frac_done = i / meta_iters
            cur_meta_step_size = frac_done * meta_step_size_final + (1 - frac_done) * meta_step_size
            tasks, evaluating, more = prefetch.take(), i % eval_interval == 0, i + 1 < meta_iters
            if more and not evaluating:
                prefetch.start()  # periodic evaluation samples from `random` first
            runner.train_step(algo, tasks, cur_meta_step_size, parallel_tasks)
            _stop_if_diverged(algo, i, save_dir)
            if evaluating:
                line = _evaluate_periodically(algo, i, (train_set, test_set), writers, eval_interval_samples,
                                              eval_stream, runner, per_call, periodic)
                if runner.is_chief:
                    progress.log(line)
                if more:
                    prefetch.start()
            stopping = runner.any_stop(stop.requested)
            if i % checkpoint_interval == 0 or not more or stopping:
                _checkpoint(save_dir, i, algo, eval_stream, runner, prefetch.random_state)
            progress.update(i + 1)
            if stopping:
                raise Stopped(stop.signum, f'after meta-iteration {i}, with a checkpoint of it in {save_dir}: '
                                           'continue with --resume', quiet=not runner.is_chief)


def _meta_batch(algo, train_set, num_classes, num_shots, inner_batch_size, inner_iters, replacement, count,
                runner):
    """The tasks of one meta-iteration, the images of this process's own tasks decoded."""
    tasks = [algo.task(sample_mini_dataset(train_set, num_classes, num_shots), inner_batch_size, inner_iters,
                       replacement) for _ in range(count)]
    for task in runner.own(tasks):
        np.asarray(task.images)
    return tasks


def _checkpoint(save_dir, iteration, algo, eval_stream, runner, random_state):
    """The chief writes the checkpoint of `iteration`; every worker remembers it."""
    path = os.path.join(save_dir, f'{checkpoint.PREFIX}-{iteration}')
    if runner.is_chief:
        path = checkpoint.save(save_dir, iteration, algo, eval_stream, random_state)
    runner.checkpointed(path)


def _stop_if_diverged(algo, iteration, save_dir):
    """Raise `Diverged` when a weight or optimizer tensor is no longer finite, naming it and
    the last (finite) checkpoint, from which --resume continues with a smaller learning rate
    (the one identity flag a resumed run may change)."""
    name = checkpoint.non_finite(algo)
    if name:
        last = checkpoint.last_saved(save_dir)
        advice = (f'the last finite checkpoint is {last}: continue from it with --resume and a smaller --learning-rate'
                  if last else 'no checkpoint was written: train again with a smaller --learning-rate')
        raise Diverged(f'training diverged at meta-iteration {iteration}: {name} is not finite; {advice}')


def _summary_writers(save_dir):
    os.makedirs(save_dir, exist_ok=True)
    return [tf.summary.create_file_writer(os.path.join(save_dir, name)) for name in ('train', 'test')]


def _evaluate_periodically(algo, iteration, datasets, writers, samples, stream, runner, per_call, kwargs):
    """Evaluate one task of each data set (the original's); with `samples`, also the mean
    over that many tasks from `stream`. Logs to TensorBoard; returns the `batch` line."""
    accuracies = []
    for dataset, writer in zip(datasets, writers or [None] * len(datasets)):
        [outcome] = score(algo, [sample_episode(dataset, **kwargs)], runner, per_call)
        values = {'accuracy': outcome.correct / outcome.total}
        if samples:
            with stream.active():
                episodes = [sample_episode(dataset, **kwargs) for _ in range(samples)]
            outcomes = score(algo, episodes, runner, per_call)
            values['mean_accuracy'] = sum(o.correct / o.total for o in outcomes) / samples
        if writer is not None:
            with writer.as_default():
                for tag, value in values.items():
                    tf.summary.scalar(tag, value, step=iteration)
            writer.flush()
        accuracies.append(values.get('mean_accuracy', values['accuracy']))
    return 'batch %d: train=%f test=%f' % (iteration, accuracies[0], accuracies[1])
