"""run_omniglot.py runs in the background for the checkpoint tests: a reference run, a chain
of runs killed with SIGKILL and continued with --resume, and a run stopped with SIGTERM.
They start with test_checkpoint.py's first test and overlap with its in-process tests."""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import tensorflow as tf

from supervised_reptile.running import checkpoint

from helpers import SCRIPTS, cli_env


def read_all(prefix):
    """{name: value} of a bundle, reading every tensor (so a broken data file fails here)."""
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


RUN_FLAGS = ['--train-chars', 180, '--classes', 5, '--shots', 1, '--train-shots', 5, '--inner-batch', 10,
             '--inner-iters', 2, '--meta-batch', 2, '--meta-iters', 130, '--eval-interval', 25,
             '--eval-batch', 5, '--eval-iters', 3, '--eval-samples', 3, '--meta-step', 1,
             '--meta-step-final', 0, '--seed', 3, '--checkpoint', 'ck', '--checkpoint-interval', 50]
FINAL_ITERATION = 129
KILL_SEED = 6  # seeds the random kill delays
# Longest random kill delay: well under the time of the 50 meta-iterations between two
# checkpoints (3.3 to 5.4 s for one run with these flags, the 2-core machine at load 7,
# 7 Dec 2026), so that a run killed after model.ckpt-50 has not written model.ckpt-100.
MAX_KILL_DELAY = 0.5


class Run:
    """run_omniglot.py in its own process group (so SIGKILL reaches nothing else), with
    stdout/stderr in files of `cwd`."""

    def __init__(self, cwd, data_dir, *args, tag):
        cwd.mkdir(parents=True, exist_ok=True)
        self.cwd, self.tag = cwd, tag
        self.stdout_path, self.stderr_path = cwd / f'{tag}.out', cwd / f'{tag}.err'
        with open(self.stdout_path, 'w') as out, open(self.stderr_path, 'w') as err:
            self.proc = subprocess.Popen(
                [sys.executable, '-u', str(SCRIPTS['omniglot']), '--data-dir', str(data_dir), *map(str, args)],
                cwd=cwd, env=cli_env(PYTHONUNBUFFERED='1'), stdout=out, stderr=err, start_new_session=True)

    @property
    def stdout(self):
        return self.stdout_path.read_text()

    @property
    def stderr(self):
        return self.stderr_path.read_text()

    def wait(self, timeout=300):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f'{self.tag} did not finish in {timeout} s:\n{self.stdout}\n{self.stderr}')

    def wait_until(self, condition, timeout=300, interval=0.002):
        """Poll `condition` until true (True) or the process ends first (False)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f'{self.tag}: condition not reached in {timeout} s:\n{self.stdout}')
            time.sleep(interval)
        return True

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def result(self):
        """(returncode, stdout, stderr) once finished."""
        return self.wait(), self.stdout, self.stderr


def latest_iteration(ck):
    """Meta-iteration of the latest checkpoint in `ck` (None: none), after reading every
    tensor of it: it must never be unreadable, whenever the writer was killed."""
    prefix = tf.train.latest_checkpoint(str(ck)) if ck.is_dir() else None
    if prefix is None:
        return None
    values = read_all(prefix)
    iteration = int(values[checkpoint.ITERATION_KEY])
    assert prefix == str(ck / f'model.ckpt-{iteration}'), (prefix, iteration)
    return iteration


class ResumeChain(threading.Thread):
    """The interrupted run: always with --resume (the first time in a folder that does not
    exist yet), killed with SIGKILL three times, then let finish.

    Kills: (1) 0-0.5 s after model.ckpt-50.index appears; (2) 0-0.5 s after
    model.ckpt-100.index appears; (3) as soon as a save is in progress (a fresh `.tmp-` file
    in the folder), or failing that when 'Evaluating...' is printed (after the final save).
    After each kill the latest checkpoint is read in full. `runs` records, per run, the
    expected resume iteration, the kill moment and the latest iteration after it."""

    def __init__(self, cwd, data_dir):
        super().__init__(daemon=True)
        self.cwd, self.data_dir, self.ck = cwd, data_dir, cwd / 'ck'
        self.runs, self.error, self.current = [], None, None

    def _fresh_tmp(self, since):
        def saving():
            if not self.ck.is_dir():
                return False
            try:
                return any(e.name.startswith('.tmp-model.ckpt-') and e.stat().st_mtime >= since
                           for e in os.scandir(self.ck))
            except FileNotFoundError:  # renamed while we looked: a save is in progress
                return True
        return saving

    def run(self):
        try:
            self._chain()
        except BaseException as exc:  # re-raised by the test
            self.error = exc

    def _chain(self):
        rng = random.Random(KILL_SEED)
        triggers = [('after model.ckpt-50.index', lambda since: (self.ck / 'model.ckpt-50.index').exists, True),
                    ('after model.ckpt-100.index', lambda since: (self.ck / 'model.ckpt-100.index').exists, True),
                    ('during a save, or at Evaluating...', lambda since: self._either(since), False),
                    None]
        for k, trigger in enumerate(triggers):
            before = latest_iteration(self.ck)
            record = {'tag': f'run{k}', 'start': 0 if before is None else before + 1}
            since = time.time() - 0.01
            self.current = run = Run(self.cwd, self.data_dir, *RUN_FLAGS, '--resume', tag=f'run{k}')
            record['run'] = run
            self.runs.append(record)
            if trigger is not None:
                what, condition, delayed = trigger
                if run.wait_until(condition(since)):
                    delay = rng.uniform(0, MAX_KILL_DELAY) if delayed else 0.0
                    time.sleep(delay)
                    run.kill()
                    record['kill'] = f'{what} + {delay:.3f} s'
                    record['latest_after'] = latest_iteration(self.ck)
                    continue
            record['returncode'] = run.wait()  # finished (or failed) before any kill: the end
            record['latest_after'] = latest_iteration(self.ck)
            return

    def _either(self, since):
        saving = self._fresh_tmp(since)
        return lambda: saving() or 'Evaluating...' in self.current.stdout

    def stop(self):
        if self.current is not None:
            self.current.kill()


class Preempted(threading.Thread):
    """The run sent SIGTERM once it has printed meta-iteration 75's line, then resumed:
    `stopped` and `resumed` hold their (returncode, stdout, stderr), `latest_after_stop`
    the latest checkpoint between the two."""

    def __init__(self, cwd, data_dir):
        super().__init__(daemon=True)
        self.cwd, self.data_dir, self.ck = cwd, data_dir, cwd / 'ck'
        self.stopped = self.resumed = self.error = self.current = None

    def run(self):
        try:
            self.current = run = Run(self.cwd, self.data_dir, *RUN_FLAGS, tag='stopped')
            if run.wait_until(lambda: 'batch 75:' in run.stdout):
                os.killpg(run.proc.pid, signal.SIGTERM)
            self.stopped = run.result()
            self.latest_after_stop = tf.train.latest_checkpoint(str(self.ck))
            self.current = Run(self.cwd, self.data_dir, *RUN_FLAGS, '--resume', tag='resumed')
            self.resumed = self.current.result()
        except BaseException as exc:  # re-raised by the test
            self.error = exc


class Background:
    """Every command-line run of this module, started at once."""

    def __init__(self, root, data_dir):
        self.reference = Run(root / 'reference', data_dir, *RUN_FLAGS, tag='reference')
        self.chain = ResumeChain(root / 'resumed', data_dir)
        self.chain.start()
        self.preempted = Preempted(root / 'preempted', data_dir)
        self.preempted.start()

    def finish_chain(self, timeout=600):
        self.chain.join(timeout)
        if self.chain.is_alive():
            self.chain.stop()
            self.chain.join(30)
            raise AssertionError(f'the interrupted run did not finish in {timeout} s')
        if self.chain.error is not None:
            raise self.chain.error
        return self.chain.runs

    def finish_preempted(self, timeout=600):
        self.preempted.join(timeout)
        assert not self.preempted.is_alive(), f'the preempted run did not finish in {timeout} s'
        if self.preempted.error is not None:
            raise self.preempted.error
        return self.preempted

    def stop(self):
        self.chain.stop()
        self.reference.kill()
        if self.preempted.current is not None:
            self.preempted.current.kill()
