"""Latency of the web demo's answer: rasterize the drawings, fine-tune, classify.

    python benchmarks/demo_latency.py [--model PATH ...] [--repeats N]

Default model: the published web-demo parameters in ../shared. Sends the demo's default
drawing (../shared/data/webdemo/default_drawing.json) through the same Classifier the
server uses; prints one JSON line per model (`name`, `model`, `seconds_median`,
`seconds_max`) and a table. The target is < 0.3 s for 3 ways.
"""

import argparse
import json
import pathlib
import statistics
import sys
import time

from supervised_reptile import demo

WEBDEMO = pathlib.Path(__file__).resolve().parents[1] / 'supervised_reptile' / 'assets' / 'webdemo'


def measure(model, drawings, repeats):
    """(median, max) seconds of one answer, after the warm-up the server also does."""
    algo = demo.load_model(model, len(drawings) - 1)
    classifier = demo.Classifier(algo)
    classifier.warm_up()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier(drawings)
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', nargs='+', default=[str(WEBDEMO / 'reptile_webdemo_omniglot_3way.npz')])
    parser.add_argument('--repeats', type=int, default=20)
    args = parser.parse_args()
    drawings = json.loads((WEBDEMO / 'default_drawing.json').read_text())['paths']
    rows = []
    for model in args.model:
        median, worst = measure(model, drawings, args.repeats)
        rows.append({'name': 'demo_3way', 'model': model, 'seconds_median': median, 'seconds_max': worst})
        print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        print(f"{row['model']:60} median {1000 * row['seconds_median']:6.1f} ms  max "
              f"{1000 * row['seconds_max']:6.1f} ms", file=sys.stderr)


if __name__ == '__main__':
    main()
