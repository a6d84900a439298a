"""Test helpers: where the repository and ../shared are, running the CLIs (as subprocesses or in
this process) and fetch_data.sh, checking their stderr, and generating small data trees (Omniglot PNGs,
Mini-ImageNet JPEGs). Fixtures live in conftest.py; everything else tests share is here."""

import contextlib
import importlib
import os
import pathlib
import re
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent
SHARED_DIR = pathlib.Path(os.environ.get('SHARED_DIR') or REPO_DIR.parent / 'shared')  # set but empty: unset
CHROMIUM = os.environ.get('CHROMIUM', '/usr/bin/chromium')
CHROMEDRIVER = os.environ.get('CHROMEDRIVER', '/usr/bin/chromedriver')

SCRIPTS = {'omniglot': REPO_DIR / 'run_omniglot.py', 'miniimagenet': REPO_DIR / 'run_miniimagenet.py'}

# The Mini-ImageNet reader's warning, printed once per run on any tree but the original's:
# on every generated tree, then.
NONSTANDARD_WARNING = re.compile(r'^warning: .* is not the standard Mini-ImageNet: ')
ONEDNN_BF16_FALLBACK = re.compile(r'^E\d{4} .*\] oneDNN supports DT_BFLOAT16 only on platforms with AVX-512\. ')


def cli_env(**extra):
    """The environment for a CLI subprocess: the venv's python first on PATH, and no
    TF_CPP_MIN_LOG_LEVEL, so that the tools' own filter of TensorFlow's start-up lines
    runs (stderr must hold nothing else than what the tools print)."""
    env = dict(os.environ, **extra)
    env.pop('TF_CPP_MIN_LOG_LEVEL', None)
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    return env


def run_cli(which, cwd, *args, timeout=300):
    """Run run_<which>.py (or the command module supervised_reptile.<which>, e.g. 'fewshot')
    with `args` in `cwd`; returns the CompletedProcess (text)."""
    command = [str(SCRIPTS[which])] if which in SCRIPTS else ['-m', f'supervised_reptile.{which}']
    path = os.pathsep.join(filter(None, [str(REPO_DIR), os.environ.get('PYTHONPATH')]))  # as the scripts have
    return subprocess.run([sys.executable, '-u', *command, *map(str, args)], cwd=cwd,
                          env=cli_env(PYTHONPATH=path), capture_output=True, text=True, timeout=timeout)


def run_in_process(which, cwd, *args):
    """What `run_cli(which, cwd, *args)` runs, in this process: the same entry point (the
    script, or the command module's `cli()`) under the same `errors.guarded`, with
    `sys.argv` set, stdout and stderr captured down to their file descriptors (TensorFlow's
    C++ logs included) and the exit status read from SystemExit. TensorFlow is already
    imported here, so a case costs only its own work, not a process start (seconds each).
    Not for what needs a fresh process: --distribute (devices are set up once per process),
    signals, TensorFlow's start-up lines. Returns a CompletedProcess (text)."""
    entry = (lambda: runpy.run_path(str(SCRIPTS[which]), run_name='__main__')) if which in SCRIPTS else \
        importlib.import_module(f'supervised_reptile.{which}').cli
    program = SCRIPTS[which] if which in SCRIPTS else REPO_DIR / 'supervised_reptile' / f'{which}.py'
    argv = [str(program), *map(str, args)]
    previous_handler, previous_argv = signal.getsignal(signal.SIGTERM), sys.argv
    sys.argv = argv
    status = 0
    try:
        with contextlib.chdir(cwd), _captured(1, 'stdout') as out, _captured(2, 'stderr') as err:
            try:
                entry()
            except SystemExit as exc:
                status = exc.code
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        sys.argv = previous_argv
    return subprocess.CompletedProcess(argv, status, out[0], err[0])


@contextlib.contextmanager
def _captured(fd, name):
    """Capture file descriptor `fd` and `sys.<name>` (which then writes to it) into a
    temporary file; the context value is a list that holds the text afterwards."""
    text = []
    getattr(sys, name).flush()
    saved, previous = os.dup(fd), getattr(sys, name)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        setattr(sys, name, open(fd, 'w', buffering=1, closefd=False))
        try:
            yield text
        finally:
            getattr(sys, name).flush()
            setattr(sys, name, previous)
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            text.append(capture.read().decode(errors='replace'))


def our_stderr_lines(stderr):
    """The non-empty lines of stderr, without the reader's non-standard-Mini-ImageNet
    warning if it appears once (more is a bug), and without TensorFlow's notice that its
    oneDNN kernels fall back to Eigen for bfloat16 on CPUs without AVX-512 (logged when a
    bfloat16 op first runs with oneDNN on, so after start-up: TensorFlow's, and true)."""
    lines = [line for line in stderr.splitlines() if line.strip() and not ONEDNN_BF16_FALLBACK.search(line)]
    warnings = [line for line in lines if NONSTANDARD_WARNING.match(line)]
    return lines if len(warnings) > 1 else [line for line in lines if line not in warnings]


def assert_clean_stderr(result):
    """No traceback and nothing of ours on stderr (a successful run)."""
    assert 'Traceback' not in result.stderr, result.stderr
    assert our_stderr_lines(result.stderr) == [], result.stderr


def assert_input_error(result, *words):
    """Exit status 2, no traceback, exactly one line of ours on stderr, holding every word."""
    assert 'Traceback' not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = our_stderr_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith('error:') or ': error:' in line, line
    for word in words:
        assert word in line, f'{word!r} not in {line!r}'
    return line


def fake_full_omniglot(dest, num_chars=1300, per_alphabet=50, drawings=20):
    """`num_chars` character folders of `drawings` symlinks each to the same generated
    PNGs (kept in dest/../pngs): enough characters for the original's default split (1200
    training characters), built in about a second."""
    pngs = dest.parent / 'pngs'
    pngs.mkdir(parents=True)
    for k in range(drawings):
        write_png(pngs / f'{k + 1:02d}.png', seed=k)
    for c in range(num_chars):
        folder = dest / f'Alpha{c // per_alphabet:02d}' / f'character{c % per_alphabet + 1:02d}'
        folder.mkdir(parents=True)
        for k in range(drawings):
            (folder / f'{c:04d}_{k + 1:02d}.png').symlink_to(pngs / f'{k + 1:02d}.png')
    return dest


def fake_miniimagenet(dest, classes=(6, 5, 5), images=4, size=(100, 90), distinct=None, seed=0):
    """data/miniimagenet-like tree of random RGB JPEGs: `classes` per (train, val, test).

    With `distinct`, only that many JPEGs are encoded and the rest are copies of them.
    """
    rng = np.random.default_rng(seed)
    made = []
    for s, (split, count) in enumerate(zip(('train', 'val', 'test'), classes)):
        for c in range(count):
            folder = dest / split / f'n{s}{c:07d}'
            folder.mkdir(parents=True)
            for k in range(images):
                path = folder / f'img_{k:02d}.JPEG'
                if distinct is not None and len(made) >= distinct:
                    shutil.copy(made[(c * images + k) % distinct], path)  # same bytes, new file
                    continue
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(path, 'JPEG')
                made.append(path)
    return dest


WORKERS = max(2, min(4, os.cpu_count() or 2))  # CLI runs at once: each is CPU-bound


def run_parallel(jobs, workers=WORKERS):
    """Run the zero-argument callables `jobs` (a {key: callable}) `workers` at a time;
    returns {key: result}. The threads only wait for subprocesses."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def write_png(path, seed=0):
    """A random 105x105 1-bit PNG, like an Omniglot drawing."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.random((105, 105)) > 0.1).convert('1').save(path, 'PNG')


def fake_omniglot(dest, num_chars, images, alphabet='Alphabet'):
    """`num_chars` generated characters of `images` 1-bit PNGs each under dest/<alphabet>/."""
    for c in range(num_chars):
        folder = dest / alphabet / f'character{c + 1:02d}'
        folder.mkdir(parents=True)
        for k in range(images):
            write_png(folder / f'{c + 1:02d}_{k + 1:02d}.png', seed=c * 100 + k)
    return dest


def truncate(path):
    """Cut a file to half its size: a valid header, then nothing (an interrupted copy)."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def assert_success(result):
    """The run exited 0 with nothing but TensorFlow's start-up lines on stderr."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert_clean_stderr(result)


def fetch_env(**env):
    """The environment for fetch_data.sh: ours plus `env`, with this interpreter's python3
    (which has Pillow) first on PATH, as in an activated virtualenv."""
    full_env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    full_env.update(env)
    return full_env


def run_fetch(cwd, *targets, **env):
    """Run the project's fetch_data.sh in `cwd` with extra environment variables."""
    return subprocess.run(['bash', str(REPO_DIR / 'fetch_data.sh'), *targets], cwd=cwd,
                          env=fetch_env(**env), capture_output=True, text=True, timeout=600)
