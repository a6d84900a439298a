"""Print the measurements behind tests/test_golden.py's bounds, with the test's own code.

    python tests/golden/floors.py [--reorderings 11] [--bf16-reorderings 5]

For every golden case of the source the tests use (GOLDEN_DIR, ../shared, or the shipped
copies): per quantity, the max abs difference between our run and the original, our noise
floor (the largest difference between any two of our runs: recorded order and
reorderings of the inner batches) and their ratio; for float32 cases the same in
bfloat16 as relative L2 errors. The last column plays the same game with our own runs:
each reordering in turn stands for the original, against the floor of the other runs;
it shows the largest ratio that a summation-order change alone produced. Run it once
with TF_ENABLE_ONEDNN_OPTS=1 and once without.
"""

import argparse
import itertools
import os
import pathlib
import sys

TESTS = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]  # this checkout's package, then the tests
import test_golden as golden  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reorderings', type=int, default=golden.REORDERINGS)
    parser.add_argument('--bf16-reorderings', type=int, default=golden.BF16_REORDERINGS)
    args = parser.parse_args()
    print(f'TF_ENABLE_ONEDNN_OPTS={os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")}, '
          f'{args.reorderings} reorderings ({args.bf16_reorderings} in bfloat16)')
    print('| case | quantity | ours vs original | floor | ratio | reordering vs rest, worst ratio |')
    print('| --- | --- | --- | --- | --- | --- |')
    for case_id in golden.CASES:
        runs = golden._runs(case_id, reorderings=args.reorderings)
        ours = [golden._ours(case_id, run) for run in runs]
        recorded = golden._recorded(case_id)
        floor = golden._floor(ours)
        for quantity, value in recorded.items():
            if value.size:
                distance = lambda a, b: golden._max_abs(ours[a][quantity], ours[b][quantity])
                _row(case_id, quantity, golden._max_abs(ours[0][quantity], value), floor[quantity], '.2g',
                     _held_out(len(runs), distance))
        if golden._dtype(case_id) != 'float32':
            continue
        runs = golden._runs(case_id, 'bfloat16', args.bf16_reorderings)
        errors = golden._relative_errors(case_id, runs[0])
        spreads = [golden._relative_errors(case_id, a, b) for a, b in itertools.combinations(runs, 2)]
        pairs = dict(zip(itertools.combinations(range(len(runs)), 2), spreads))
        for quantity, error in errors.items():
            distance = lambda a, b: pairs[min(a, b), max(a, b)][quantity]
            _row(case_id, f'bfloat16 {quantity} (rel. L2)', error, max(s[quantity] for s in spreads), '.3f',
                 _held_out(len(runs), distance))


def _held_out(num_runs, distance):
    """The largest ratio distance(h, 0) / floor of the runs other than h, over the
    reorderings h (run 0 is the recorded order)."""
    ratios = []
    for held in range(1, num_runs):
        rest = [r for r in range(num_runs) if r != held]
        floor = max(distance(a, b) for a, b in itertools.combinations(rest, 2))
        ratios.append(distance(held, 0) / floor if floor else float('inf'))
    return max(ratios)


def _row(case_id, quantity, diff, floor, fmt, held_out):
    ratio = diff / floor if floor else float('inf')
    print(f'| {case_id} | {quantity} | {diff:{fmt}} | {floor:{fmt}} | {ratio:.2f} | {held_out:.2f} |', flush=True)


if __name__ == '__main__':
    main()
