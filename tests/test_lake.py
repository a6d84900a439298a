"""Lake's one-shot benchmark (`python -m supervised_reptile.lake`) on the real runs of
all_runs.zip: reading a run, refusing models that are not 20-way, the CLI's table, JSON
line and results file, and one-line errors for missing or broken runs."""

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from helpers import REPO_DIR, assert_input_error, assert_success, cli_env, run_parallel, truncate
from supervised_reptile import lake
from supervised_reptile.tools import lake_runs
from supervised_reptile.errors import InputError


@pytest.fixture(scope='module')
def runs(omniglot_mirror, tmp_path_factory):
    """Lake's 20 runs, extracted from the mirror's all_runs.zip as fetch_data.sh does."""
    root = tmp_path_factory.mktemp('lake') / 'omniglot_runs'
    with zipfile.ZipFile(omniglot_mirror / 'all_runs.zip') as archive:
        archive.extractall(root)
    return root


@pytest.fixture(scope='module')
def untrained_20way(tmp_path_factory):
    """A checkpoint of an untrained 20-way Omniglot model."""
    from supervised_reptile.running import checkpoint
    from supervised_reptile.models import omniglot_model
    from supervised_reptile.optimizers import Adam
    from supervised_reptile.reptile import Reptile
    directory = tmp_path_factory.mktemp('untrained') / 'ckpt'
    checkpoint.save(str(directory), 0, Reptile(omniglot_model(20), Adam(1e-3)))
    return directory


def broken_copy(runs, dest, damage):
    """A copy of the runs folder with `damage(copy)` applied."""
    shutil.copytree(runs, dest)
    damage(dest)
    return dest


def run_lake(*args):
    """`python -m supervised_reptile.lake` from the repository root (so that this checkout's
    package is the one run); returns the CompletedProcess."""
    return subprocess.run([sys.executable, '-m', 'supervised_reptile.lake', *map(str, args)], cwd=REPO_DIR,
                          env=cli_env(), capture_output=True, text=True, timeout=600)


def test_a_run_is_read_in_sorted_order_with_its_answer_key(runs):
    """Classes are the training drawings in sorted order (as Lake's demo), queries the test
    drawings in sorted order, and each query's label is its answer-key class's position."""
    run = lake_runs.read_run(str(runs), 'run01')
    assert [p.split('/')[-1] for p in run.training] == [f'class{c:02d}.png' for c in range(1, 21)]
    assert [p.split('/')[-1] for p in run.test] == [f'item{i:02d}.png' for i in range(1, 21)]
    key = dict(line.split() for line in (runs / 'run01' / 'class_labels.txt').read_text().splitlines())
    assert [run.training[label] for label in run.answers] == [str(runs / key[f'run01/test/item{i:02d}.png'])
                                                              for i in range(1, 21)]
    assert run.answers[0] == 7  # item01 is class08
    assert run.support.shape == run.queries.shape == (20, 28, 28) and run.support.dtype == np.float32
    assert set(np.unique(run.support)) == {0.0, 1.0} and run.support.mean() > 0.5  # 1 background, 0 ink


def test_models_that_are_not_20_way_are_refused(runs, webdemo):
    """The 3-way web-demo model: one InputError naming its classes."""
    with pytest.raises(InputError, match='3-way omniglot model, not a 20-way omniglot one: Lake\'s runs are 20-way'):
        lake.main(['--model', str(webdemo / 'reptile_webdemo_omniglot_3way.npz'), '--runs', str(runs)])


@pytest.mark.parametrize('damage, words', [
    (lambda d: (d / 'run05' / 'class_labels.txt').write_text('run05/test/item01.png run05/training/class01.png\n'),
     ['run05/class_labels.txt', 'not the answer key of a 20-way run']),
    (lambda d: (d / 'run05' / 'class_labels.txt').unlink(), ['cannot read', 'run05/class_labels.txt']),
    (lambda d: truncate(d / 'run20' / 'test' / 'item03.png'), ['cannot read image', 'run20/test/item03.png']),
    (lambda d: shutil.rmtree(d / 'run11'), ['lacks run11', '--runs']),
], ids=['short_answer_key', 'no_answer_key', 'truncated_png', 'missing_run'])
def test_broken_runs_are_refused_before_loading_the_model(runs, tmp_path, damage, words):
    """A malformed run stops with an InputError naming the file, before any model is read."""
    broken = broken_copy(runs, tmp_path / 'runs', damage)
    with pytest.raises(InputError) as error:
        lake.main(['--model', str(tmp_path / 'no-such-model'), '--runs', str(broken)])
    for word in words:
        assert word in str(error.value)


@pytest.mark.slow
def test_cli_prints_the_table_and_json_and_writes_one_result_line_per_run(runs, untrained_20way, tmp_path):
    """End to end on an untrained 20-way model (2 fine-tuning steps): the table has the 20
    runs, the means and the references; the JSON line's mean is the average of its 20
    errors; the results file holds the header and exactly one line per run, and no
    temporary file is left. A missing runs folder, meanwhile, is one line and status 2."""
    out = tmp_path / 'lake.jsonl'
    done = run_parallel({
        'ok': lambda: run_lake('--model', untrained_20way, '--runs', runs, '--inner-iters', 2,
                               '--results', out),
        'missing': lambda: run_lake('--model', untrained_20way, '--runs', tmp_path / 'nowhere'),
    })
    assert_input_error(done['missing'], 'nowhere', './fetch_data.sh omniglot', '--runs')
    assert_success(done['ok'])
    lines = done['ok'].stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[1:21]] == [f'run{r:02d}' for r in range(1, 21)]
    assert lines[21].startswith('mean (95% CI, 20 runs)')
    assert lines[22].split() == ['people', '4.5'] and lines[23].split()[-1] == '3.3'
    summary = json.loads(lines[-1])
    assert summary['runs'] == 20 and len(summary['per_run_error']) == 20
    assert summary['mean_error'] == pytest.approx(np.mean(summary['per_run_error']))
    assert len(summary['transductive']['per_run_error']) == 20
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]['type'] == 'header' and records[0]['model'] == str(untrained_20way)
    assert [(r['split'], r['task'], r['total']) for r in records[1:]] == [('lake', t, 20) for t in range(20)]
    assert records[1]['classes'][0].endswith('run01/training/class01.png') and len(records[1]['classes']) == 20
    assert [1 - r['correct'] / 20 for r in records[1:]] == pytest.approx(summary['per_run_error'])
    assert [1 - r['correct_transductive'] / 20 for r in records[1:]] == pytest.approx(
        summary['transductive']['per_run_error'])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['lake.jsonl']
