"""Bad input to run_omniglot.py / run_miniimagenet.py: exit status 2, no traceback, and one
line of ours on stderr naming the problem (and the fix).

Every case is a CLI subprocess, and each pays TensorFlow's import: they all start together
(two to four at a time) when the module's first test runs. All data is generated in a
temporary folder, so this module needs nothing from ../shared.
"""

import pathlib
import random
from dataclasses import dataclass

import numpy as np
import pytest

from cli_helpers import (assert_input_error, assert_success, fake_miniimagenet, fake_omniglot, run_cli,
                         run_parallel, truncate)

TINY_EVAL = ['--eval-batch', 5, '--eval-iters', 2, '--eval-samples', 2]
TINY_TRAIN = ['--inner-iters', 2, '--meta-iters', 1, '--eval-interval', 1, *TINY_EVAL]


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
         lambda d: [str(d['npz_wrong_shape']), 'conv1/kernel', 'not the published one']),
    Case('truncated_webdemo_model', 'omniglot',
         lambda d: ['--data-dir', d['chars16'], '--train-chars', 6, '--shots', 1, '--classes', 3, '--pretrained',
                    '--checkpoint', d['npz_truncated'], *TINY_EVAL],
         lambda d: ['cannot read web-demo parameters', str(d['npz_truncated'])]),

    # Flags that are out of range or not numbers.
    Case('seed_beyond_32_bits', 'omniglot', lambda d: ['--seed', 8589934592],
         lambda d: ['--seed', '2**32', '8589934592']),
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

BY_ID = {case.id: case for case in CASES + LEGAL}


def _save_checkpoint(directory, num_classes, sgd=False):
    """A real checkpoint of an untrained `num_classes`-way Omniglot model."""
    from supervised_reptile import checkpoint
    from supervised_reptile.models import omniglot_model
    from supervised_reptile.optimizers import inner_optimizer
    from supervised_reptile.reptile import Reptile
    checkpoint.save(str(directory), 0, Reptile(omniglot_model(num_classes), inner_optimizer(1e-3, sgd)))


def _webdemo_like(path, wrong_shape=False):
    """An .npz laid out as the web demo's (3-way, 24 filters), optionally with one kernel
    of the wrong shape."""
    shapes = {'conv0/kernel': (3, 3, 1, 24), 'dense/kernel': (96, 3), 'dense/bias': (3,)}
    shapes.update({f'conv{i}/kernel': (3, 3, 24, 24) for i in (1, 2, 3)})
    shapes.update({f'conv{i}/{w}': (24,) for i in range(4) for w in ('gamma', 'beta')})
    if wrong_shape:
        shapes['conv1/kernel'] = (3, 3, 24, 25)
    arrays = {key: np.ones(shape, np.float32) for key, shape in shapes.items()}
    arrays.update({f'{key}/adam_v': value for key, value in arrays.items()})
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope='module')
def data(tmp_path_factory):
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
    from supervised_reptile import cli, runs
    from supervised_reptile.args import argument_parser, parse
    d['run_dir'] = root / 'run_dir'
    args = parse(argument_parser('data/omniglot', omniglot=True),
                 ['--data-dir', str(d['chars16']), '--train-chars', '6', '--shots', '1', *map(str, TINY_TRAIN)])
    runs.record(str(d['run_dir']), runs.identity(args, runs.data_digest(cli.read_splits('omniglot', args),
                                                                         args.data_dir)))
    return d


@pytest.fixture(scope='module')
def outcomes(request, data):
    """{case id: CompletedProcess} for the cases this session runs, run in parallel."""
    selected = set()
    for item in request.session.items:
        callspec = getattr(item, 'callspec', None)
        if callspec is not None and getattr(item, 'module', None) is request.module and 'case' in callspec.params:
            selected.add(callspec.params['case'])
    jobs = {}
    for case_id in sorted(selected):
        case = BY_ID[case_id]
        cwd = data['root'] / 'runs' / case_id
        cwd.mkdir(parents=True)
        jobs[case_id] = lambda case=case, cwd=cwd: run_cli(case.which, cwd, *case.args(data))
    return run_parallel(jobs)


@pytest.mark.parametrize('case', [case.id for case in CASES])
def test_bad_input_exits_2_with_one_line(case, outcomes, data):
    result = outcomes[case]
    assert_input_error(result, *BY_ID[case].words(data))
    assert 'Training...' not in result.stdout or case.startswith('corrupt'), result.stdout


@pytest.mark.parametrize('case', [case.id for case in LEGAL])
def test_legal_input_runs(case, outcomes):
    result = outcomes[case]
    assert_success(result)
    assert 'Test accuracy:' in result.stdout
