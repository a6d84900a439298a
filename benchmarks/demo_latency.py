"""Latency of the web demo's answer (rasterize the drawings, fine-tune, classify) on both
engines, beside the original project's own page.

    python benchmarks/demo_latency.py [--model PATH ...] [--repeats N] [--original-git GIT_DIR]
                                      [--backends cpu webgl]

Every engine answers the original demo's default drawing (../shared/data/webdemo/
default_drawing.json), after WARM_UP answers (the JavaScript engines compile their hot
code during the first few):
- `python`: the demo server's Classifier (drawing.py, finetune.classify), in this process;
- `browser-<backend>`: the page `reptile-export MODEL --web` writes, opened from disk in
  headless Chromium, fine-tuning in its worker on TensorFlow.js's backend (the time the
  page measures from its first rasterized pixel to the probabilities);
- `original-page`: with --original-git (a clone of openai/supervised-reptile, its .git
  folder), the original's web/ folder built by its own build.sh into a temporary folder and
  opened from disk in the same Chromium run, timed the same way (its page's _runNetwork to
  its _gotResult), for the web-demo weights it ships.
Browser answers alternate between the pages round by round, so that they share the
machine's load. Prints one JSON line per engine and model (`engine`, `model`, `steps`,
`seconds_median`, `seconds_max`, `repeats`) and a table on stderr.
"""

import argparse
import contextlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from supervised_reptile.running.startup import quiet_tensorflow

quiet_tensorflow()  # before the imports below, which start TensorFlow

from supervised_reptile import export  # noqa: E402
from supervised_reptile.assets import WEBDEMO  # noqa: E402
from supervised_reptile.running import checkpoint  # noqa: E402
from supervised_reptile.tools import finetune, server  # noqa: E402
WARM_UP = 3
CHROME_FLAGS = ('--headless=new', '--no-sandbox', '--enable-unsafe-swiftshader', '--disable-dev-shm-usage',
                '--no-first-run', '--disable-background-networking', '--disable-component-update', '--window-size=1000,900')
OURS = ('const d = window.reptileDemo, done = arguments[arguments.length - 1];'
        'if (d.error) done(null); else d.answerFor(null).then((a) => done(a.ms / 1000));')
ORIGINAL = '''const done = arguments[arguments.length - 1];
if (!window.__ui) {  // a UI of our own, whose worker reports to window.__finish
  document.getElementsByClassName('few-shot-container')[0].innerHTML = '';
  window.__ui = new UI();
  window.__ui._gotResult = () => window.__finish();
}
const start = performance.now();
window.__finish = () => done((performance.now() - start) / 1000);
window.__ui._runNetwork();'''


def python_engine(model, drawings, repeats):
    """Seconds per answer of the demo server's Classifier (after its warm-up)."""
    classifier = server.Classifier(server.load_model(model, len(drawings) - 1))
    classifier.warm_up()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier(drawings)
        times.append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def chromium():
    """A headless Chromium (system packages) under Selenium."""
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get('CHROMIUM', '/usr/bin/chromium')
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    os.environ['SE_OFFLINE'] = 'true'
    service = webdriver.ChromeService(executable_path=os.environ.get('CHROMEDRIVER', '/usr/bin/chromedriver'))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_script_timeout(600)
    try:
        yield driver
    finally:
        driver.quit()


def build_original(git_dir, folder):
    """The original's web/ folder built by its build.sh in `folder`: its index.html, or None
    and the reason it could not be built."""
    try:
        archive = subprocess.run(['git', f'--git-dir={git_dir}', 'archive', 'HEAD', 'web'], check=True,
                                 capture_output=True).stdout
        subprocess.run(['tar', '-x', '-C', str(folder)], input=archive, check=True, capture_output=True)
        subprocess.run(['bash', 'build.sh'], cwd=folder / 'web', check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f'cannot build the original page from {git_dir}: {exc}'
    return folder / 'web' / 'index.html', None


def pages_to_time(args, folder):
    """{(engine, model): (page URL, timing script)}: our page exported for each model and
    backend, and the original's page if --original-git builds."""
    pages = {}
    for i, model in enumerate(args.model):
        with contextlib.redirect_stdout(sys.stderr):  # stdout: JSON lines only
            export.main([model, '--web', str(folder / f'page{i}')])
        for backend in args.backends:
            pages[(f'browser-{backend}', model)] = ((folder / f'page{i}' / 'index.html').as_uri()
                                                    + f'?backend={backend}', OURS)
    if args.original_git:
        index, reason = build_original(args.original_git, folder)
        if index:
            pages[('original-page', 'its own model.js (the web-demo weights)')] = (index.as_uri(), ORIGINAL)
        else:
            print(json.dumps({'engine': 'original-page', 'skipped': reason}), flush=True)
    return pages


def time_pages(pages, repeats):
    """{key: [seconds per answer]} for pages {key: (URL, script)}, each in its own Chromium,
    answered in turns (after WARM_UP answers each)."""
    times = {key: [] for key in pages}
    with contextlib.ExitStack() as stack:
        drivers = {key: stack.enter_context(chromium()) for key in pages}
        for key, (url, script) in pages.items():
            drivers[key].get(url)
            wait_until_ready(drivers[key], script)
        for _ in range(repeats):
            for key, (url, script) in pages.items():
                times[key].append(drivers[key].execute_async_script(script))
    return times


def wait_until_ready(driver, script):
    """Wait for the page's first answer (ours) or its UI (the original's), then warm up."""
    for _ in range(1200):
        if driver.execute_script('return !!(window.UI || (window.reptileDemo && (window.reptileDemo.last || '
                                 'window.reptileDemo.error)))'):
            break
        time.sleep(0.1)
    for _ in range(WARM_UP):
        if driver.execute_async_script(script) is None:
            raise SystemExit(f'{driver.current_url}: ' + driver.find_element('id', 'status').text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', nargs='+', default=[str(WEBDEMO / 'reptile_webdemo_omniglot_3way.npz')])
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--backends', nargs='*', default=['cpu'], help='TF.js backends of the browser engine')
    parser.add_argument('--original-git', help="a clone's .git folder of openai/supervised-reptile")
    args = parser.parse_args()
    drawings = json.loads((WEBDEMO / 'default_drawing.json').read_text())['paths']
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pages = pages_to_time(args, pathlib.Path(tmp))
        measured = time_pages(pages, args.repeats)
        measured.update({('python', model): python_engine(model, drawings, args.repeats) for model in args.model})
    for (engine, model), times in measured.items():
        steps = 5 if engine == 'original-page' else fine_tune_steps(model)
        rows.append({'name': 'demo_answer', 'engine': engine, 'model': model, 'steps': steps,
                     'seconds_median': statistics.median(times), 'seconds_max': max(times), 'repeats': len(times)})
        print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        print(f"{row['engine']:14} {row['steps']:3} steps  median {1000 * row['seconds_median']:7.1f} ms  "
              f"max {1000 * row['seconds_max']:7.1f} ms  {row['model']}", file=sys.stderr)


def fine_tune_steps(model):
    """Inner steps per answer of a model (its own rule)."""
    algo = checkpoint.load_pretrained(model)
    return finetune.fine_tune_steps(algo, algo.model.output_shape[-1])[0]


if __name__ == '__main__':
    main()
