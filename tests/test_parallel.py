"""--parallel-tasks: with one task per meta-batch it is the exact mode, and the CLI runs it
end to end, also in bfloat16.

With a meta-batch of 1 the parallel mode's documented differences (every task starts from
the meta-iteration's optimizer state; moments averaged over tasks; the step count advances
by one task's steps) all vanish, so it must compute what the exact, sequential mode does:
the same inner steps on the same batches, the same meta-update, the same optimizer state.
"""

import numpy as np
import pytest

from helpers import assert_success, fake_omniglot, run_cli
from supervised_reptile.models import from_groups, omniglot_model, repeated_groups
from supervised_reptile.optimizers import Adam
from supervised_reptile.reptile import FOML, Reptile
from supervised_reptile.tasks import task_of_batches
from test_golden import FLOAT64_ATOL

# Both modes run the same ops in the same order: measured, they agree bit for bit (weights,
# slots, counters, for both algorithms below). The bound is the golden tests' float64 one
# (10x the largest float64 noise floor measured there), which leaves room for a graph
# optimizer that orders a reduction differently in one of the two graphs.
WEIGHTS_ATOL, SLOTS_ATOL = FLOAT64_ATOL['weights'], FLOAT64_ATOL['slots']


def _random_tasks(rng, num_tasks, num_batches, batch, last_batch, classes=5):
    """`num_tasks` tasks of random 0/1 28x28 images: `num_batches - 1` batches of `batch`
    and a last one of `last_batch` (FOML's tail may differ in size)."""
    def one(size):
        return rng.integers(0, 2, (size, 28, 28)).astype(np.float32), rng.integers(0, classes, size, dtype=np.int32)
    return [task_of_batches([one(batch) for _ in range(num_batches - 1)] + [one(last_batch)])
            for _ in range(num_tasks)]


def _trained(make_algo, parallel, meta_iters=3):
    """(weights, optimizer state) after `meta_iters` meta-iterations of one task each, from
    a fixed initialization, on fixed random tasks."""
    model = omniglot_model(5, dtype='float64')
    rng = np.random.default_rng(0)
    for var in model.trainable_variables:
        var.assign(rng.normal(0, 0.1, var.shape))
    algo = make_algo(model)
    for i in range(meta_iters):
        tasks = _random_tasks(rng, 1, 4, 6, 10 if isinstance(algo, FOML) else 6)
        algo.train_step(tasks, 0.5 + 0.1 * i, parallel=parallel)
    state = {key: value.numpy() if not isinstance(value, list) else [v.numpy() for v in value]
             for key, value in algo.optimizer_state.items()}
    return [v.numpy() for v in model.trainable_variables], state


ALGOS = {
    'reptile': lambda model: Reptile(model, Adam(0.001), transductive=True, weight_decay_rate=0.999),
    'foml_tail': lambda model: FOML(model, Adam(0.001), transductive=True, tail_shots=2),
}


@pytest.mark.parametrize('name', [pytest.param('reptile', marks=pytest.mark.slow), 'foml_tail'])
def test_parallel_with_one_task_is_the_exact_mode(name):
    """A meta-batch of 1 ends with the exact mode's weights and optimizer state (float64)."""
    exact_weights, exact_state = _trained(ALGOS[name], parallel=False)
    weights, state = _trained(ALGOS[name], parallel=True)
    for a, e in zip(weights, exact_weights):
        np.testing.assert_allclose(a, e, rtol=0, atol=WEIGHTS_ATOL)
    assert int(state['step']) == int(exact_state['step']) == 3 * 4
    for key in ('beta1_power', 'beta2_power'):
        assert state[key] == exact_state[key]
    for slot in ('Adam', 'Adam_1'):
        for a, e in zip(state[slot], exact_state[slot]):
            np.testing.assert_allclose(a, e, rtol=0, atol=SLOTS_ATOL * max(1, np.max(np.abs(e))))


@pytest.mark.slow
def test_cli_parallel_tasks_in_bfloat16_runs_end_to_end(tmp_path):
    """run_omniglot.py --parallel-tasks --precision bfloat16 trains, evaluates and prints
    the original's lines and the accuracy lines."""
    data = fake_omniglot(tmp_path / 'data', num_chars=12, images=4)
    result = run_cli('omniglot', tmp_path, '--data-dir', data, '--train-chars', 8, '--classes', 3, '--shots', 1,
                     '--train-shots', 3, '--inner-batch', 4, '--inner-iters', 2, '--meta-batch', 3,
                     '--meta-iters', 4, '--eval-interval', 2, '--eval-batch', 3, '--eval-iters', 2,
                     '--eval-samples', 5, '--checkpoint', tmp_path / 'ck', '--parallel-tasks',
                     '--precision', 'bfloat16')
    assert_success(result)
    lines = result.stdout.splitlines()
    assert lines[0] == 'Training...' and [l.split(':')[0] for l in lines[1:3]] == ['batch 0', 'batch 2'], result.stdout
    assert lines[3] == 'Evaluating...', result.stdout
    assert lines[4].startswith('Train accuracy: ') and lines[5].startswith('Test accuracy: '), result.stdout
    assert all('(95% CI, 5 tasks)' in line for line in lines[4:6]) and len(lines) == 6, result.stdout


def test_repeated_groups_hold_one_copy_per_group():
    """The copies the parallel mode (and evaluation) starts every task from: each of
    `groups` copies, read back out of the grouped layout, is the weight itself, for every
    weight of the model (conv kernels, per-channel vectors, the dense layer)."""
    for weight in omniglot_model(5).trainable_variables:
        value = np.random.default_rng(0).random(weight.shape).astype(np.float32)
        for groups in (1, 3):
            np.testing.assert_array_equal(from_groups(repeated_groups(value, groups), groups), [value] * groups)

