"""Bad input to run_omniglot.py / run_miniimagenet.py: exit status 2, no traceback, and one
line of ours on stderr naming the problem (and the fix).

The cases run when the module's first test runs: most in this process, through the tools'
own entry points; those in AS_SUBPROCESSES as subprocesses, two to four at a time. All
data is generated in a temporary folder, so this module needs nothing from ../shared.
"""

import functools
import os
import pathlib
import random
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import pytest

from supervised_reptile.errors import EXIT_STATUSES
from supervised_reptile.running.lock import FolderLock

from helpers import (assert_input_error, assert_success, fake_miniimagenet, fake_omniglot, our_stderr_lines, run_cli,
                     run_in_process, run_parallel, truncate)

TINY_EVAL = ['--eval-batch', 5, '--eval-iters', 2, '--eval-samples', 2]
TINY_TRAIN = ['--inner-iters', 2, '--meta-iters', 1, '--eval-interval', 1, *TINY_EVAL]
RUN_FLAGS = ['--data-dir', 'chars16', '--train-chars', 6, '--shots', 1, *TINY_TRAIN]  # the flags run_dir holds


def on(d, *args):
    """`args` with a data folder name (as in RUN_FLAGS) replaced by its path in `d`."""
    return [d[a] if isinstance(a, str) and a in d else a for a in args]


def pretrained(d, folder):
    """Flags evaluating the checkpoint d[folder] as a 5-way model on the chars16 data."""
    return on(d, '--data-dir', 'chars16', '--train-chars', 6, '--shots', 1, '--pretrained', '--checkpoint', folder,
              *TINY_EVAL)


def resumed(d, folder):
    """Flags resuming the run in d[folder] (a copy of run_dir's identity)."""
    return on(d, *RUN_FLAGS, '--checkpoint', folder, '--resume')


def fewshot(d, *args):
    return on(d, '--model', 'npz_good', *args)


@dataclass
class Case:
    """One CLI run: `args(d)` and `words(d)` get the data paths `d` (see the `data` fixture);
    `words` must all appear in the single error line (None: the run must succeed)."""
    id: str
    which: str
    args: callable
    words: callable = None


CASES = [
    # Missing or empty data folders.
    Case('omniglot_missing_data_dir', 'omniglot', lambda d: ['--data-dir', 'nope'],
         lambda d: ['nope', 'not found', 'fetch_data.sh', '--data-dir']),
    Case('omniglot_empty_data_dir', 'omniglot', lambda d: ['--data-dir', d['empty']],
         lambda d: [str(d['empty']), 'character', 'fetch_data.sh']),
    Case('miniimagenet_missing_data_dir', 'miniimagenet', lambda d: ['--data-dir', 'nope'],
         lambda d: ['nope', 'not found', 'fetch_data.sh', '--data-dir']),
    Case('miniimagenet_empty_data_dir', 'miniimagenet', lambda d: ['--data-dir', d['empty']],
         lambda d: [str(d['empty'] / 'train'), 'not found', 'fetch_data.sh']),
    Case('miniimagenet_splits_without_classes', 'miniimagenet', lambda d: ['--data-dir', d['mini_no_classes']],
         lambda d: [str(d['mini_no_classes'] / 'train'), 'no class folders', 'fetch_data.sh']),

    # Too few images per class, too few classes per split.
    Case('fewer_images_than_train_shots', 'omniglot',
         lambda d: ['--data-dir', d['three_pngs'], '--train-chars', 5, '--shots', 1, '--train-shots', 5, *TINY_TRAIN],
         lambda d: [str(d['three_pngs']), 'has 3 images', 'need 5', '--train-shots']),
    Case('fewer_images_than_shots_plus_one_pretrained', 'omniglot',
         lambda d: ['--data-dir', d['three_pngs'], '--train-chars', 5, '--shots', 3, '--pretrained',
                    '--checkpoint', d['ckpt_5way'], *TINY_EVAL],
         lambda d: [str(d['three_pngs']), 'has 3 images', 'need 4', '--shots']),
    Case('fewer_images_than_shots_plus_one_training', 'omniglot',
         lambda d: ['--data-dir', d['three_pngs'], '--train-chars', 5, '--shots', 3, '--train-shots', 2,
                    *TINY_TRAIN],
         lambda d: [str(d['three_pngs']), 'has 3 images', 'need 4', '--shots']),
    Case('more_classes_than_test_characters', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 14, '--classes', 5, '--shots', 1, *TINY_TRAIN],
         lambda d: ['test split has 2 classes', '--classes 5']),
    Case('more_classes_than_validation_classes', 'miniimagenet',
         lambda d: ['--data-dir', d['mini_small_val'], '--classes', 5, '--shots', 1, *TINY_TRAIN],
         lambda d: ['validation split has 3 classes', '--classes 5']),

    # Impossible counts and flag combinations.
    Case('zero_shots', 'omniglot', lambda d: ['--shots', 0], lambda d: ['--shots', 'at least 1', 'got 0']),
    Case('negative_meta_batch', 'omniglot', lambda d: ['--meta-batch', -1],
         lambda d: ['--meta-batch', 'at least 1', 'got -1']),
    Case('zero_inner_iters', 'miniimagenet', lambda d: ['--inner-iters', 0],
         lambda d: ['--inner-iters', 'at least 1', 'got 0']),
    Case('zero_eval_samples', 'omniglot', lambda d: ['--eval-samples', 0],
         lambda d: ['--eval-samples', 'at least 1', 'got 0']),
    Case('foml_tail_without_foml', 'omniglot', lambda d: ['--foml-tail', 2],
         lambda d: ['--foml-tail', 'add --foml']),
    Case('foml_tail_not_below_train_shots', 'omniglot', lambda d: ['--foml', '--foml-tail', 5, '--train-shots', 5],
         lambda d: ['--foml-tail', 'below the training shots (5)', 'got 5']),

    # Unreadable images: every class of the split is sampled, every image of a class read.
    Case('corrupt_png', 'omniglot',
         lambda d: ['--data-dir', d['corrupt_omniglot'], '--train-chars', 5, '--shots', 1, '--train-shots', 2,
                    *TINY_TRAIN],
         lambda d: ['cannot read image', str(d['corrupt_png'])]),
    Case('corrupt_jpeg', 'miniimagenet',
         lambda d: ['--data-dir', d['corrupt_mini'], '--shots', 1, '--train-shots', 2, *TINY_TRAIN],
         lambda d: ['cannot read image', str(d['corrupt_jpeg'])]),

    # Checkpoints that cannot be restored.
    Case('pretrained_empty_checkpoint_dir', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--pretrained',
                    '--checkpoint', d['empty'], *TINY_EVAL],
         lambda d: ['no checkpoint in', str(d['empty']), '"checkpoint" file']),
    Case('pretrained_checkpoint_file_without_bundle', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--pretrained',
                    '--checkpoint', d['ckpt_dangling'], *TINY_EVAL],
         lambda d: [str(d['ckpt_dangling']), 'model.ckpt-7', 'files are missing']),
    Case('pretrained_checkpoint_for_other_classes', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--classes', 10,
                    '--pretrained', '--checkpoint', d['ckpt_3way'], *TINY_EVAL],
         lambda d: ['3-way', '10-way', '--classes']),
    Case('sgd_checkpoint_without_sgd', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--pretrained',
                    '--checkpoint', d['ckpt_sgd'], *TINY_EVAL],
         lambda d: [str(d['ckpt_sgd']), 'no Adam state', 'add --sgd']),
    Case('webdemo_model_with_a_wrong_shape', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--classes', 3, '--pretrained',
                    '--checkpoint', d['npz_wrong_shape'], *TINY_EVAL],
         lambda d: [str(d['npz_wrong_shape']), 'conv1/kernel', 'not the published']),
    Case('truncated_webdemo_model', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--classes', 3, '--pretrained',
                    '--checkpoint', d['npz_truncated'], *TINY_EVAL],
         lambda d: ['cannot read web-demo parameters', str(d['npz_truncated'])]),

    # Flags that are out of range or not numbers.
    Case('seed_beyond_32_bits', 'omniglot', lambda d: ['--seed', 8589934592],
         lambda d: ['--seed', 'at most 4294967295', '8589934592']),
    Case('negative_seed', 'miniimagenet', lambda d: ['--seed', -1], lambda d: ['--seed', '-1']),
    Case('nan_learning_rate', 'omniglot', lambda d: ['--learning-rate', 'nan'],
         lambda d: ['--learning-rate', 'finite', 'nan']),
    Case('infinite_meta_step', 'miniimagenet', lambda d: ['--meta-step', 'inf'],
         lambda d: ['--meta-step', 'finite', 'inf']),
    Case('bfloat16_with_sgd_foml', 'omniglot', lambda d: ['--sgd', '--foml', '--precision', 'bfloat16'],
         lambda d: ['--precision bfloat16', '--sgd --foml', 'float32']),
    Case('maml_with_foml', 'omniglot', lambda d: ['--maml', '--foml', '--sgd'],
         lambda d: ['--maml', '--foml', 'one of them']),
    Case('maml_without_sgd', 'miniimagenet', lambda d: ['--maml'], lambda d: ['--maml', 'SGD', 'add --sgd']),
    Case('maml_in_bfloat16', 'omniglot', lambda d: ['--maml', '--sgd', '--precision', 'bfloat16'],
         lambda d: ['--maml', 'bfloat16', '--precision float32']),
    Case('maml_distributed', 'omniglot',
         lambda d: ['--maml', '--sgd', '--parallel-tasks', '--distribute', 'mirrored'],
         lambda d: ['--maml', '--distribute', '--parallel-tasks']),
    Case('zero_eval_parallel', 'omniglot', lambda d: ['--eval-parallel', 0],
         lambda d: ['--eval-parallel', 'at least 1']),
    Case('cpu_replicas_without_mirrored', 'omniglot', lambda d: ['--cpu-replicas', 2],
         lambda d: ['--cpu-replicas', '--distribute mirrored']),
    Case('multi_worker_without_a_cluster', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--parallel-tasks', '--meta-batch', 2,
                    '--distribute', 'multi-worker', *TINY_TRAIN],
         lambda d: ['multi-worker', 'TF_CONFIG', 'SLURM']),
    Case('distribute_one_replica_without_parallel_tasks', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--distribute', 'mirrored',
                    *TINY_TRAIN],
         lambda d: ['--distribute', 'exact sequential mode', '--parallel-tasks']),
    Case('results_naming_a_folder', 'omniglot',
         lambda d: on(d, *RUN_FLAGS, '--results', 'empty'), lambda d: ['--results', str(d['empty']), 'is a folder']),
    Case('results_in_a_missing_folder', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--results', 'nope/r.jsonl',
                    *TINY_TRAIN],
         lambda d: ['--results', 'nope/r.jsonl']),

    # A training run's folder: one run per folder, resumed with the flags it started with.
    Case('new_run_in_a_folder_holding_one', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--checkpoint', d['run_dir'],
                    *TINY_TRAIN],
         lambda d: [str(d['run_dir']), 'already holds a training run', '--resume']),
    Case('resume_with_another_seed', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--checkpoint', d['run_dir'],
                    '--resume', '--seed', 1, *TINY_TRAIN],
         lambda d: ['--seed is 1', 'started with --seed 0', str(d['run_dir'])]),
    Case('resume_with_maml', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--checkpoint', d['run_dir'],
                    '--resume', '--maml', '--sgd', *TINY_TRAIN],
         lambda d: ['--maml is True', 'started with --maml False', str(d['run_dir'])]),
    Case('resume_with_another_data_set', 'omniglot',
         lambda d: ['--data-dir', d['chars17'], '--train-chars', 6, '--shots', 1, '--checkpoint', d['run_dir'],
                    '--resume', *TINY_TRAIN],
         lambda d: ['--data-dir', str(d['chars17']), 'other data', str(d['run_dir'])]),
    Case('folder_in_use_by_another_run', 'omniglot', lambda d: on(d, *RUN_FLAGS, '--checkpoint', 'locked', '--resume'),
         lambda d: [str(d['locked']), 'in use by another run', f'PID {os.getpid()}']),
    Case('checkpoint_folder_under_proc', 'omniglot', lambda d: on(d, *RUN_FLAGS, '--checkpoint', '/proc/ck'),
         lambda d: ['/proc/ck', 'writable --checkpoint']),
    Case('checkpoint_folder_on_a_read_only_mount', 'omniglot',
         lambda d: on(d, *RUN_FLAGS, '--checkpoint', str(d['read_only'] / 'ck')),
         lambda d: [str(d['read_only'] / 'ck'), 'Read-only file system', 'writable --checkpoint']),
    Case('checkpoint_folder_is_a_file', 'omniglot', lambda d: on(d, *RUN_FLAGS, '--checkpoint', 'a_file'),
         lambda d: [str(d['a_file']), 'writable --checkpoint']),

    # Damaged or crafted checkpoints: refused before anything of theirs is used or allocated.
    Case('resume_negative_meta_iteration', 'omniglot', lambda d: resumed(d, 'negative_iteration'),
         lambda d: ['reptile/meta_iteration = -50', 'not a count']),
    Case('resume_string_meta_iteration', 'omniglot', lambda d: resumed(d, 'string_iteration'),
         lambda d: ['reptile/meta_iteration', 'string', 'not a count']),
    Case('resume_random_state_not_json', 'omniglot', lambda d: resumed(d, 'random_state_not_json'),
         lambda d: ['damaged reptile/python_random_state', 'JSONDecodeError']),
    Case('resume_random_state_not_a_state', 'omniglot', lambda d: resumed(d, 'random_state_not_a_state'),
         lambda d: ['damaged reptile/python_random_state']),
    Case('pretrained_rank_1_conv_kernel', 'omniglot', lambda d: pretrained(d, 'rank_1_kernel'),
         lambda d: ['no Reptile model', 'conv2d/kernel [576]']),
    Case('pretrained_scalar_dense_bias', 'omniglot', lambda d: pretrained(d, 'scalar_bias'),
         lambda d: ['no Reptile model', 'dense/bias []']),
    Case('pretrained_string_weights', 'omniglot', lambda d: pretrained(d, 'string_weights'),
         lambda d: ['dense/kernel as string', 'not floating point']),
    Case('pretrained_integer_weights', 'omniglot', lambda d: pretrained(d, 'integer_weights'),
         lambda d: ['dense/kernel as int32', 'not floating point']),
    Case('pretrained_billion_element_bias', 'omniglot', lambda d: pretrained(d, 'huge_bias'),
         lambda d: ['cannot read checkpoint', 'its index lists', 'name an earlier model.ckpt-N']),
    Case('pretrained_nan_weights', 'omniglot', lambda d: pretrained(d, 'nan_weights'),
         lambda d: ['non-finite', 'dense/kernel', 'diverged']),
    *[Case(f'webdemo_model_of_{kind}', 'omniglot',
           lambda d, kind=kind: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--classes', 3,
                                 '--pretrained', '--checkpoint', d[f'npz_{kind}'], *TINY_EVAL],
           lambda d, kind=kind: [str(d[f'npz_{kind}']), 'not floating point'])
      for kind in ('str', 'complex64', 'bool', 'int64')],
    Case('npy_renamed_npz', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--classes', 3, '--pretrained',
                    '--checkpoint', d['npy_as_npz'], *TINY_EVAL],
         lambda d: ['cannot read web-demo parameters', str(d['npy_as_npz'])]),

    # Data trees with something else where a folder should be.
    Case('file_where_a_character_folder_should_be', 'omniglot',
         lambda d: ['--data-dir', d['file_character'], '--train-chars', 5, '--shots', 1, *TINY_TRAIN],
         lambda d: [str(d['file_character'] / 'Alphabet' / 'character99'), 'must be a folder']),

    # The tools.
    Case('fewshot_0d_npy', 'fewshot', lambda d: fewshot(d, '--images', 'npy_0d'), lambda d: ['0-d array', '.npy']),
    Case('fewshot_nan_images', 'fewshot', lambda d: fewshot(d, '--images', 'npy_nan'),
         lambda d: [str(d['npy_nan']), 'NaN or infinite']),
    Case('fewshot_npz_as_images', 'fewshot', lambda d: fewshot(d, '--images', 'npz_good'),
         lambda d: [str(d['npz_good']), 'no single array']),
    Case('fewshot_save_tensors_into_a_folder', 'fewshot',
         lambda d: fewshot(d, '--images', 'npy_good', '--save-tensors', 'empty'),
         lambda d: [str(d['empty']), 'name a .npy file']),
    Case('fewshot_save_tensors_without_npy', 'fewshot',
         lambda d: fewshot(d, '--images', 'npy_good', '--save-tensors', 'stack'),
         lambda d: ['stack', 'name a .npy file']),
    Case('export_tf1_onto_a_file', 'export', lambda d: on(d, 'npz_good', '--tf1', 'a_file'),
         lambda d: ['--tf1', str(d['a_file']), 'is a file']),
    Case('export_keras_into_a_missing_folder', 'export', lambda d: on(d, 'npz_good', '--keras', 'nope/m.keras'),
         lambda d: ['--keras nope/m.keras', 'folder does not exist']),
]

DIVERGING = [
    # A step size so large that the weights overflow at the first meta-iteration.
    Case('training_with_learning_rate_1e30', 'omniglot',
         lambda d: on(d, *RUN_FLAGS, '--learning-rate', 1e30, '--checkpoint', 'ck'),
         lambda d: ['diverged at meta-iteration 0', 'is not finite', 'no checkpoint was written', 'smaller --learning-rate']),
    Case('fewshot_with_learning_rate_1e30', 'fewshot',
         lambda d: ['--model', d['ckpt_3way'], '--images', d['npy_good'], '--learning-rate', 1e30],
         lambda d: ['fine-tuning diverged', 'smaller --learning-rate']),
]

LEGAL = [
    # Without --replacement an inner batch may exceed the task: batches cycle through
    # reshuffles of its samples.
    Case('inner_batch_larger_than_task', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--train-shots', 2,
                    '--inner-batch', 50, '--checkpoint', 'ck', *TINY_TRAIN]),
    # MAML with a separate last batch, tasks side by side.
    Case('maml_with_a_tail_in_parallel', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--train-shots', 2,
                    '--maml', '--sgd', '--foml-tail', 1, '--parallel-tasks', '--meta-batch', 2, '--checkpoint', 'ck',
                    *TINY_TRAIN]),
]

BY_ID = {case.id: case for case in CASES + LEGAL + DIVERGING}


def _save_checkpoint(directory, num_classes, sgd=False):
    """A real checkpoint of an untrained `num_classes`-way Omniglot model."""
    from supervised_reptile.running import checkpoint
    from supervised_reptile.models import omniglot_model
    from supervised_reptile.optimizers import inner_optimizer
    from supervised_reptile.reptile import Reptile
    checkpoint.save(str(directory), 0, Reptile(omniglot_model(num_classes), inner_optimizer(1e-3, sgd)))


def _webdemo_like(path, wrong_shape=False, dtype=np.float32):
    """An .npz laid out as the web demo's (3-way, 24 filters), optionally with one kernel
    of the wrong shape, or arrays of another type."""
    shapes = {'conv0/kernel': (3, 3, 1, 24), 'dense/kernel': (96, 3), 'dense/bias': (3,)}
    shapes.update({f'conv{i}/kernel': (3, 3, 24, 24) for i in (1, 2, 3)})
    shapes.update({f'conv{i}/{w}': (24,) for i in range(4) for w in ('gamma', 'beta')})
    if wrong_shape:
        shapes['conv1/kernel'] = (3, 3, 24, 25)
    arrays = {key: np.ones(shape, dtype) for key, shape in shapes.items()}
    arrays.update({f'{key}/adam_v': value for key, value in arrays.items()})
    np.savez(path, **arrays)
    return path


def _crafted(directory, source, run_dir, changes):
    """A copy of the checkpoint in `source` (and of run_dir's run.json) with the tensors in
    `changes` replaced: {name: value, or (value, shape-and-slice spec)}. A slice spec makes
    the index claim a larger tensor than the data holds, as a crafted file can."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(source / 'model.ckpt-0'))
    tensors = {name: (reader.get_tensor(name), '') for name in reader.get_variable_to_shape_map()}
    tensors.update({name: value if isinstance(value, tuple) else (value, '') for name, value in changes.items()})
    directory.mkdir()
    tf.raw_ops.SaveV2(prefix=str(directory / 'model.ckpt-0'), tensor_names=list(tensors),
                      shape_and_slices=[spec for _, spec in tensors.values()],
                      tensors=[tf.constant(value) for value, _ in tensors.values()])
    (directory / 'checkpoint').write_text('model_checkpoint_path: "model.ckpt-0"\n')
    shutil.copy(run_dir / 'run.json', directory)
    return directory


CRAFTED = {  # folder: the tensors replaced in a real 5-way checkpoint
    'negative_iteration': {'reptile/meta_iteration': np.int64(-50)},
    'string_iteration': {'reptile/meta_iteration': b'12'},
    'random_state_not_json': {'reptile/python_random_state': b'{not json'},
    'random_state_not_a_state': {'reptile/python_random_state': b'[3, [1, 2], null]'},
    'rank_1_kernel': {'conv2d/kernel': np.zeros(576, np.float32)},
    'scalar_bias': {'dense/bias': np.float32(0)},
    'string_weights': {'dense/kernel': np.full((256, 5), b'x')},
    'integer_weights': {'dense/kernel': np.zeros((256, 5), np.int32)},
    'huge_bias': {'dense/bias': (np.zeros(5, np.float32), '1000000000 0,5')},
    'nan_weights': {'dense/kernel': np.full((256, 5), np.nan, np.float32)},
}


@pytest.fixture(scope='module')
def read_only_dir(tmp_path_factory):
    """A read-only tmpfs; skips the cases that need it where mounting is not allowed."""
    path = tmp_path_factory.mktemp('read_only')
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', str(path)], capture_output=True).returncode:
        yield None
        return
    yield path
    subprocess.run(['umount', str(path)], check=True)


@pytest.fixture(scope='module')
def data(tmp_path_factory, read_only_dir):
    """Generated data trees and checkpoints, by name."""
    from supervised_reptile.omniglot import read_dataset, split_dataset

    root = tmp_path_factory.mktemp('bad_input')
    d = {'root': root, 'empty': root / 'empty'}
    d['empty'].mkdir()

    d['mini_no_classes'] = root / 'mini_no_classes'
    for split in ('train', 'val', 'test'):
        (d['mini_no_classes'] / split).mkdir(parents=True)
    d['mini_small_val'] = fake_miniimagenet(root / 'mini_small_val', classes=(5, 3, 5), images=2, size=(30, 30))

    d['three_pngs'] = fake_omniglot(root / 'three_pngs', num_chars=10, images=3)
    d['chars16'] = fake_omniglot(root / 'chars16', num_chars=16, images=4)
    d['chars17'] = fake_omniglot(root / 'chars17', num_chars=17, images=4)

    # 10 characters of 2 drawings, split 5/5: at the first evaluation every test character
    # is in the task and both its drawings are read. Break one of a test character's
    # drawings (the split is the seeded one the CLI makes with --seed 0).
    d['corrupt_omniglot'] = fake_omniglot(root / 'corrupt_omniglot', num_chars=10, images=2)
    random.seed(0)
    _, test = split_dataset(read_dataset(str(d['corrupt_omniglot'])), 5)
    d['corrupt_png'] = sorted(pathlib.Path(test[0].dir_path).glob('*.png'))[-1]
    truncate(d['corrupt_png'])

    # 5 classes of 2 images per split: the final Validation evaluation reads them all.
    d['corrupt_mini'] = fake_miniimagenet(root / 'corrupt_mini', classes=(5, 5, 5), images=2, size=(30, 30))
    d['corrupt_jpeg'] = sorted((d['corrupt_mini'] / 'val').glob('*/*.JPEG'))[3]
    truncate(d['corrupt_jpeg'])

    d['ckpt_dangling'] = root / 'ckpt_dangling'
    d['ckpt_dangling'].mkdir()
    (d['ckpt_dangling'] / 'checkpoint').write_text('model_checkpoint_path: "model.ckpt-7"\n'
                                                   'all_model_checkpoint_paths: "model.ckpt-7"\n')
    d['ckpt_3way'], d['ckpt_5way'], d['ckpt_sgd'] = root / 'ckpt_3way', root / 'ckpt_5way', root / 'ckpt_sgd'
    _save_checkpoint(d['ckpt_3way'], 3)
    _save_checkpoint(d['ckpt_5way'], 5)
    _save_checkpoint(d['ckpt_sgd'], 5, sgd=True)
    d['npz_wrong_shape'] = _webdemo_like(root / 'wrong_shape.npz', wrong_shape=True)
    d['npz_truncated'] = _webdemo_like(root / 'truncated.npz')
    truncate(d['npz_truncated'])

    # A folder holding a training run started with --seed 0 on the chars16 data.
    from supervised_reptile import experiment
    from supervised_reptile.running import identity
    from supervised_reptile.args import argument_parser, identity_flags, parse
    d['run_dir'] = root / 'run_dir'
    args = parse(argument_parser('data/omniglot', omniglot=True),
                 ['--data-dir', str(d['chars16']), '--train-chars', '6', '--shots', '1', *map(str, TINY_TRAIN)])
    digest = identity.data_digest(experiment.read_splits('omniglot', args), args.data_dir)
    identity.record(str(d['run_dir']), identity.identity(identity_flags(args), args.data_dir, digest))

    _more_data(d, read_only_dir)
    with FolderLock(str(root / 'locked')):  # held by this process while the cases run
        d['locked'] = root / 'locked'
        shutil.copy(d['run_dir'] / 'run.json', d['locked'])
        yield d


def _more_data(d, read_only_dir):
    """The crafted checkpoints and model files, image stacks and odd data trees."""
    root = d['root']
    for name, changes in CRAFTED.items():
        d[name] = _crafted(root / name, d['ckpt_5way'], d['run_dir'], changes)
    d['read_only'] = read_only_dir
    d['a_file'] = root / 'a_file'
    d['a_file'].write_text('not a folder')
    d['npz_good'] = _webdemo_like(root / 'good.npz')
    for kind in ('str', 'complex64', 'bool', 'int64'):
        d[f'npz_{kind}'] = _webdemo_like(root / f'{kind}.npz', dtype=np.dtype(kind))
    d['npy_as_npz'] = root / 'stack.npz'
    np.save(root / 'stack.npy', np.ones((4, 28, 28), np.float32))
    (root / 'stack.npy').rename(d['npy_as_npz'])
    d['npy_good'] = root / 'good.npy'
    np.save(d['npy_good'], np.ones((4, 28, 28), np.float32))
    d['npy_0d'] = root / 'zero_d.npy'
    np.save(d['npy_0d'], np.float32(1))
    d['npy_nan'] = root / 'nan.npy'
    np.save(d['npy_nan'], np.full((4, 28, 28), np.nan, np.float32))
    d['file_character'] = fake_omniglot(root / 'file_character', num_chars=10, images=2)
    (d['file_character'] / 'Alphabet' / 'character99').write_text('not a folder')


# Cases run as real processes: --distribute sets up devices once per process, and one case of
# each entry point (both scripts, a tool, a divergence) shows the whole process contract:
# TensorFlow's start-up lines filtered from stderr, the interpreter's exit status. The rest
# run in this process, through the same entry points (helpers.run_in_process).
AS_SUBPROCESSES = {'distribute_one_replica_without_parallel_tasks', 'multi_worker_without_a_cluster',
                'omniglot_missing_data_dir', 'corrupt_jpeg', 'fewshot_nan_images',
                'training_with_learning_rate_1e30'}


@pytest.fixture(scope='module')
def outcomes(request, data):
    """{case id: CompletedProcess} for the cases this session runs."""
    selected = set()
    for item in request.session.items:
        callspec = getattr(item, 'callspec', None)
        if callspec is not None and getattr(item, 'module', None) is request.module and 'case' in callspec.params:
            selected.add(callspec.params['case'])
    runs = {}
    for case_id in sorted(selected):
        if 'read_only' in case_id and data['read_only'] is None:
            continue  # skipped: see the test
        case = BY_ID[case_id]
        cwd = data['root'] / 'runs' / case_id
        cwd.mkdir(parents=True)
        runs[case_id] = functools.partial(run_cli if case_id in AS_SUBPROCESSES else run_in_process, case.which, cwd,
                                          *case.args(data))
    done = run_parallel({key: run for key, run in runs.items() if key in AS_SUBPROCESSES})
    return done | {key: run() for key, run in runs.items() if key not in AS_SUBPROCESSES}


@pytest.mark.slow
@pytest.mark.parametrize('case', [case.id for case in CASES])
def test_bad_input_exits_2_with_one_line(case, outcomes, data):
    if 'read_only' in case and data['read_only'] is None:
        pytest.skip('cannot mount a read-only tmpfs here (needs root)')
    result = outcomes[case]
    assert_input_error(result, *BY_ID[case].words(data))
    assert 'Training...' not in result.stdout or case.startswith('corrupt'), result.stdout


@pytest.mark.slow
@pytest.mark.parametrize('case', [case.id for case in LEGAL])
def test_legal_input_runs(case, outcomes):
    result = outcomes[case]
    assert_success(result)
    assert 'Test accuracy:' in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize('case', [case.id for case in DIVERGING])
def test_divergence_exits_65_with_one_line_and_saves_nothing_non_finite(case, outcomes, data):
    """A run whose numbers overflow ends with status 65 (errors.EXIT_STATUSES['diverged'])
    and one line naming where, printing no accuracy or probabilities; no checkpoint of it
    is written."""
    result = outcomes[case]
    assert 'Traceback' not in result.stderr, result.stderr
    assert result.returncode == EXIT_STATUSES['diverged'], (result.returncode, result.stderr)
    lines = our_stderr_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith('error:'), result.stderr
    for word in BY_ID[case].words(data):
        assert word in lines[0], (word, lines[0])
    assert 'accuracy' not in result.stdout and 'probs' not in result.stdout, result.stdout
    written = data['root'] / 'runs' / case / 'ck'
    assert not list(written.glob('model.ckpt-*')) and not (written / 'checkpoint').exists()
