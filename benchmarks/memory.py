"""Peak memory and time of the paper's largest command: 5-shot 5-way Mini-ImageNet.

    python benchmarks/memory.py [--eval-samples 25] [--eval-parallel N ...]

Runs the README's 5-shot Mini-ImageNet command verbatim, with `--meta-iters 1
--eval-samples 25` (one meta-iteration, then 25 evaluation tasks on each of the three
splits), on a generated tree of 64/16/20 classes of 84x84 JPEGs, and reports the child
process's peak resident memory (as `/usr/bin/time -f %M` does) and its time. With
`--eval-parallel`, once per value given (besides the default, memory-derived setting).
The target: at most 4 GB at the default setting (a 16 GB machine must run it). Prints
one JSON line per run, then a table.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parent.parent
# The README's 5-shot 5-way Mini-ImageNet command.
COMMAND = ('--inner-batch 10 --inner-iters 8 --meta-step 1 --meta-batch 5 --meta-iters 200000 --eval-batch 15 '
           '--eval-iters 88 --learning-rate 0.00022 --meta-step-final 0 --train-shots 15 --checkpoint ckpt_m55').split()
CLASSES = {'train': 64, 'val': 16, 'test': 20}
IMAGES_PER_CLASS = 30  # enough for 15 training shots and 5+1 evaluation shots


def make_tree(root):
    """data/miniimagenet with random 84x84 JPEGs (a few distinct ones, copied)."""
    rng = np.random.default_rng(0)
    sources = []
    for k in range(8):
        path = root / f'source{k}.JPEG'
        Image.fromarray(rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)).save(path)
        sources.append(path.read_bytes())
    for split, count in CLASSES.items():
        for c in range(count):
            folder = root / 'data' / 'miniimagenet' / split / f'n{split[:2]}{c:06d}'
            folder.mkdir(parents=True)
            for i in range(IMAGES_PER_CLASS):
                (folder / f'{i:03d}.JPEG').write_bytes(sources[(c + i) % len(sources)])


def run(root, eval_samples, eval_parallel):
    """One run of the command: {peak_rss_mb, seconds, ...}."""
    args = [sys.executable, str(REPO / 'run_miniimagenet.py'), *COMMAND, '--meta-iters', '1',
            '--eval-samples', str(eval_samples)]
    if eval_parallel:
        args += ['--eval-parallel', str(eval_parallel)]
    folder = root / f'run-{eval_parallel or "default"}'
    folder.mkdir()
    (folder / 'data').symlink_to(root / 'data')
    start = time.perf_counter()
    with open(folder / 'stdout', 'w') as out, open(folder / 'stderr', 'w') as err:  # files: pipes could fill
        proc = subprocess.Popen(args, cwd=folder, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = (folder / 'stdout').read_text(), (folder / 'stderr').read_text()
    if proc.returncode != 0:
        raise SystemExit(f'run failed ({proc.returncode}): {stderr}')
    return {'name': 'miniimagenet_5shot_command', 'eval_parallel': eval_parallel or 'default',
            'eval_tasks': 3 * eval_samples, 'peak_rss_mb': usage.ru_maxrss / 1024, 'seconds': seconds,
            'seconds_per_task': seconds / (3 * eval_samples), 'accuracy_lines': stdout.splitlines()[-3:]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--eval-samples', type=int, default=25)
    parser.add_argument('--eval-parallel', type=int, nargs='*', default=[], help='also run with these settings')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        make_tree(root)
        results = []
        for setting in [None] + args.eval_parallel:
            result = run(root, args.eval_samples, setting)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(f"\n{'--eval-parallel':>16} {'peak RSS (MB)':>14} {'seconds':>9} {'s/task':>8}", file=sys.stderr)
    for r in results:
        print(f"{r['eval_parallel']:>16} {r['peak_rss_mb']:14.0f} {r['seconds']:9.1f} {r['seconds_per_task']:8.2f}",
              file=sys.stderr)


if __name__ == '__main__':
    main()
