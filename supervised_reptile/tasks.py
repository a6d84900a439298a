"""Few-shot tasks: sample classes and shots, cut mini-batches, split support from query.

These consume Python's `random` in exactly the order the original does, so a seed gives
the original's tasks and batches. A sample is a pair (image, label index in the task).

The inner loop is fed a `Task`: the task's images once, and its mini-batches as indices
into them. A batch holds no image of its own, so a long inner loop (Mini-ImageNet's
evaluation: 88 batches of 15 from 26 images) costs the memory of its 26 images.
"""

import contextlib
import random
from typing import NamedTuple

import numpy as np

from .errors import InputError


class Task(NamedTuple):
    """The images [n, ...] (float32, or a `Stack`) and labels [n] (int32) of a task, and its
    inner mini-batches as index arrays into them (all of one size but maybe the last: FOML's tail)."""
    images: np.ndarray
    labels: np.ndarray
    batches: list


class Stack:
    """Images stacked into one float32 array [n, ...] on first use (`np.asarray`), so that
    sampling a task decodes nothing: in a distributed run every process samples every task
    (the shared random stream) but decodes and stacks only its own (see `distribute`)."""

    def __init__(self, images):
        self._images, self._array = images, None

    def __array__(self, dtype=None, copy=None):
        if self._array is None:
            self._array = np.stack([np.asarray(image) for image in self._images])
        return self._array if dtype is None else self._array.astype(dtype)

    def __getitem__(self, key):
        return np.asarray(self)[key]

    def __len__(self):
        return len(self._images)


def sample_classes(dataset, num_classes):
    """`num_classes` random classes of `dataset`, in task-label order."""
    if num_classes > len(dataset):
        raise InputError(f'a task needs {num_classes} classes but the split has only '
                         f'{len(dataset)}: lower --classes or use more data')
    shuffled = list(dataset)
    random.shuffle(shuffled)
    return shuffled[:num_classes]


def class_samples(classes, num_shots):
    """`num_shots` samples of each class, labelled by the class's position."""
    return [(image, label) for label, cls in enumerate(classes) for image in cls.pick(num_shots)]


def sample_mini_dataset(dataset, num_classes, num_shots):
    """`num_shots` samples of each of `num_classes` random classes of `dataset`."""
    return class_samples(sample_classes(dataset, num_classes), num_shots)


def mini_batches(samples, batch_size, num_batches, replacement):
    """`num_batches` batches of `batch_size` samples.

    Without replacement, batches are consecutive slices of a shuffled list that is
    reshuffled whenever it runs out (so a batch may span two passes, and a batch may be
    larger than the task). With replacement, every batch is a fresh `random.sample`.
    """
    samples = list(samples)
    if not num_batches:
        return []
    if not samples:
        raise InputError('no samples left for inner mini-batches: use more shots per class')
    if replacement:
        if batch_size > len(samples):
            raise InputError(f'an inner batch of {batch_size} cannot be drawn with --replacement '
                             f'from {len(samples)} samples: lower the inner batch or raise the shots')
        return [random.sample(samples, batch_size) for _ in range(num_batches)]
    batches, current = [], []
    while len(batches) < num_batches:
        random.shuffle(samples)
        for sample in samples:
            current.append(sample)
            if len(current) == batch_size:
                batches.append(current)
                current = []
                if len(batches) == num_batches:
                    break
    return batches


def split_train_test(samples, test_shots=1):
    """Move the first `test_shots` samples of each label (labels in ascending order, one
    round per shot) from the list into a second list; returns (rest, moved)."""
    train_set = list(samples)
    labels = sorted(set(label for _, label in train_set))
    if any(sum(1 for _, l in train_set if l == label) < test_shots for label in labels):
        raise InputError(f'a task needs {test_shots} held-out samples per class: raise the shots')
    test_set = []
    for _ in range(test_shots):
        for label in labels:
            index = next(i for i, (_, item_label) in enumerate(train_set) if item_label == label)
            test_set.append(train_set.pop(index))
    return train_set, test_set


def to_arrays(samples):
    """Stack a list of (image, label) into an image array and an int32 label array."""
    images, labels = lazy_arrays(samples)
    return np.asarray(images), labels


def lazy_arrays(samples):
    """A list of (image, label) as a `Stack` of the images and an int32 label array."""
    images, labels = zip(*samples)
    return Stack(images), np.array(labels, dtype=np.int32)


def make_task(samples, batch_size, num_batches, replacement, tail=()):
    """The `Task` of `samples` with `mini_batches` of them, then, if given, one last batch
    of the `tail` samples (FOML's separate last batch).

    Batches are drawn over sample indices: shuffling or sampling a list consumes `random`
    by its length only, so the batches are those `mini_batches(samples, ...)` gives.
    """
    indices = mini_batches(range(len(samples)), batch_size, num_batches, replacement)
    batches = [np.array(b, np.int32) for b in indices]
    if tail:
        batches.append(np.arange(len(samples), len(samples) + len(tail), dtype=np.int32))
    images, labels = lazy_arrays(list(samples) + list(tail))
    return Task(images, labels, batches)


def task_of_batches(batches):
    """The `Task` that feeds exactly the given (images, labels) batches, e.g. a recorded
    trajectory's: their images side by side, each batch indexing its own."""
    starts = np.cumsum([0] + [len(y) for _, y in batches])
    return Task(np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]),
                [np.arange(a, b, dtype=np.int32) for a, b in zip(starts, starts[1:])])


class RandomStream:
    """A stream of `random` draws apart from the global one, for sampling tasks the original
    never sampled (more periodic evaluation tasks) without changing the tasks it did sample.
    The samplers here use the global `random`: `active()` swaps this stream in and out."""

    def __init__(self, seed):
        self.state = random.Random(seed).getstate()

    @contextlib.contextmanager
    def active(self):
        """A context in which `random` draws from this stream."""
        saved = random.getstate()
        random.setstate(self.state)
        try:
            yield
        finally:
            self.state = random.getstate()
            random.setstate(saved)
