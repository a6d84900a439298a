"""run_omniglot.py and run_miniimagenet.py end to end, as subprocesses.

- Omniglot on the real small sets: training output in the original's format, checkpoints
  (the original's file layout, relative names), TensorBoard scalars, restoring with
  --pretrained, and determinism for a given --seed.
- The original's own checkpoint (../shared/fixtures/original/ckpt_o15t) loads and scores
  well above chance.
- FOML with --foml-tail, and the SGD / --replacement / --weight-decay paths.
- Mini-ImageNet on a small generated JPEG tree in the default data/miniimagenet folder.
- Every command of the original README parses, and each one that runs distinct code starts
  verbatim (up to its first evaluation line) on fake full-size data trees.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from supervised_reptile.args import argument_parser, parse

from helpers import (NONSTANDARD_WARNING, SCRIPTS, assert_success, cli_env, fake_full_omniglot, fake_miniimagenet,
                     our_stderr_lines, run_cli, run_parallel)

BATCH_LINE = re.compile(r'^batch (\d+): train=(\d\.\d{6}) test=(\d\.\d{6})$')


def accuracy_line_re(name, tasks):
    return re.compile(rf'^{name} accuracy: (\d\.\d{{4}}) ± (\d+\.\d{{4}}) \(95% CI, {tasks} tasks\)$')


def accuracy(stdout, name, tasks):
    """(mean, CI half-width) from the `<name> accuracy:` line; fails if absent or malformed."""
    pattern = accuracy_line_re(name, tasks)
    found = [pattern.match(line) for line in stdout.splitlines() if line.startswith(f'{name} accuracy:')]
    assert len(found) == 1 and found[0], stdout
    mean, half_width = float(found[0].group(1)), float(found[0].group(2))
    assert 0 <= mean <= 1 and 0 <= half_width <= 1, stdout
    return mean, half_width


# --- 1. Omniglot end to end -------------------------------------------------------------

EVAL_FLAGS = ['--train-chars', 180, '--classes', 5, '--shots', 1, '--eval-batch', 5, '--eval-iters', 3,
              '--eval-samples', 20, '--transductive']
TRAIN_FLAGS = EVAL_FLAGS + ['--train-shots', 5, '--inner-batch', 10, '--inner-iters', 2, '--meta-batch', 2,
                            '--meta-iters', 12, '--eval-interval', 5]


@pytest.fixture(scope='module')
def trained(omniglot_data, tmp_path_factory):
    """A tiny training run on the real small sets: (cwd, CompletedProcess)."""
    cwd = tmp_path_factory.mktemp('e2e')
    result = run_cli('omniglot', cwd, '--data-dir', omniglot_data, *TRAIN_FLAGS, '--checkpoint', 'ck')
    assert_success(result)
    return cwd, result


@pytest.mark.slow
def test_training_prints_the_originals_lines(trained):
    _, result = trained
    lines = result.stdout.splitlines()
    assert lines[0] == 'Training...', result.stdout
    batch_lines = [line for line in lines if line.startswith('batch ')]
    assert [BATCH_LINE.match(line).group(1) for line in batch_lines] == ['0', '5', '10'], result.stdout
    assert lines[1:4] == batch_lines
    assert lines[4] == 'Evaluating...'
    assert accuracy_line_re('Train', 20).match(lines[5]), lines[5]
    assert accuracy_line_re('Test', 20).match(lines[6]), lines[6]
    assert len(lines) == 7, result.stdout
    accuracy(result.stdout, 'Train', 20)
    accuracy(result.stdout, 'Test', 20)


def rendered_rows(output):
    """The rows a terminal shows for `output`: carriage returns and backspaces move the
    cursor, ESC[2K erases the row, text overwrites (the subset of VT100 the bar uses)."""
    rows, row, col = [], [], 0
    for token in re.findall(r'\x1b\[[0-9;]*[A-Za-z]|.|\n', output, flags=re.S):
        if token == '\n':
            rows.append(''.join(row).rstrip())
            row, col = [], 0
        elif token == '\r':
            col = 0
        elif token == '\b':
            col = max(col - 1, 0)
        elif token == '\x1b[2K':
            row = []
        elif not token.startswith('\x1b'):  # colours and bold: no text
            row[col:col + 1] = [token]
            col += 1
    return rows + [''.join(row).rstrip()]


@pytest.mark.slow
def test_on_a_terminal_each_line_has_its_own_row_above_the_bar(omniglot_data, tmp_path):
    """Under a pseudo-terminal: a progress bar, every `batch N:` line alone on its row (the
    bar redrawn below it, never glued to it), accuracies with 4 decimals, and no
    TensorFlow start-up line on stderr."""
    import pty
    controller, terminal = pty.openpty()
    with subprocess.Popen([sys.executable, str(SCRIPTS['omniglot']), '--data-dir', str(omniglot_data),
                           *map(str, TRAIN_FLAGS), '--checkpoint', 'ck'], cwd=tmp_path, env=cli_env(),
                          stdout=terminal, stderr=subprocess.PIPE, text=True) as proc:
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 1 << 16)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        stderr = proc.stderr.read()
    os.close(controller)
    assert proc.returncode == 0 and stderr == '', stderr
    rows = [row for row in rendered_rows(b''.join(chunks).decode()) if row]
    batch_rows = [row for row in rows if 'batch ' in row]
    assert [BATCH_LINE.match(row).group(1) for row in batch_rows] == ['0', '5', '10'], rows
    bars = [i for i, row in enumerate(rows) if re.match(r'^\s*\d+/12 ', row)]
    assert bars and all(any(b > rows.index(row) for b in bars) for row in batch_rows), rows
    accuracy(''.join(row + '\n' for row in rows), 'Test', 20)


@pytest.mark.slow
def test_training_writes_checkpoints_in_the_originals_layout(trained):
    cwd, _ = trained
    ck = cwd / 'ck'
    state = (ck / 'checkpoint').read_text().splitlines()
    assert state[0] == 'model_checkpoint_path: "model.ckpt-11"'
    assert state[1:] == ['all_model_checkpoint_paths: "model.ckpt-0"',
                         'all_model_checkpoint_paths: "model.ckpt-11"']
    for step in (0, 11):
        for suffix in ('.index', '.data-00000-of-00001'):
            assert (ck / f'model.ckpt-{step}{suffix}').is_file()
    leftovers = [p.name for p in ck.iterdir() if p.name.startswith('.tmp')]
    assert leftovers == []


def _scalars(folder, tag):
    """{step: value} of scalar `tag` in the TensorBoard event files of `folder`."""
    import tensorflow as tf
    values = {}
    files = sorted(folder.glob('events.out.tfevents.*'))
    assert files, f'no event file in {folder}'
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


@pytest.mark.slow
def test_training_logs_accuracy_to_tensorboard(trained):
    cwd, result = trained
    printed = [BATCH_LINE.match(line) for line in result.stdout.splitlines() if line.startswith('batch ')]
    for column, name in ((2, 'train'), (3, 'test')):
        scalars = _scalars(cwd / 'ck' / name, 'accuracy')
        assert sorted(scalars) == [0, 5, 10], scalars
        for match in printed:
            assert scalars[int(match.group(1))] == pytest.approx(float(match.group(column)), abs=1e-6)


@pytest.mark.slow
def test_pretrained_restores_and_is_deterministic(trained, omniglot_data):
    cwd, _ = trained
    args = ['--data-dir', omniglot_data, *EVAL_FLAGS, '--pretrained', '--checkpoint', 'ck', '--seed', 0]
    first, second = run_parallel({k: (lambda: run_cli('omniglot', cwd, *args)) for k in (1, 2)}).values()
    for result in (first, second):
        assert_success(result)
        lines = result.stdout.splitlines()
        assert lines[:2] == ['Restoring from checkpoint...', 'Evaluating...'], result.stdout
        assert len(lines) == 4, result.stdout
        accuracy(result.stdout, 'Train', 20)
        accuracy(result.stdout, 'Test', 20)
    assert first.stdout.splitlines()[3] == second.stdout.splitlines()[3]
    assert first.stdout == second.stdout


# --- 2. The original's checkpoint --------------------------------------------------------

@pytest.mark.slow
def test_originals_checkpoint_scores_above_chance(original_ckpt, omniglot_data, tmp_path):
    result = run_cli('omniglot', tmp_path, '--data-dir', omniglot_data, '--pretrained', '--checkpoint', original_ckpt,
                     '--train-chars', 180, '--seed', 0, '--shots', 1, '--eval-batch', 5, '--eval-iters', 50,
                     '--eval-samples', 40, '--transductive')
    assert_success(result)
    assert result.stdout.splitlines()[0] == 'Restoring from checkpoint...'
    test_mean, _ = accuracy(result.stdout, 'Test', 40)
    train_mean, _ = accuracy(result.stdout, 'Train', 40)
    assert test_mean > 0.5, result.stdout  # the original: 0.8412 over 1000 tasks
    assert train_mean > 0.5, result.stdout


# --- 3. FOML, SGD, replacement, weight decay ---------------------------------------------

@pytest.mark.slow
def test_foml_tail_and_sgd_replacement_weight_decay_run(omniglot_data, tmp_path):
    common = ['--data-dir', omniglot_data, '--train-chars', 180, '--shots', 1, '--meta-iters', 3,
              '--eval-interval', 2, '--eval-batch', 5, '--eval-iters', 3, '--eval-samples', 5]
    runs = {
        'foml': ['--foml', '--foml-tail', 2, '--train-shots', 5, '--inner-batch', 10, '--inner-iters', 3,
                 '--meta-batch', 2, '--checkpoint', 'foml'],
        'sgd': ['--sgd', '--replacement', '--weight-decay', 0.99, '--learning-rate', 0.01, '--train-shots', 4,
                '--inner-batch', 8, '--inner-iters', 3, '--meta-batch', 2, '--checkpoint', 'sgd'],
    }
    results = run_parallel({name: (lambda extra=extra: run_cli('omniglot', tmp_path, *common, *extra))
                            for name, extra in runs.items()})
    for name, result in results.items():
        assert_success(result)
        batches = [BATCH_LINE.match(line) for line in result.stdout.splitlines() if line.startswith('batch ')]
        assert [m.group(1) for m in batches] == ['0', '2'], result.stdout
        accuracy(result.stdout, 'Train', 5)
        accuracy(result.stdout, 'Test', 5)
        assert (tmp_path / name / 'model.ckpt-2.index').is_file()


# --- 4. Mini-ImageNet ----------------------------------------------------------------------

@pytest.mark.slow
def test_miniimagenet_default_data_folder(tmp_path):
    fake_miniimagenet(tmp_path / 'data' / 'miniimagenet', classes=(6, 5, 5), images=4, size=(100, 90))
    result = run_cli('miniimagenet', tmp_path, '--shots', 1, '--train-shots', 3, '--inner-batch', 5,
                     '--inner-iters', 2, '--meta-batch', 2, '--meta-iters', 2, '--eval-batch', 5,
                     '--eval-iters', 2, '--eval-samples', 3, '--checkpoint', 'ck')
    assert_success(result)
    warnings = [line for line in result.stderr.splitlines() if NONSTANDARD_WARNING.match(line)]
    assert len(warnings) == 1 and 'train has 6 classes (64 expected)' in warnings[0], result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'Training...' and BATCH_LINE.match(lines[1]) and lines[2] == 'Evaluating...', lines
    for name in ('Train', 'Validation', 'Test'):
        accuracy(result.stdout, name, 3)
    assert [line.split()[0] for line in lines[3:]] == ['Train', 'Validation', 'Test']
    assert (tmp_path / 'ck' / 'model.ckpt-1.index').is_file()


# --- 5. The original README's commands ---------------------------------------------------

# Verbatim from openai/supervised-reptile's README.
README_COMMANDS = '''\
python -u run_omniglot.py --shots 1 --inner-batch 25 --inner-iters 3 --meta-step 1 --meta-batch 10 --meta-iters 100000 --eval-batch 25 --eval-iters 5 --learning-rate 0.001 --meta-step-final 0 --train-shots 15 --checkpoint ckpt_o15t --transductive
python -u run_miniimagenet.py --shots 1 --inner-batch 5 --inner-iters 15 --meta-step 1 --meta-batch 10 --meta-iters 100000 --eval-batch 5 --eval-iters 10 --learning-rate 0.001 --meta-step-final 0 --train-shots 15 --checkpoint ckpt_m15t --transductive
python -u run_miniimagenet.py --inner-batch 10 --inner-iters 8 --meta-step 1 --meta-batch 5 --meta-iters 200000 --eval-batch 15 --eval-iters 88 --learning-rate 0.00022 --meta-step-final 0 --train-shots 15 --checkpoint ckpt_m55
python -u run_miniimagenet.py --shots 1 --inner-batch 3 --inner-iters 19 --meta-step 0.235 --meta-batch 2 --meta-iters 200000 --eval-batch 3 --eval-iters 55 --learning-rate 0.0012 --meta-step-final 0 --train-shots 12 --checkpoint ckpt_m15
python -u run_omniglot.py --train-shots 10 --inner-batch 10 --inner-iters 5 --learning-rate 0.0015 --meta-step 0.7 --meta-step-final 0 --meta-batch 5 --meta-iters 100000 --eval-batch 6 --eval-iters 100 --checkpoint ckpt_o55
python -u run_omniglot.py --shots 1 --inner-batch 5 --inner-iters 12 --meta-step 1 --meta-batch 3 --meta-iters 200000 --eval-batch 5 --eval-iters 86 --learning-rate 0.00044 --meta-step-final 0 --train-shots 12 --checkpoint ckpt_o15
python -u run_omniglot.py --shots 1 --classes 20 --inner-batch 15 --inner-iters 12 --meta-step 1 --meta-batch 3 --meta-iters 200000 --eval-batch 10 --eval-iters 97 --learning-rate 0.00046 --meta-step-final 0 --train-shots 9 --checkpoint ckpt_o120
python -u run_omniglot.py --classes 20 --inner-batch 20 --inner-iters 12 --meta-step 1 --meta-batch 3 --meta-iters 200000 --eval-batch 10 --eval-iters 97 --learning-rate 0.00046 --meta-step-final 0 --train-shots 12 --checkpoint ckpt_o520
shared="--sgd --seed 0 --inner-batch 25 --learning-rate 0.0003 --meta-step-final 0 --meta-iters 40000 --eval-batch 25 --eval-iters 5 --eval-interval 1"
python run_omniglot.py --inner-iters 1 --train-shots 5 --meta-step 0.25 --checkpoint g1_ckpt $shared | tee g1.txt
python run_omniglot.py --inner-iters 2 --train-shots 10 --meta-step 0.25 --checkpoint g1_g2_ckpt $shared | tee g1_g2.txt
python run_omniglot.py --inner-iters 2 --train-shots 10 --meta-step 0.125 --checkpoint half_g1_g2_ckpt $shared | tee half_g1_g2.txt
python run_omniglot.py --foml --inner-iters 2 --train-shots 10 --meta-step 0.25 --checkpoint g2_ckpt $shared | tee g2.txt
python run_omniglot.py --inner-iters 3 --train-shots 15 --meta-step 0.25 --checkpoint g1_g2_g3_ckpt $shared | tee g1_g2_g3.txt
python run_omniglot.py --inner-iters 3 --train-shots 15 --meta-step 0.08325 --checkpoint third_g1_g2_g3_ckpt $shared | tee third_g1_g2_g3.txt
python run_omniglot.py --foml --inner-iters 3 --train-shots 15 --meta-step 0.25 --checkpoint g3_ckpt $shared | tee g3.txt
python run_omniglot.py --foml --inner-iters 4 --train-shots 20 --meta-step 0.25 --checkpoint g4_ckpt $shared | tee g4.txt
python run_omniglot.py --inner-iters 4 --train-shots 20 --meta-step 0.25 --checkpoint g1_g2_g3_g4_ckpt $shared | tee g1_g2_g3_g4.txt
python run_omniglot.py --inner-iters 4 --train-shots 20 --meta-step 0.0625 --checkpoint fourth_g1_g2_g3_g4_ckpt $shared | tee fourth_g1_g2_g3_g4.txt
'''

FIRST_BATCH = re.compile(r'^batch 0: train=\d\.\d{6} test=\d\.\d{6}$')
README_TIMEOUT = 150  # seconds for one command to reach its first evaluation line


def readme_scripts():
    """Each README command as a bash script, preceded by the variable assignments
    (`shared=...`) that come before it."""
    assignments, scripts = [], []
    for line in README_COMMANDS.splitlines():
        if re.match(r'^\w+=', line):
            assignments.append(line)
        elif line.strip():
            scripts.append('\n'.join(assignments + [line]))
    return scripts


def start_until_first_batch(script, cwd, log):
    """Run `script` with bash in its own process group until its stdout shows the first
    `batch 0:` line, then kill the group. Returns (stdout lines read, stderr, seconds)."""
    start = time.monotonic()
    with open(log, 'w+') as stderr:
        proc = subprocess.Popen(['bash', '-c', script], cwd=cwd, env=cli_env(PYTHONUNBUFFERED='1'),
                                stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
        watchdog = threading.Timer(README_TIMEOUT, os.killpg, (proc.pid, signal.SIGKILL))
        watchdog.start()
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line.rstrip('\n'))
                if FIRST_BATCH.match(lines[-1]):
                    break
        finally:
            watchdog.cancel()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.stdout.close()
            proc.wait()
        stderr.seek(0)
        return lines, stderr.read(), time.monotonic() - start


@pytest.fixture(scope='module')
def readme_dir(tmp_path_factory):
    """A folder laid out like a checkout with full-size fake data: the scripts, a
    1300-character data/omniglot and a 64/16/20-class data/miniimagenet."""
    root = tmp_path_factory.mktemp('readme')
    for script in SCRIPTS.values():
        (root / script.name).symlink_to(script)
    fake_full_omniglot(root / 'data' / 'omniglot', num_chars=1300)
    fake_miniimagenet(root / 'data' / 'miniimagenet', classes=(64, 16, 20), images=16, size=(100, 90),
                      distinct=8)
    return root


SHARED_FLAGS = re.search(r'^shared="(.*)"$', README_COMMANDS, re.MULTILINE).group(1)


def test_readme_lists_eighteen_commands():
    scripts = readme_scripts()
    assert len(scripts) == 18
    assert sum('$shared' in s for s in scripts) == 10
    assert all(s.startswith('shared="--sgd') for s in scripts if '$shared' in s)


def test_every_readme_command_parses():
    for script in readme_scripts():
        words = shlex.split(script.splitlines()[-1].replace('$shared', SHARED_FLAGS).split('|')[0])
        at = next(i for i, word in enumerate(words) if word.endswith('.py'))
        parse(argument_parser('data', omniglot=words[at] == 'run_omniglot.py'), words[at + 1:])


def distinct_readme_scripts():
    """The README's scripts that run distinct code: every paper command, and of the ten
    `$shared` ablation commands (which differ only in numbers) one Reptile and one FOML."""
    scripts = readme_scripts()
    ablations = [s for s in scripts if '$shared' in s]
    return [s for s in scripts if '$shared' not in s] + [next(s for s in ablations if '--foml' not in s),
                                                          next(s for s in ablations if '--foml' in s)]


@pytest.mark.slow
def test_every_distinct_readme_command_starts(readme_dir):
    scripts = distinct_readme_scripts()
    # The slowest (Mini-ImageNet 5-shot: 88 evaluation steps of 15 images) goes first so
    # that the workers finish together.
    order = sorted(range(len(scripts)), key=lambda i: '--eval-iters 88' not in scripts[i])
    logs = readme_dir / 'logs'
    logs.mkdir()
    results = run_parallel({i: (lambda i=i: start_until_first_batch(scripts[i], readme_dir, logs / f'{i}.err'))
                            for i in order})
    failures = []
    for i in range(len(scripts)):
        lines, stderr, seconds = results[i]
        problems = []
        if not lines or lines[0] != 'Training...':
            problems.append('no "Training..." first')
        if not lines or not FIRST_BATCH.match(lines[-1]):
            problems.append('no "batch 0: train=... test=..." line')
        if 'Traceback' in stderr or our_stderr_lines(stderr):
            problems.append('stderr: ' + ' | '.join(our_stderr_lines(stderr)[-5:]))
        tee = re.search(r'\| tee (\S+)$', scripts[i])
        if tee and not (readme_dir / tee.group(1)).is_file():
            problems.append(f'no {tee.group(1)} written by tee')
        if problems:
            failures.append(f'{scripts[i]!r} ({seconds:.0f} s): {"; ".join(problems)}; stdout {lines[-5:]}')
    assert not failures, '\n'.join(failures)


# --- 6. Ctrl-C ------------------------------------------------------------------------------

def _interrupt_after(args, cwd, text):
    """Start run_omniglot.py with `args`, send SIGINT (Ctrl-C) once stdout shows `text`;
    returns the CompletedProcess."""
    proc = subprocess.Popen([sys.executable, '-u', str(SCRIPTS['omniglot']), *map(str, args)], cwd=cwd,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if text in line:
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(args, proc.returncode, ''.join(out) + stdout, stderr)


@pytest.mark.slow
def test_ctrl_c_during_training_checkpoints_and_exits_130(omniglot_data, tmp_path):
    """Ctrl-C while training: the meta-iteration under way ends with a checkpoint, one line
    on stderr says where, exit status 130, no traceback."""
    args = ['--data-dir', omniglot_data, *TRAIN_FLAGS[:-4], '--meta-iters', 100000, '--eval-interval', 5,
            '--checkpoint', 'ck']
    result = _interrupt_after(args, tmp_path, 'batch 5:')
    assert result.returncode == 130, (result.returncode, result.stderr)
    [line] = result.stderr.splitlines()
    match = re.fullmatch(r'stopped by SIGINT after meta-iteration (\d+), with a checkpoint of it in ck: '
                         r'continue with --resume', line)
    assert match, line
    assert (tmp_path / 'ck' / f'model.ckpt-{match.group(1)}.index').is_file()


@pytest.mark.slow
def test_ctrl_c_during_evaluation_exits_130_with_one_line(trained, omniglot_data):
    """Ctrl-C during an evaluation: one line, exit status 130, no traceback."""
    cwd, _ = trained
    args = ['--data-dir', omniglot_data, *EVAL_FLAGS[:-3], '--eval-samples', 100000, '--pretrained',
            '--checkpoint', 'ck']
    result = _interrupt_after(args, cwd, 'Evaluating...')
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert result.stderr.splitlines() == ['stopped by SIGINT (Ctrl-C)'], result.stderr


# --- 7. --eval-interval-samples -------------------------------------------------------------

@pytest.mark.slow
def test_eval_interval_samples_averages_more_tasks_without_changing_training(trained, omniglot_data, tmp_path):
    """--eval-interval-samples 4: each `batch N:` line shows the mean over 4 more tasks per
    split (TensorBoard `mean_accuracy`), drawn apart from the original's stream, so the
    original's one-task `accuracy` curve and the trained weights stay exactly those of the
    run without it."""
    plain_cwd, _ = trained
    result = run_cli('omniglot', tmp_path, '--data-dir', omniglot_data, *TRAIN_FLAGS, '--checkpoint', 'ck',
                     '--eval-interval-samples', 4)
    assert_success(result)
    printed = [BATCH_LINE.match(line) for line in result.stdout.splitlines() if line.startswith('batch ')]
    assert [m.group(1) for m in printed] == ['0', '5', '10'], result.stdout
    for column, name in ((2, 'train'), (3, 'test')):
        means = _scalars(tmp_path / 'ck' / name, 'mean_accuracy')
        assert sorted(means) == [0, 5, 10]
        for match in printed:
            assert means[int(match.group(1))] == pytest.approx(float(match.group(column)), abs=1e-6)
            assert means[int(match.group(1))] * 20 == pytest.approx(round(means[int(match.group(1))] * 20))  # 4 x 5
        assert _scalars(tmp_path / 'ck' / name, 'accuracy') == _scalars(plain_cwd / 'ck' / name, 'accuracy')
    import tensorflow as tf
    ours, plain = (tf.train.load_checkpoint(str(cwd / 'ck' / 'model.ckpt-11')) for cwd in (tmp_path, plain_cwd))
    for name in plain.get_variable_to_shape_map():
        if not name.startswith('reptile/'):
            assert np.array_equal(ours.get_tensor(name), plain.get_tensor(name)), name
