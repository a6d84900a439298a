"""Task sampling consumes Python's `random` exactly like the original.

The oracle below is the original's code (openai/supervised-reptile, reptile.py), kept
verbatim in behaviour. For many seeds and parameter combinations, the package's
sample_mini_dataset / mini_batches / split_train_test must give identical outputs AND leave
`random` in the identical state, so a seed reproduces the original's whole run.
"""

import random

import numpy as np
import pytest

from supervised_reptile.errors import InputError
from supervised_reptile.tasks import mini_batches, sample_mini_dataset, split_train_test, to_arrays


# --- Oracle: the original's functions --------------------------------------------------

def _sample_mini_dataset(dataset, num_classes, num_shots):
    shuffled = list(dataset)
    random.shuffle(shuffled)
    for class_idx, class_obj in enumerate(shuffled[:num_classes]):
        for sample in class_obj.sample(num_shots):
            yield (sample, class_idx)


def _mini_batches(samples, batch_size, num_batches, replacement):
    samples = list(samples)
    if replacement:
        for _ in range(num_batches):
            yield random.sample(samples, batch_size)
        return
    cur_batch = []
    batch_count = 0
    while True:
        random.shuffle(samples)
        for sample in samples:
            cur_batch.append(sample)
            if len(cur_batch) < batch_size:
                continue
            yield cur_batch
            cur_batch = []
            batch_count += 1
            if batch_count == num_batches:
                return


def _split_train_test(samples, test_shots=1):
    train_set = list(samples)
    test_set = []
    labels = set(item[1] for item in train_set)
    for _ in range(test_shots):
        for label in labels:
            for i, item in enumerate(train_set):
                if item[1] == label:
                    del train_set[i]
                    test_set.append(item)
                    break
    if len(test_set) < len(labels) * test_shots:
        raise IndexError('not enough examples of each class for test set')
    return train_set, test_set


class FakeClass:
    """A class whose `sample(n)` shuffles its sorted items with `random`, like a reader's
    (the original's listing, sorted). Items are (class id, drawing index)."""

    def __init__(self, ident, num_items=20):
        self.items = [(ident, i) for i in range(num_items)]

    def __len__(self):
        return len(self.items)

    def sample(self, num_items):
        items = list(self.items)
        random.shuffle(items)
        return items[:num_items]

    pick = sample  # readers' undecoded draw, which the samplers use: the same draw here


def _dataset(num_classes, num_items=20):
    return [FakeClass(i, num_items) for i in range(num_classes)]


def _run(seed, fn):
    """fn()'s result after random.seed(seed), and the generator's state afterwards."""
    random.seed(seed)
    result = fn()
    return result, random.getstate(), random.random()


def _assert_same(seed, ours, original):
    got, got_state, got_next = _run(seed, ours)
    want, want_state, want_next = _run(seed, original)
    assert got == want
    assert got_state == want_state
    assert got_next == want_next
    return got


SEEDS = [0, 1, 7, 1234]


# --- sample_mini_dataset ---------------------------------------------------------------

@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('dataset_size,num_classes,num_shots',
                         [(25, 5, 1), (25, 5, 5), (20, 20, 10), (100, 20, 1), (5, 5, 20), (30, 3, 15)])
def test_sample_mini_dataset_matches_original(seed, dataset_size, num_classes, num_shots):
    """Same classes, same drawings, same labels (task order) and same `random` state as the
    original's _sample_mini_dataset."""
    dataset = _dataset(dataset_size)
    got = _assert_same(seed, lambda: sample_mini_dataset(dataset, num_classes, num_shots),
                       lambda: list(_sample_mini_dataset(dataset, num_classes, num_shots)))
    assert len(got) == num_classes * num_shots
    assert [label for _, label in got] == [i for i in range(num_classes) for _ in range(num_shots)]
    assert len({item[0] for item, _ in got}) == num_classes


# --- mini_batches ----------------------------------------------------------------------

@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('num_samples,batch_size,num_batches,replacement', [
    (50, 10, 5, False),    # exactly one pass
    (50, 10, 12, False),   # several passes
    (15, 7, 6, False),     # batches span reshuffles
    (10, 25, 3, False),    # batch larger than the task: spans several passes
    (5, 5, 1, False),
    (25, 1, 30, False),
    (50, 10, 5, True),
    (15, 15, 4, True),     # replacement with the whole task per batch
    (100, 3, 20, True),
])
def test_mini_batches_match_original(seed, num_samples, batch_size, num_batches, replacement):
    """Same batches in the same order and same `random` state as the original's
    _mini_batches, with and without replacement, including batches larger than the task."""
    samples = [((i, 0), i % 5) for i in range(num_samples)]
    got = _assert_same(seed, lambda: mini_batches(samples, batch_size, num_batches, replacement),
                       lambda: list(_mini_batches(samples, batch_size, num_batches, replacement)))
    assert len(got) == num_batches
    assert all(len(batch) == batch_size for batch in got)
    assert samples == [((i, 0), i % 5) for i in range(num_samples)]  # input untouched


def test_mini_batches_accept_any_iterable():
    """A generator of samples works like a list (the original called list() on it too)."""
    samples = [((i, 0), i % 3) for i in range(9)]
    _assert_same(5, lambda: mini_batches(iter(samples), 4, 5, False),
                 lambda: list(_mini_batches(samples, 4, 5, False)))


# --- split_train_test ------------------------------------------------------------------

@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('num_classes,num_shots,test_shots,shuffle', [
    (5, 2, 1, False), (5, 6, 1, True), (5, 10, 2, False), (5, 10, 2, True),
    (20, 3, 1, True), (20, 5, 2, True), (3, 4, 3, True), (1, 2, 1, False),
])
def test_split_train_test_matches_original(seed, num_classes, num_shots, test_shots, shuffle):
    """Same held-out samples (first of each label, labels ascending, one round per shot),
    same remaining order, and no `random` consumed, like the original's _split_train_test."""
    def samples():
        task = list(_sample_mini_dataset(_dataset(max(num_classes, 20)), num_classes, num_shots))
        if shuffle:
            random.shuffle(task)
        return task

    got = _assert_same(seed, lambda: split_train_test(samples(), test_shots),
                       lambda: _split_train_test(samples(), test_shots))
    rest, held_out = got
    assert len(held_out) == num_classes * test_shots
    assert [label for _, label in held_out] == list(range(num_classes)) * test_shots
    assert len(rest) == num_classes * (num_shots - test_shots)


def test_split_train_test_default_holds_out_one_per_class():
    """test_shots defaults to 1 and the input list is not modified."""
    task = [('a', 1), ('b', 0), ('c', 1), ('d', 0)]
    assert split_train_test(task) == ([('c', 1), ('d', 0)], [('b', 0), ('a', 1)])
    assert task == [('a', 1), ('b', 0), ('c', 1), ('d', 0)]


# --- a whole task: sampler, batches and FOML's tail ------------------------------------

@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('replacement', [False, True])
def test_training_task_pipeline_matches_original(seed, replacement):
    """sample_mini_dataset then mini_batches, as one training task, in one `random` stream."""
    dataset = _dataset(30)
    _assert_same(seed,
                 lambda: mini_batches(sample_mini_dataset(dataset, 5, 10), 10, 7, replacement),
                 lambda: list(_mini_batches(_sample_mini_dataset(dataset, 5, 10), 10, 7, replacement)))


@pytest.fixture(scope='module')
def foml():
    """FOML with a 2-shot tail on a small Omniglot model (FOML.task never runs it)."""
    from supervised_reptile.models import omniglot_model
    from supervised_reptile.optimizers import Adam
    from supervised_reptile.reptile import FOML
    return FOML(omniglot_model(5), Adam(1e-3), tail_shots=2)


def _image_samples(dataset, num_classes, num_shots):
    """A task whose images are small arrays encoding (class id, drawing), for to_arrays."""
    return [(np.array(item, dtype=np.float32), label)
            for item, label in sample_mini_dataset(dataset, num_classes, num_shots)]


def _as_arrays(batches):
    return [tuple(a.tolist() for a in to_arrays(batch)) for batch in batches]


def _task_batches(task):
    """A `Task`'s batches as (images, labels) lists, as `_as_arrays` gives them."""
    return [(task.images[b].tolist(), task.labels[b].tolist()) for b in task.batches]


@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('num_shots,batch_size,inner_iters,replacement', [
    (10, 10, 3, False), (5, 10, 6, False), (4, 3, 5, False), (10, 10, 4, True), (3, 5, 2, True),
])
def test_foml_tail_batches_match_original(foml, seed, num_shots, batch_size, inner_iters, replacement):
    """FOML.task with tail_shots=2: inner_iters-1 batches from the task minus the
    tail, then the tail (2 per class, labels 0..n-1 per shot round), exactly the original's
    `train, tail = _split_train_test(samples, 2); _mini_batches(train, bs, iters-1) + [tail]`
    with the same `random` state afterwards."""
    dataset = _dataset(20)

    def ours():
        return _task_batches(foml.task(_image_samples(dataset, 5, num_shots), batch_size, inner_iters, replacement))

    def original():
        samples = _image_samples(dataset, 5, num_shots)
        train, tail = _split_train_test(samples, 2)
        return _as_arrays(list(_mini_batches(train, batch_size, inner_iters - 1, replacement)) + [tail])

    got = _assert_same(seed, ours, original)
    assert len(got) == inner_iters
    assert all(len(y) == batch_size for _, y in got[:-1])
    tail_x, tail_y = got[-1]
    assert tail_y == list(range(5)) * 2
    tail_items = {tuple(x) for x in tail_x}
    assert len(tail_items) == 10
    assert not tail_items & {tuple(x) for batch_x, _ in got[:-1] for x in batch_x}


def test_foml_tail_with_one_inner_iteration_is_just_the_tail(foml):
    """inner_iters=1 with a tail: no batches from the rest, only the tail batch (the
    original's generator would never stop here: it only checks the count after a batch)."""
    random.seed(0)
    batches = _task_batches(foml.task(_image_samples(_dataset(20), 5, 4), 10, 1, False))
    assert len(batches) == 1
    assert batches[0][1] == list(range(5)) * 2


# --- bad input -------------------------------------------------------------------------

def test_more_classes_than_the_dataset_raises_input_error():
    """A task with more classes than the split raises InputError (not a short task)."""
    with pytest.raises(InputError, match='needs 6 classes but the split has only 5'):
        sample_mini_dataset(_dataset(5), 6, 1)


def test_replacement_batch_larger_than_samples_raises_input_error():
    """With replacement, a batch larger than the task raises InputError (random.sample's
    ValueError in the original)."""
    samples = [((i, 0), i % 5) for i in range(10)]
    with pytest.raises(InputError, match='inner batch of 11'):
        mini_batches(samples, 11, 1, True)


@pytest.mark.parametrize('replacement', [False, True])
def test_empty_samples_raise_input_error(replacement):
    """No samples at all raises InputError (the original looped forever without
    replacement)."""
    with pytest.raises(InputError, match='no samples left'):
        mini_batches([], 5, 3, replacement)


def test_zero_batches_of_nothing_is_empty():
    """Zero batches without replacement is an empty list, even from no samples (FOML tail
    with inner_iters=1)."""
    assert mini_batches([], 5, 0, False) == []
    assert mini_batches([((0, 0), 0)], 5, 0, False) == []


def test_zero_batches_with_replacement_never_fail():
    """Zero batches with replacement is an empty list whatever the batch size, as in the
    original (its loop draws nothing). Reachable: --foml --foml-tail 2 --train-shots 3
    --inner-iters 1 --inner-batch 10 --replacement passes the flag checks (10 <= 5*3) but
    leaves 5 samples for zero batches."""
    assert list(_mini_batches([((0, 0), 0)], 5, 0, True)) == []
    assert mini_batches([((0, 0), 0)], 5, 0, True) == []


def test_split_train_test_with_too_few_examples_raises():
    """A label with fewer than test_shots samples is an error (the original's IndexError),
    not a held-out set silently missing that class."""
    task = [('a', 0), ('b', 1), ('c', 1)]
    with pytest.raises(IndexError):
        _split_train_test(task, 2)
    with pytest.raises((InputError, IndexError)):
        split_train_test(task, 2)


def test_foml_tail_with_no_samples_left_raises_input_error(foml):
    """FOML tail taking every sample leaves nothing for the earlier batches: InputError."""
    random.seed(0)
    with pytest.raises(InputError, match='no samples left'):
        foml.task(_image_samples(_dataset(20), 5, 2), 5, 3, False)
