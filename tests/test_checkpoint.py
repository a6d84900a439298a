"""Checkpoints: the original's format both ways, atomic writes, and exact resumption.

1. Round trip in-process: every weight (BN moving statistics included), the Adam slots, the
   beta powers and the step count come back exactly; the `checkpoint` file uses relative
   names, so a moved folder still loads; only the last MAX_TO_KEEP bundles are kept.
2. The original's own checkpoint (../shared/fixtures/original/ckpt_o15t) loads through the
   same loader (Adam and SGD models), and a model of another size is refused clearly.
3. Our checkpoints hold the original's variables (names, shapes, dtypes), and TF1 graphs
   restore them with `tf.compat.v1.train.Saver`: one built with get_variable, and the
   original's own graph imported from its .meta file.
4. Missing, truncated or empty checkpoints end in a one-line InputError.
5. A save that dies midway leaves the previous checkpoint the latest, and loadable.
6. --resume may lower the learning rate (recorded); --resume --pretrained is refused.
7. Faults: a folder in use by another run, leftovers of a killed save, a non-finite state,
   a corrupt bundle.
8. run_omniglot.py killed with SIGKILL (three times, at random moments and during a save)
   and continued with --resume ends with the same final checkpoint and accuracies as an
   uninterrupted run; after every kill the latest checkpoint is readable. Sent SIGTERM, it
   checkpoints the iteration under way and exits 143; resumed, it ends the same way too.
   --resume without a checkpoint starts from scratch.
9. A full disk while saving: one line, and the previous checkpoint stays the latest.

The command-line runs of 8 take most of the time (each process pays TensorFlow's import and
tracing), so they start in the background (tests/background.py) with the module's first
test, and their tests come after the in-process ones (but 9), which run while they do.
"""

import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from supervised_reptile.running import checkpoint, identity
from supervised_reptile.args import CHANGEABLE, argument_parser, parse
from supervised_reptile.errors import InputError
from supervised_reptile.models import omniglot_model
from supervised_reptile.optimizers import SGD, Adam
from supervised_reptile.reptile import Reptile
from supervised_reptile.tasks import task_of_batches

from background import FINAL_ITERATION, Background, read_all
from helpers import SCRIPTS, SHARED_DIR, assert_clean_stderr, assert_success, cli_env, truncate

BUNDLE = ('.data-00000-of-00001', '.index')


# --- helpers ---------------------------------------------------------------------------

def make_algo(num_classes=5, optimizer=None, seed=0):
    """An untrained Reptile on a fresh Omniglot model with weights drawn from `seed`."""
    keras.utils.set_random_seed(seed)
    return Reptile(omniglot_model(num_classes), optimizer or Adam(1e-3))


def random_tasks(rng, num_tasks=2, num_batches=3, batch=10, classes=5):
    """Tasks of random batches (images float32 [b,28,28], labels int32 [b])."""
    return [task_of_batches([(rng.random((batch, 28, 28), dtype=np.float32),
                              rng.integers(0, classes, batch).astype(np.int32)) for _ in range(num_batches)])
            for _ in range(num_tasks)]


def trained_algo(seed):
    """A Reptile after one meta-iteration on random data, with distinctive BN moving
    statistics (training never updates them, as in the original, so set them by hand)."""
    algo = make_algo(seed=seed)
    rng = np.random.default_rng(seed)
    algo.train_step(random_tasks(rng), 0.5)
    for weight in algo.model.weights:
        if not weight.trainable:
            weight.assign(rng.random(weight.shape).astype(np.float32) + 0.5)
    return algo


def randomized_algo(seed, num_classes=5):
    """A Reptile whose every checkpointed tensor (weights, BN statistics, Adam slots, beta
    powers) and step count hold distinct random values: cheaper than training (no tracing)."""
    algo = make_algo(num_classes, seed=seed)
    rng = np.random.default_rng(seed)
    for target in checkpoint.state_tensors(algo).values():
        target.assign(rng.uniform(0.1, 1.0, target.shape).astype(tf.as_dtype(target.dtype).as_numpy_dtype))
    algo.optimizer_state['step'].assign(int(rng.integers(1, 10 ** 6)))
    algo.optimizer_state['beta1_power'].assign(0.0)  # beta1 = 0: always 0, saved as the original's int32
    return algo


@pytest.fixture(scope='module')
def trained():
    """One Reptile after one real meta-iteration (shared: tracing the step is slow)."""
    return trained_algo(seed=1)


def snapshot(algo):
    """{original name: array} for everything a checkpoint holds, plus the step count."""
    values = {name: np.array(value) for name, value in checkpoint.state_tensors(algo).items()}
    values['step'] = np.array(algo.optimizer_state['step'])
    return values


def assert_same_state(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype, name
        assert np.array_equal(actual[name], value), name


def state_file_lines(directory):
    return (directory / 'checkpoint').read_text().splitlines()


def expected_state_lines(iterations):
    return ([f'model_checkpoint_path: "model.ckpt-{iterations[-1]}"']
            + [f'all_model_checkpoint_paths: "model.ckpt-{i}"' for i in iterations])


def bundle_files(iterations):
    return sorted(f'model.ckpt-{i}{suffix}' for i in iterations for suffix in BUNDLE)


def one_line_input_error(excinfo, *words):
    message = str(excinfo.value)
    assert '\n' not in message, message
    for word in words:
        assert word in message, f'{word!r} not in {message!r}'
    return message


@pytest.fixture(scope='module')
def cli_runs(omniglot_data, tmp_path_factory):
    """The module's command-line runs (see `Background`), on the real Omniglot small sets."""
    runs = Background(tmp_path_factory.mktemp('cli_runs'), omniglot_data)
    yield runs
    runs.stop()


@pytest.fixture(scope='module', autouse=True)
def _start_subprocesses_early(request):
    """Start the subprocess fixtures (`cli_runs`, `tf1_process`) with the module's first
    test when a selected test needs them, so they overlap with the in-process tests."""
    needed = set()
    for item in request.session.items:
        if getattr(item, 'module', None) is request.module:
            needed.update(item.fixturenames)
    if 'tf1_process' in needed:
        request.getfixturevalue('tf1_process')
    if 'cli_runs' in needed:
        request.getfixturevalue('cli_runs')


# --- 1. round trip ----------------------------------------------------------------------

def test_round_trip_restores_weights_bn_stats_adam_slots_beta_powers_and_step_exactly(trained, tmp_path):
    """save() then load() into a fresh model gives back every tensor bit for bit, and the
    `checkpoint` file names the bundle relatively, so the folder loads after a move."""
    algo = trained
    expected = snapshot(algo)
    assert int(expected['step']) == 6  # 2 tasks x 3 batches
    assert expected['beta2_power'] == np.float32(0.999) ** 7
    ck = tmp_path / 'ck'
    assert checkpoint.save(str(ck), 7, algo) == str(ck / 'model.ckpt-7')
    assert state_file_lines(ck) == expected_state_lines([7])
    assert sorted(os.listdir(ck)) == ['checkpoint'] + bundle_files([7])  # no .tmp-* left behind

    fresh = make_algo(seed=2)
    assert not np.array_equal(snapshot(fresh)['conv2d/kernel'], expected['conv2d/kernel'])
    assert checkpoint.load(str(ck), fresh) == str(ck / 'model.ckpt-7')
    assert_same_state(snapshot(fresh), expected)

    moved = tmp_path / 'elsewhere' / 'renamed'
    moved.parent.mkdir()
    shutil.move(str(ck), str(moved))
    again = make_algo(seed=3)
    assert checkpoint.load(str(moved), again) == str(moved / 'model.ckpt-7')
    assert_same_state(snapshot(again), expected)


def test_resume_restores_the_meta_iteration_and_pythons_random_state(tmp_path):
    """checkpoint.resume() continues after the saved meta-iteration with the random state
    of the moment of the save; without a checkpoint it starts at 0 and changes nothing."""
    algo = randomized_algo(seed=4)
    assert checkpoint.resume(str(tmp_path / 'none'), make_algo(seed=5)) == 0
    random.seed(123)
    random.random()
    saved_state = random.getstate()
    checkpoint.save(str(tmp_path / 'ck'), 41, algo)
    expected_next = random.random()
    random.seed(999)
    fresh = make_algo(seed=5)
    assert checkpoint.resume(str(tmp_path / 'ck'), fresh) == 42
    assert random.getstate() == saved_state
    assert random.random() == expected_next
    assert_same_state(snapshot(fresh), snapshot(algo))


def test_only_the_last_five_checkpoints_are_kept_and_listed(tmp_path):
    """After every save from the 1st to the 7th, the bundles on disk are exactly the last
    MAX_TO_KEEP (5) saved and the `checkpoint` file lists exactly them (deleting
    model.ckpt-1 spares model.ckpt-10/-11); re-saving an iteration does not list it twice,
    and no temporary file remains."""
    assert checkpoint.MAX_TO_KEEP == 5
    algo, ck = make_algo(), tmp_path / 'ck'
    iterations = [1, 2, 10, 11, 100, 110, 111]
    for count, i in enumerate(iterations, 1):
        checkpoint.save(str(ck), i, algo)
        kept = iterations[max(0, count - 5):count]
        assert state_file_lines(ck) == expected_state_lines(kept), count
        assert sorted(os.listdir(ck)) == ['checkpoint'] + bundle_files(kept), count
    checkpoint.save(str(ck), 111, algo)  # what a resumed run does after a kill mid-save
    assert state_file_lines(ck) == expected_state_lines(kept)
    assert sorted(os.listdir(ck)) == ['checkpoint'] + bundle_files(kept)
    assert tf.train.latest_checkpoint(str(ck)) == str(ck / 'model.ckpt-111')


# --- 2. the original's checkpoint --------------------------------------------------------

def test_originals_checkpoint_loads_weights_adam_slots_and_step(original_ckpt):
    """The original's Saver output loads through checkpoint.load: every weight (BN moving
    statistics included) and Adam slot equals the stored tensor, the beta powers too, and
    the step count is recovered from beta2_power (TF1 stores beta2^(t+1))."""
    algo = make_algo()
    prefix = checkpoint.load(str(original_ckpt), algo)
    assert prefix == str(original_ckpt / 'model.ckpt-2999')
    reader = tf.train.load_checkpoint(prefix)
    names = checkpoint.original_names(algo.model)
    assert len(names) == len(algo.model.weights) == 4 * 6 + 2
    assert names[:6] == ['conv2d/kernel', 'conv2d/bias', 'batch_normalization/gamma',
                         'batch_normalization/beta', 'batch_normalization/moving_mean',
                         'batch_normalization/moving_variance']
    for name, weight in zip(names, algo.model.weights):
        assert np.array_equal(weight.numpy(), reader.get_tensor(name)), name
    trainable = [n for n, w in zip(names, algo.model.weights) if w.trainable]
    assert len(trainable) == 4 * 4 + 2
    for slot in ('Adam', 'Adam_1'):
        for name, value in zip(trainable, algo.optimizer_state[slot]):
            assert np.array_equal(value.numpy(), reader.get_tensor(f'{name}/{slot}')), f'{name}/{slot}'
    for key in ('beta1_power', 'beta2_power'):
        assert np.array_equal(algo.optimizer_state[key].numpy(), reader.get_tensor(key)), key
    beta2_power = float(reader.get_tensor('beta2_power'))
    step = int(algo.optimizer_state['step'])
    # TF1 multiplies beta2_power by float32(0.999) once per step, starting from 0.999
    assert step == round(math.log(beta2_power) / math.log(float(np.float32(0.999)))) - 1
    # provenance.json: 3000 meta-iterations x meta-batch 5 x 5 inner iterations
    assert step == 3000 * 5 * 5


def test_originals_step_count_is_recovered_exactly(original_ckpt):
    """The original took 3000 x 5 x 5 = 75000 inner steps; float32(0.999)^75001 is exactly
    its beta2_power, so the recovered step count must be exactly 75000."""
    algo = make_algo()
    checkpoint.load(str(original_ckpt), algo)
    power = np.float32(0.999)
    for _ in range(75000):
        power = np.float32(power * np.float32(0.999))
    assert power == tf.train.load_checkpoint(str(original_ckpt / 'model.ckpt-2999')).get_tensor('beta2_power')
    assert int(algo.optimizer_state['step']) == 75000


def test_originals_checkpoint_loads_into_an_sgd_model(original_ckpt):
    """An SGD model (--sgd) takes the original's weights; it has no slots to fill."""
    algo = make_algo(optimizer=SGD(1e-3))
    checkpoint.load(str(original_ckpt), algo)
    reader = tf.train.load_checkpoint(str(original_ckpt / 'model.ckpt-2999'))
    for name, weight in zip(checkpoint.original_names(algo.model), algo.model.weights):
        assert np.array_equal(weight.numpy(), reader.get_tensor(name)), name


def test_originals_checkpoint_refuses_a_20_way_model(original_ckpt):
    """The 5-way checkpoint into a 20-way model: a one-line InputError naming the shapes
    and --classes, not a TF shape error."""
    with pytest.raises(InputError) as excinfo:
        checkpoint.load(str(original_ckpt), make_algo(num_classes=20))
    one_line_input_error(excinfo, 'dense/kernel', '[256, 5]', '[256, 20]', '--classes')


def test_resume_refuses_the_originals_checkpoint(original_ckpt):
    """--resume needs our meta-iteration and random state: the original's checkpoint is
    refused with a pointer to --pretrained."""
    with pytest.raises(InputError) as excinfo:
        checkpoint.resume(str(original_ckpt), make_algo())
    one_line_input_error(excinfo, 'cannot be resumed', '--pretrained')


# --- 3. TF1 tools read ours --------------------------------------------------------------

EXPECTED_VARIABLES = {  # name: (shape, dtype) as the original's graph defines them
    'conv2d/kernel': ([3, 3, 1, 64], tf.float32), 'conv2d/bias/Adam': ([64], tf.float32),
    'conv2d_3/kernel/Adam_1': ([3, 3, 64, 64], tf.float32), 'batch_normalization_3/moving_variance': ([64], tf.float32),
    'batch_normalization_1/gamma/Adam': ([64], tf.float32), 'dense/kernel': ([256, 5], tf.float32),
    'dense/bias/Adam_1': ([5], tf.float32), 'beta2_power': ([], tf.float32),
}

TF1_RESTORE = textwrap.dedent('''
    """Restore our checkpoint as the original's script does: a TF1 graph and tf.train.Saver.

    emulated: variables made with tf.compat.v1.get_variable under the original's names, then
    Saver(var_list={name: variable}). original_graph (when its .meta is given): the original's
    own graph and Saver, from import_meta_graph. Prints one JSON line {mode: outcome}."""
    import json
    import sys
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    directory, expected_npz, meta = sys.argv[1], sys.argv[2], (sys.argv[3:] or [None])[0]
    expected = np.load(expected_npz)
    prefix = tf.train.latest_checkpoint(directory)


    def restore(saver, variables):
        with tf.compat.v1.Session() as sess:
            try:
                saver.restore(sess, prefix)
            except tf.errors.OpError as exc:  # the line naming the tensor, if any
                lines = exc.message.splitlines()
                return next((line for line in lines if 'tensor_name' in line), lines[0]).strip()
            values = sess.run(variables)
        wrong = sorted(n for n in values if not np.array_equal(values[n], expected[n]))
        return f'restored {len(values)} variables, wrong: {wrong}'


    outcome = {}
    with tf.Graph().as_default():
        # as in the original's graph, beta1_power is int32 (it passed AdamOptimizer(beta1=0))
        variables = {name: tf.compat.v1.get_variable(
                         name, shape=expected[name].shape, initializer=tf.compat.v1.zeros_initializer(),
                         dtype=tf.int32 if name == 'beta1_power' else expected[name].dtype)
                     for name in expected.files}
        assert all(v.op.name == name for name, v in variables.items())
        outcome['emulated'] = restore(tf.compat.v1.train.Saver(var_list=variables), variables)
    if meta:
        with tf.Graph().as_default():
            saver = tf.compat.v1.train.import_meta_graph(meta)
            variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
            assert sorted(variables) == sorted(expected.files), sorted(variables)
            outcome['original_graph'] = restore(saver, variables)
    print(json.dumps(outcome))
''')


@pytest.fixture(scope='module')
def tf1_process(tmp_path_factory):
    """TF1_RESTORE started on one of our checkpoint folders (latest: 100), with the
    original's .meta when ../shared has it: (Popen, number of variables saved)."""
    root = tmp_path_factory.mktemp('tf1')
    ck, algo = root / 'ck', randomized_algo(seed=7)
    checkpoint.save(str(ck), 0, make_algo(seed=8))  # an older one: the latest must be used
    checkpoint.save(str(ck), 100, algo)
    expected = {name: value for name, value in snapshot(algo).items() if name != 'step'}
    np.savez(root / 'expected.npz', **expected)
    (root / 'tf1_restore.py').write_text(TF1_RESTORE)
    meta = SHARED_DIR / 'fixtures' / 'original' / 'ckpt_o15t' / 'model.ckpt-2999.meta'
    proc = subprocess.Popen([sys.executable, str(root / 'tf1_restore.py'), str(ck), str(root / 'expected.npz'),
                             *([str(meta)] if meta.is_file() else [])],
                            env=cli_env(PYTHONUNBUFFERED='1'), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    yield proc, len(expected)
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope='module')
def tf1_restore(tf1_process):
    """{mode: outcome} printed by TF1_RESTORE, plus 'count': the variables we saved."""
    proc, count = tf1_process
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, (stdout, stderr[-3000:])
    return dict(json.loads(stdout.splitlines()[-1]), count=count)


def test_our_checkpoint_lists_the_originals_names_shapes_and_dtypes(tmp_path):
    """tf.train.list_variables shows the original's variable names with its shapes and
    dtypes; only our extra `reptile/` entries come on top."""
    ck = tmp_path / 'ck'
    checkpoint.save(str(ck), 3, randomized_algo(seed=6))
    listed = dict(tf.train.list_variables(str(ck)))
    dtypes = tf.train.load_checkpoint(str(ck)).get_variable_to_dtype_map()
    for name, (shape, dtype) in EXPECTED_VARIABLES.items():
        assert listed.get(name) == shape, name
        assert dtypes[name] == dtype, name
    assert listed['beta1_power'] == []
    extras = sorted(n for n in listed if n.startswith('reptile/'))
    assert extras == sorted([checkpoint.ITERATION_KEY, checkpoint.RANDOM_KEY, checkpoint.STEP_KEY,
                             checkpoint.OPTIMIZER_KEY])
    assert len(listed) - len(extras) == 4 * 6 + 4 * 4 * 2 + 2 * 3 + 2  # weights, 2 slots, dense, powers


def _variables(directory, dtypes=True):
    dtype_map = tf.train.load_checkpoint(str(directory)).get_variable_to_dtype_map()
    return {(name, tuple(shape)) + ((dtype_map[name],) if dtypes else ())
            for name, shape in tf.train.list_variables(str(directory)) if not name.startswith('reptile/')}


def test_our_checkpoint_has_the_originals_variable_names_and_shapes(original_ckpt, tmp_path):
    """Apart from `reptile/...`, our bundle holds the same (name, shape) set as the
    original's: its Saver finds every variable it expects."""
    ck = tmp_path / 'ck'
    checkpoint.save(str(ck), 3, make_algo())
    assert _variables(ck, dtypes=False) == _variables(original_ckpt, dtypes=False)


def test_our_checkpoint_has_the_originals_variable_dtypes(original_ckpt, tmp_path):
    """... and the same dtypes, or the original's Saver refuses the tensor."""
    ck = tmp_path / 'ck'
    checkpoint.save(str(ck), 3, make_algo())
    assert _variables(ck) == _variables(original_ckpt)


@pytest.mark.slow
def test_tf1_saver_restores_our_checkpoint(tf1_restore):
    """A TF1 graph (tf.compat.v1, graph mode) with get_variable under the original's names
    restores our latest checkpoint with tf.compat.v1.train.Saver(var_list=...): every
    trainable weight, BN moving statistic, Adam slot and beta power gets our value."""
    assert tf1_restore['emulated'] == f'restored {tf1_restore["count"]} variables, wrong: []'


@pytest.mark.slow
def test_originals_own_saver_restores_our_checkpoint(original_ckpt, tf1_restore):
    """The original's graph and Saver, imported from its model.ckpt-2999.meta, restore our
    checkpoint: every global variable gets our value."""
    assert tf1_restore['original_graph'] == f'restored {tf1_restore["count"]} variables, wrong: []'


# --- 4. corrupt checkpoints --------------------------------------------------------------

def _break(kind, ck, algo):
    """Make `ck` unreadable in the way `kind` names; returns words the error must hold."""
    if kind == 'empty_folder':
        ck.mkdir()
        return ['no checkpoint in', str(ck)]
    if kind == 'missing_folder':
        return ['no checkpoint in', str(ck)]
    checkpoint.save(str(ck), 5, algo)
    if kind == 'checkpoint_file_names_a_missing_bundle':
        (ck / 'checkpoint').write_text('model_checkpoint_path: "model.ckpt-9"\n'
                                       'all_model_checkpoint_paths: "model.ckpt-5"\n'
                                       'all_model_checkpoint_paths: "model.ckpt-9"\n')
        return [str(ck)]
    if kind == 'truncated_index':
        truncate(ck / 'model.ckpt-5.index')
        return ['cannot read checkpoint', str(ck / 'model.ckpt-5')]
    if kind == 'truncated_data':
        truncate(ck / 'model.ckpt-5.data-00000-of-00001')
        return ['cannot read checkpoint', str(ck / 'model.ckpt-5')]
    if kind == 'empty_checkpoint_file':
        (ck / 'checkpoint').write_text('')
        return [str(ck)]
    raise ValueError(kind)


@pytest.mark.parametrize('kind', [
    'checkpoint_file_names_a_missing_bundle', 'truncated_index', 'empty_folder', 'missing_folder',
    'truncated_data', 'empty_checkpoint_file',
])
def test_unreadable_checkpoint_is_a_one_line_input_error(kind, tmp_path):
    """A checkpoint that cannot be read ends in InputError with a one-line message naming
    the folder or bundle, never a TensorFlow traceback."""
    algo = make_algo()
    ck = tmp_path / 'ck'
    words = _break(kind, ck, algo)
    with pytest.raises(InputError) as excinfo:
        checkpoint.load(str(ck), make_algo())
    one_line_input_error(excinfo, *words)


# --- 5. atomic writes --------------------------------------------------------------------

class SimulatedCrash(BaseException):
    """A kill: not an error the code could handle."""


@pytest.mark.parametrize('fail_at', ['SaveV2', 'rename_data', 'rename_index', 'replace_checkpoint_file'])
def test_save_dying_midway_keeps_the_previous_checkpoint_latest(fail_at, tmp_path, monkeypatch):
    """A save of iteration 200 that dies while writing the bundle, while renaming either
    file into place, or while replacing the `checkpoint` file leaves iteration 100 the
    latest, loadable with its own values; the next save then succeeds and cleans up."""
    ck = tmp_path / 'ck'
    algo = randomized_algo(seed=9)
    checkpoint.save(str(ck), 100, algo)
    at_100 = snapshot(algo)
    algo = randomized_algo(seed=10)  # the state 100 iterations later
    at_200 = snapshot(algo)
    assert not np.array_equal(at_200['dense/kernel'], at_100['dense/kernel'])

    if fail_at == 'SaveV2':
        real_save = tf.raw_ops.SaveV2

        def save_then_crash(prefix, **kwargs):  # a partly written temporary bundle
            real_save(prefix=prefix, **kwargs)
            truncate(tmp_path / 'ck' / (os.path.basename(prefix) + BUNDLE[0]))
            raise SimulatedCrash('killed while writing')
        monkeypatch.setattr(tf.raw_ops, 'SaveV2', save_then_crash)
    else:
        real_replace, calls = os.replace, []
        crash_on = ['rename_data', 'rename_index', 'replace_checkpoint_file'].index(fail_at)

        def replace_or_crash(src, dst, **kwargs):
            calls.append(os.path.basename(dst))
            if len(calls) - 1 == crash_on:
                raise SimulatedCrash(f'killed before renaming {src}')
            return real_replace(src, dst, **kwargs)
        monkeypatch.setattr(os, 'replace', replace_or_crash)

    with pytest.raises(SimulatedCrash):
        checkpoint.save(str(ck), 200, algo)
    monkeypatch.undo()

    assert tf.train.latest_checkpoint(str(ck)) == str(ck / 'model.ckpt-100')
    fresh = make_algo(seed=11)
    assert checkpoint.load(str(ck), fresh) == str(ck / 'model.ckpt-100')
    assert_same_state(snapshot(fresh), at_100)

    checkpoint.save(str(ck), 200, algo)  # the run, resumed, saves 200 again
    assert state_file_lines(ck) == expected_state_lines([100, 200])
    assert sorted(os.listdir(ck)) == ['checkpoint'] + bundle_files([100, 200])
    assert checkpoint.load(str(ck), fresh) == str(ck / 'model.ckpt-200')
    assert_same_state(snapshot(fresh), at_200)


# --- 6. --resume edge cases --------------------------------------------------------------

def test_resume_may_lower_the_learning_rate_and_run_json_records_it(tmp_path):
    """After a divergence the advice is --resume with a smaller learning rate: the one
    identity flag a resumed run may change, recorded with its history."""
    run = lambda lr, seed=0: identity.identity({'learning_rate': lr, 'seed': seed}, 'data', 'digest')
    identity.record(str(tmp_path), run(0.1))
    identity.check(str(tmp_path), run(0.01), True, CHANGEABLE)
    identity.record(str(tmp_path), run(0.01))
    recorded = json.loads((tmp_path / 'run.json').read_text())
    assert recorded['flags']['learning_rate'] == 0.01
    assert recorded['changes'] == [{'flag': 'learning_rate', 'from': 0.1, 'to': 0.01}]
    with pytest.raises(InputError, match='--seed is 1 but the run'):
        identity.check(str(tmp_path), run(0.01, seed=1), True, CHANGEABLE)


def test_resume_with_pretrained_is_refused(capsys):
    """--resume --pretrained is contradictory: the flag check run_omniglot.py and
    run_miniimagenet.py share exits with status 2 and one line naming both flags."""
    with pytest.raises(SystemExit) as excinfo:
        parse(argument_parser('data/omniglot'), ['--resume', '--pretrained'])
    assert excinfo.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and ': error:' in lines[0], lines
    assert '--resume' in lines[0] and '--pretrained' in lines[0], lines[0]


# --- 7. faults: concurrent runs, leftovers, divergence, corrupt bundles ------------------------

def test_leftovers_of_a_killed_save_are_removed_by_the_next_run(tmp_path):
    """What a save killed with SIGKILL leaves (the temporary bundle, TensorFlow's .tempstate
    file, the temporary state file) is removed when the next run takes the folder."""
    from supervised_reptile.running.lock import FolderLock
    ck = tmp_path / 'ck'
    checkpoint.save(str(ck), 1, make_algo())
    leftovers = ['.tmp-model.ckpt-2.index', '.tmp-model.ckpt-2.data-00000-of-00001.tempstate1234567',
                 '.tmp-checkpoint']
    for name in leftovers:
        (ck / name).write_bytes(b'half written')
    with FolderLock(str(ck)):
        assert sorted(os.listdir(ck)) == ['.lock', 'checkpoint'] + bundle_files([1])


LOCK_HOLDER = '''
import sys, time
from supervised_reptile.running.lock import FolderLock
with FolderLock(sys.argv[1]):
    print('locked', flush=True)
    time.sleep(60)
'''


def test_one_run_per_folder_and_sigkill_leaves_no_stale_lock(tmp_path):
    """While a process holds a folder, taking it is refused in one line naming that PID;
    once the holder is killed with SIGKILL the folder can be taken at once."""
    from supervised_reptile.running.lock import FolderLock
    ck = tmp_path / 'ck'
    holder = subprocess.Popen([sys.executable, '-c', LOCK_HOLDER, str(ck)], stdout=subprocess.PIPE, text=True,
                              env=cli_env(PYTHONPATH=str(SCRIPTS['omniglot'].parent)))
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(InputError) as excinfo:
            with FolderLock(str(ck)):
                pass
        one_line_input_error(excinfo, str(ck), 'in use by another run', f'PID {holder.pid}')
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with FolderLock(str(ck)):
        assert (ck / '.lock').read_text().strip() == str(os.getpid())


def test_a_non_finite_state_is_never_saved(tmp_path):
    """save refuses a model or optimizer state holding NaN or infinity (Diverged, naming
    the tensor) and writes nothing; non_finite names the first such tensor."""
    from supervised_reptile.errors import Diverged
    algo = make_algo()
    assert checkpoint.non_finite(algo) is None
    slot = checkpoint.state_tensors(algo)['conv2d_1/kernel/Adam_1']
    slot.assign(tf.fill(slot.shape, float('inf')))
    assert checkpoint.non_finite(algo) == 'conv2d_1/kernel/Adam_1'
    with pytest.raises(Diverged, match='conv2d_1/kernel/Adam_1 is not finite at meta-iteration 7'):
        checkpoint.save(str(tmp_path / 'ck'), 7, algo)
    assert not (tmp_path / 'ck').exists()


def test_a_corrupt_checkpoint_message_says_how_to_fall_back(tmp_path):
    """The message for an unreadable bundle names the `checkpoint` file to edit (deleting
    the bundle alone would leave the index pointing at it)."""
    ck = tmp_path / 'ck'
    checkpoint.save(str(ck), 5, make_algo())
    truncate(ck / 'model.ckpt-5.data-00000-of-00001')
    with pytest.raises(InputError) as excinfo:
        checkpoint.load(str(ck), make_algo())
    one_line_input_error(excinfo, str(ck / 'model.ckpt-5'), f'name an earlier model.ckpt-N in {ck}/checkpoint')


# --- 8. the command-line runs: SIGKILL, SIGTERM and --resume from nothing, for real ---------
# (after the in-process tests, which run while they do)

def _lines(stdout, prefix):
    return [line for line in stdout.splitlines() if line.startswith(prefix)]


@pytest.mark.slow
def test_resume_after_sigkill_ends_exactly_like_an_uninterrupted_run(cli_runs):
    """run_omniglot.py --resume, killed with SIGKILL three times (0-0.5 s after
    model.ckpt-50 and -100 appear, then during a save or right after the final one), ends
    with the uninterrupted run's final checkpoint (every float tensor within 1e-6; in fact
    equal) and accuracy lines. Every kill leaves a fully readable latest checkpoint, and
    each restart prints `Resuming at meta-iteration N...` with N = that checkpoint + 1."""
    runs = cli_runs.finish_chain()
    code, ref_out, ref_err = cli_runs.reference.result()
    assert_success(subprocess.CompletedProcess([], code, ref_out, ref_err))
    story = [(r['tag'], r['start'], r.get('kill'), r.get('latest_after'), r.get('returncode')) for r in runs]

    assert len(runs) == 4 and all('kill' in r for r in runs[:3]), story
    assert runs[-1]['returncode'] == 0, (story, runs[-1]['run'].stdout, runs[-1]['run'].stderr)
    assert_clean_stderr(subprocess.CompletedProcess([], 0, '', runs[-1]['run'].stderr))
    for before, after in zip(runs, runs[1:]):
        assert before['latest_after'] is not None, story
        assert after['start'] == before['latest_after'] + 1, story
    assert runs[0]['latest_after'] >= 50 and runs[1]['latest_after'] >= 100, story
    for record in runs:
        lines = record['run'].stdout.splitlines()
        expected = f'Resuming at meta-iteration {record["start"]}...' if record['start'] else 'Training...'
        assert lines and lines[0] == expected, (story, record['run'].stdout)

    # Every evaluation line printed during training, by whichever run, is the reference's.
    reference_batches = {line.split(':')[0]: line for line in _lines(ref_out, 'batch ')}
    for record in runs:
        for line in _lines(record['run'].stdout, 'batch '):
            assert reference_batches[line.split(':')[0]] == line, (story, record['tag'], line)
    final_out = runs[-1]['run'].stdout
    for name in ('Train accuracy:', 'Test accuracy:'):
        assert len(_lines(ref_out, name)) == 1, ref_out
        assert _lines(final_out, name) == _lines(ref_out, name), (story, final_out, ref_out)

    reference_ck = cli_runs.reference.cwd / 'ck'
    resumed_ck = cli_runs.chain.ck
    for ck in (reference_ck, resumed_ck):
        assert tf.train.latest_checkpoint(str(ck)) == str(ck / f'model.ckpt-{FINAL_ITERATION}')
    assert state_file_lines(resumed_ck) == state_file_lines(reference_ck)
    reference = read_all(str(reference_ck / f'model.ckpt-{FINAL_ITERATION}'))
    resumed = read_all(str(resumed_ck / f'model.ckpt-{FINAL_ITERATION}'))
    assert sorted(resumed) == sorted(reference)
    floats = [n for n, v in reference.items() if np.issubdtype(np.asarray(v).dtype, np.floating)]
    assert len(floats) == 26 + 18 * 2 + 1, floats  # weights, Adam slots, beta2_power (beta1_power: int32)
    worst = max(float(np.max(np.abs(resumed[n] - reference[n]), initial=0)) for n in floats)
    assert worst <= 1e-6, (worst, story)
    for name in set(reference) - set(floats):  # step count, meta-iteration, random state
        assert resumed[name] == reference[name], name


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_iteration_and_resume_ends_identically(cli_runs):
    """SIGTERM once meta-iteration 75's line is printed: the run ends that iteration, writes
    its checkpoint (not only the last multiple of --checkpoint-interval 50), prints one line and exits 143;
    --resume then ends with exactly the uninterrupted run's final checkpoint."""
    preempted = cli_runs.finish_preempted()
    code, out, err = preempted.stopped
    assert code == 143, (code, out, err)
    [line] = err.splitlines()
    match = re.fullmatch(r'stopped by SIGTERM after meta-iteration (\d+), with a checkpoint of it in ck: '
                         r'continue with --resume', line)
    assert match, line
    iteration = int(match.group(1))
    assert 75 <= iteration < 100, line  # the signal came during iteration 75 (or just after its line)
    assert preempted.latest_after_stop == str(preempted.ck / f'model.ckpt-{iteration}')
    assert 'Evaluating...' not in out

    code, out, err = preempted.resumed
    assert_success(subprocess.CompletedProcess([], code, out, err))
    assert out.splitlines()[0] == f'Resuming at meta-iteration {iteration + 1}...'
    reference = read_all(str(cli_runs.reference.cwd / 'ck' / f'model.ckpt-{FINAL_ITERATION}'))
    resumed = read_all(str(preempted.ck / f'model.ckpt-{FINAL_ITERATION}'))
    assert sorted(resumed) == sorted(reference)
    for name, value in reference.items():
        assert np.array_equal(resumed[name], value), name
    assert _lines(out, 'Test accuracy:') == _lines(cli_runs.reference.result()[1], 'Test accuracy:')


@pytest.mark.slow
def test_resume_without_checkpoint_starts_from_scratch(cli_runs, tmp_path):
    """--resume where there is no checkpoint yet starts from iteration 0: the interrupted
    run's first start (its folder does not exist) prints 'Training...'; checkpoint.resume
    on an empty or missing folder returns 0 and leaves the model untouched."""
    algo = randomized_algo(seed=12)
    before = snapshot(algo)
    (tmp_path / 'empty').mkdir()
    for folder in (tmp_path / 'empty', tmp_path / 'missing'):
        assert checkpoint.resume(str(folder), algo) == 0
    assert_same_state(snapshot(algo), before)
    assert not (tmp_path / 'missing').exists()
    first = cli_runs.finish_chain()[0]
    assert first['start'] == 0
    lines = first['run'].stdout.splitlines()
    assert lines[0] == 'Training...' and lines[1].startswith('batch 0: '), first['run'].stdout


# --- 9. a full disk (last: its RLIMIT_FSIZE holds for this whole process, so a command-line run
# started meanwhile by tests/background.py would inherit it) -------------------------------------

def _fill_limit(limit):
    """Set this process's RLIMIT_FSIZE soft limit (SIGXFSZ ignored: writes past it fail
    with EFBIG, as on a full disk); returns a function that restores both."""
    import resource
    previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, previous_limit[1]))

    def restore():
        resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
        signal.signal(signal.SIGXFSZ, previous_handler)
    return restore


@pytest.fixture(params=['rlimit_fsize', 'tmpfs'])
def full_disk(request, tmp_path):
    """(folder, function making it full): a file-size limit of 10 kB for this process, or a
    tmpfs of 2 MB, room for one 1.4 MB checkpoint, not two (skipped where mounting is not allowed)."""
    folder = tmp_path / 'ck'
    if request.param == 'rlimit_fsize':
        restore = []
        yield folder, lambda: restore.append(_fill_limit(10_000))
        for undo in restore:
            undo()
        return
    folder.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(folder)],
                      capture_output=True).returncode:
        pytest.skip('cannot mount a tmpfs here (needs root)')
    yield folder, lambda: None  # the second save fills it
    subprocess.run(['umount', str(folder)], check=True)


def test_full_disk_is_one_line_and_keeps_the_previous_checkpoint(full_disk):
    """A save that runs out of space ends in a one-line InputError naming the folder and the
    reason, leaves no temporary file, and the previous checkpoint stays the latest."""
    folder, fill = full_disk
    algo = randomized_algo(seed=21)
    checkpoint.save(str(folder), 1, algo)
    at_1 = snapshot(algo)
    fill()
    with pytest.raises(InputError) as excinfo:
        checkpoint.save(str(folder), 2, randomized_algo(seed=22))
    one_line_input_error(excinfo, f'cannot write a checkpoint in {folder}', 'earlier checkpoints are intact')
    assert any(reason in str(excinfo.value) for reason in ('No space left', 'too large')), excinfo.value
    assert sorted(os.listdir(folder)) == ['checkpoint'] + bundle_files([1])
    fresh = make_algo(seed=3)
    assert checkpoint.load(str(folder), fresh) == str(folder / 'model.ckpt-1')
    assert_same_state(snapshot(fresh), at_1)
