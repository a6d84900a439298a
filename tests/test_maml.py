"""--maml computes second-order MAML: proved in float64 against FOML, finite differences and
the one-step closed form, and carried through --parallel-tasks and checkpoints.

Every comparison runs in float64, where rounding is ~1e-16 relative, so the bounds below
are set from measured differences (quoted with each test), far below what an error in
the algorithm would give (MAML and FOML differ by 1e-3 and more on the same batches).
"""

import functools

import numpy as np
import pytest
import keras
import tensorflow as tf

from golden.convert import load_case
from test_golden import SHIPPED_DIR, _train_tasks
from supervised_reptile.running import checkpoint
from supervised_reptile.maml import MAML
from supervised_reptile.models import apply, omniglot_model
from supervised_reptile.optimizers import SGD
from supervised_reptile.reptile import FOML, Reptile, stack_tasks
from supervised_reptile.tasks import Task, task_of_batches

LEARNING_RATE = 0.0625  # a power of two: the same in float32 and float64, so delta / lr is exact


@functools.cache  # MAML's run of foml_tail_f64 is the reference of two tests: traced and run once
def _golden_run(name, make):
    """The weights after every recorded meta-iteration of the shipped golden case `name`,
    its recorded batches fed to `make(model, SGD(lr), **kwargs)` from its recorded initial
    weights (with SGD whatever the case recorded), and the final step count."""
    record, arrays = load_case(SHIPPED_DIR, name)
    case = record['case']
    model = omniglot_model(case.get('classes', 5), dtype='float64')
    for i, var in enumerate(model.trainable_variables):
        var.assign(arrays[f'init/{i:02d}'])
    algo = make(model, SGD(case['lr']), transductive=case['transductive'], weight_decay_rate=case['wd'],
                tail_shots=case.get('tail'))
    after = []
    for it, meta in enumerate(record['meta_iters']):
        algo.train_step(_train_tasks(record, arrays, it, np.arange), meta['meta_step_size'])
        after.append(np.concatenate([v.numpy().ravel() for v in model.trainable_variables]))
    return np.array(after), int(algo.optimizer_state['step'])


# Measured: 2.2e-16 (foml_tail_f64) and 1.8e-15 (reptile_sgd_replacement_wd_f64) max abs
# between FOML and MAML with the cut; MAML proper is 1.3e-3 and 0.16 away from FOML.
@pytest.mark.slow
@pytest.mark.parametrize('name', ['foml_tail_f64', 'reptile_sgd_replacement_wd_f64'])
def test_maml_with_the_jacobian_cut_is_foml(name):
    """With the inner loop's Jacobian cut, MAML's trajectory on a golden case's recorded
    batches (FOML's tail; weight decay and replacement) is FOML's with SGD to 1e-12."""
    foml, foml_steps = _golden_run(name, FOML)
    cut, cut_steps = _golden_run(name, lambda *a, **k: MAML(*a, first_order=True, **k))
    maml, _ = _golden_run(name, MAML)
    assert np.max(np.abs(cut - foml)) <= 1e-12
    assert cut_steps == foml_steps
    assert np.max(np.abs(maml - foml)) > 1e-3  # the Jacobian matters on these batches


def _tiny(seed=0):
    """A 5-way Omniglot network with 2 filters per layer (195 weights), in float64."""
    keras.utils.set_random_seed(seed)
    return omniglot_model(5, filters=2, dtype='float64')


def _recorded_task(steps):
    """A task of real Omniglot batches (foml_tail_f64, meta-iteration 0, task 0): `steps`
    inner batches of 5, then its 10 tail examples as the last batch."""
    record, arrays = load_case(SHIPPED_DIR, 'foml_tail_f64')
    [task, _] = _train_tasks(record, arrays, 0, np.arange)
    batches = [(task.images[b], task.labels[b]) for b in task.batches]
    return task_of_batches(batches[:steps] + batches[-1:])


def _flat(values):
    return np.concatenate([np.ravel(v) for v in values])


def _unflat(flat, variables):
    sizes = np.cumsum([0] + [int(np.prod(v.shape)) for v in variables])
    return [tf.reshape(flat[a:b], v.shape) for a, b, v in zip(sizes, sizes[1:], variables)]


def _meta_gradient(model, task, first_order=False):
    """MAML's d L_last / d theta_0 for one task: delta_MAML / -lr (with `first_order`:
    FOML's d L_last / d theta at theta_{K-1})."""
    algo = MAML(model, SGD(LEARNING_RATE), first_order=first_order)
    return _flat([s.numpy() for s in algo.task_sums(*stack_tasks([task]))]) / -LEARNING_RATE


@pytest.mark.slow
def test_meta_gradient_matches_central_finite_differences():
    """d L_last(theta_{K-1}(theta_0)) / d theta_0 agrees with central differences of the
    last batch's loss after 3 inner SGD steps, computed by Reptile's own inner loop, to a
    relative L2 error of 1e-6 (measured: 6.7e-9 with h = 1e-5; FOML's gradient is 0.80
    away), over all 195 weights."""
    model, task = _tiny(), _recorded_task(steps=3)
    gradient, first_order = _meta_gradient(model, task), _meta_gradient(model, task, first_order=True)
    reptile = Reptile(model, SGD(LEARNING_RATE), transductive=True)
    support = Task(task.images[:-10], task.labels[:-10], task.batches[:-1])
    last_x, last_y = task.images[-10:], task.labels[-10:]
    initial, h = _flat([v.numpy() for v in model.trainable_variables]), 1e-5

    def last_loss(flat):
        for var, value in zip(model.trainable_variables, _unflat(flat, model.trainable_variables)):
            var.assign(value)
        [logits] = reptile.evaluate([(support, last_x)])
        return float(tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(last_y, logits)))

    differences = np.array([(last_loss(initial + h * e) - last_loss(initial - h * e)) / (2 * h)
                            for e in np.eye(len(initial))])
    assert np.linalg.norm(gradient - differences) <= 1e-6 * np.linalg.norm(differences)
    assert np.linalg.norm(first_order - differences) > 1e-2 * np.linalg.norm(differences)


def _loss(model, params, x, y):
    """The summed cross-entropy of one batch under plain (ungrouped) weights."""
    logits = apply(model, params, tf.constant(x)[None], second_order=True)[0]
    return -tf.reduce_sum(tf.gather(tf.nn.log_softmax(logits), y, batch_dims=1))


def test_one_inner_step_is_the_closed_form_with_an_explicit_hessian():
    """After one inner step on batch 1, MAML's meta-gradient is (I - lr H) g: H the
    Hessian of batch 1's loss at theta_0 (tf jacobian of its gradient), g the gradient of
    the last batch's loss at theta_1 = theta_0 - lr grad L_1(theta_0). Agreement to a
    relative 1e-10 (measured: 5.3e-15; g alone is 0.74 away)."""
    model, task = _tiny(1), _recorded_task(steps=1)
    variables = model.trainable_variables
    theta0 = tf.constant(_flat([v.numpy() for v in variables]))
    (x1, y1), (x2, y2) = [(task.images[b], task.labels[b]) for b in task.batches]
    flat_loss = lambda flat, x, y: _loss(model, _unflat(flat, variables), x, y)
    with tf.GradientTape() as outer:
        outer.watch(theta0)
        with tf.GradientTape() as inner:
            inner.watch(theta0)
            loss1 = flat_loss(theta0, x1, y1)
        grad1 = inner.gradient(loss1, theta0)
    hessian = outer.jacobian(grad1, theta0).numpy()
    theta1 = theta0 - LEARNING_RATE * grad1
    with tf.GradientTape() as tape:
        tape.watch(theta1)
        loss2 = flat_loss(theta1, x2, y2)
    g = tape.gradient(loss2, theta1).numpy()
    expected = (np.eye(len(g)) - LEARNING_RATE * hessian) @ g
    assert np.linalg.norm(_meta_gradient(model, task) - expected) <= 1e-10 * np.linalg.norm(expected)
    assert np.linalg.norm(g - expected) > 1e-3 * np.linalg.norm(expected)  # H is not negligible here


# Measured: 1.1e-16 max abs between the two modes' weights after 3 meta-iterations.
@pytest.mark.slow
def test_parallel_tasks_compute_the_sequential_update():
    """--parallel-tasks runs a meta-batch's tasks side by side; with SGD (no moments) the
    update is the sequential one, to 1e-12 in float64, and the step count advances by one
    task's steps as for Reptile."""
    sequential, sequential_steps = _golden_run('foml_tail_f64', MAML)
    record, arrays = load_case(SHIPPED_DIR, 'foml_tail_f64')

    class Parallel(MAML):
        def train_step(self, tasks, meta_step_size, parallel=False):
            super().train_step(tasks, meta_step_size, parallel=True)

    parallel, parallel_steps = _golden_run('foml_tail_f64', Parallel)
    assert np.max(np.abs(parallel - sequential)) <= 1e-12
    assert parallel_steps * record['case']['meta_batch'] == sequential_steps


@pytest.mark.slow
def test_checkpoint_resumes_maml_exactly(tmp_path):
    """A MAML run saved after one meta-iteration and resumed into a fresh instance ends
    bit for bit where the uninterrupted run does."""
    record, arrays = load_case(SHIPPED_DIR, 'foml_tail_f64')
    tasks = [_train_tasks(record, arrays, it, np.arange) for it in range(2)]

    def fresh():
        return MAML(_tiny(2), SGD(LEARNING_RATE), tail_shots=2)

    straight = fresh()
    for meta_tasks in tasks:
        straight.train_step(meta_tasks, 0.5)
    first = fresh()
    first.train_step(tasks[0], 0.5)
    checkpoint.save(str(tmp_path), 0, first)
    resumed = MAML(omniglot_model(5, filters=2, dtype='float64'), SGD(LEARNING_RATE), tail_shots=2)
    assert checkpoint.resume(str(tmp_path), resumed) == 1
    resumed.train_step(tasks[1], 0.5)
    for a, b in zip(straight.variables, resumed.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(resumed.optimizer_state['step']) == int(straight.optimizer_state['step'])
