"""Few-shot tasks: sample classes and shots, cut mini-batches, split support from query.

These consume Python's `random` in exactly the order the original does, so a seed gives
the original's tasks and batches. A sample is a pair (image, label index in the task).
"""

import random

import numpy as np

from .errors import InputError


def sample_mini_dataset(dataset, num_classes, num_shots):
    """`num_shots` samples of each of `num_classes` random classes of `dataset`."""
    if num_classes > len(dataset):
        raise InputError(f'a task needs {num_classes} classes but the split has only '
                         f'{len(dataset)}: lower --classes or use more data')
    shuffled = list(dataset)
    random.shuffle(shuffled)
    return [(image, label) for label, cls in enumerate(shuffled[:num_classes])
            for image in cls.sample(num_shots)]


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
    images, labels = zip(*samples)
    return np.stack(images), np.array(labels, dtype=np.int32)


def inner_batches(samples, batch_size, num_batches, replacement):
    """`mini_batches` as (images, labels) arrays: what the inner loop is fed."""
    return [to_arrays(b) for b in mini_batches(samples, batch_size, num_batches, replacement)]
