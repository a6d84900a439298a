"""The meta-training loop: sample tasks, step the algorithm, evaluate, log, checkpoint."""

import os
import sys

import keras
import tensorflow as tf

from . import checkpoint
from .eval import correct_counts, sample_episode
from .tasks import sample_mini_dataset

CHECKPOINT_INTERVAL = 100


def train(algo, train_set, test_set, save_dir, num_classes=5, num_shots=5, train_shots=None,
          inner_batch_size=5, inner_iters=20, replacement=False, meta_step_size=0.1,
          meta_step_size_final=0.1, meta_batch_size=1, meta_iters=400000, eval_inner_batch_size=5,
          eval_inner_iters=50, eval_interval=10, parallel_tasks=False, start_iteration=0, log_fn=print):
    """Meta-train `algo` for `meta_iters` iterations, as the original's `train`.

    Every `eval_interval` iterations one training and one test task are evaluated: the
    line `batch %d: train=%f test=%f` and TensorBoard scalars `accuracy` under
    `<save_dir>/train` and `<save_dir>/test`. A checkpoint is written every 100 iterations
    and after the last one. The meta step size anneals linearly to `meta_step_size_final`.
    A resumed run starts at `start_iteration` (see `checkpoint.resume`). `parallel_tasks`
    runs each meta-batch's tasks at once (see `Reptile.train_step`).
    """
    os.makedirs(save_dir, exist_ok=True)
    writers = [tf.summary.create_file_writer(os.path.join(save_dir, name)) for name in ('train', 'test')]
    progress = keras.utils.Progbar(meta_iters, verbose=1 if sys.stdout.isatty() else 0)
    progress.update(start_iteration)
    for i in range(start_iteration, meta_iters):
        frac_done = i / meta_iters
        cur_meta_step_size = frac_done * meta_step_size_final + (1 - frac_done) * meta_step_size
        tasks = [algo.task_batches(sample_mini_dataset(train_set, num_classes, train_shots or num_shots),
                                   inner_batch_size, inner_iters, replacement)
                 for _ in range(meta_batch_size)]
        algo.train_step(tasks, cur_meta_step_size, parallel=parallel_tasks)
        if i % eval_interval == 0:
            accuracies = []
            for dataset, writer in zip((train_set, test_set), writers):
                [correct] = correct_counts(algo, [sample_episode(dataset, num_classes, num_shots, eval_inner_batch_size,
                                                                 eval_inner_iters, replacement)])
                with writer.as_default():
                    tf.summary.scalar('accuracy', correct / num_classes, step=i)
                writer.flush()
                accuracies.append(correct / num_classes)
            log_fn('batch %d: train=%f test=%f' % (i, accuracies[0], accuracies[1]))
        if i % CHECKPOINT_INTERVAL == 0 or i == meta_iters - 1:
            checkpoint.save(save_dir, i, algo)
        progress.add(1)
