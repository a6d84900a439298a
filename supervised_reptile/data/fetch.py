"""The Python half of fetch_data.sh: checking data sets, and fetching Mini-ImageNet.

The script runs `python3 -m supervised_reptile.fetch_data <command>` with whatever python3
the machine has, so this module needs only the standard library (and `standard`). It
decodes images with Pillow when that python3 has it; without, it checks only each image's
start and end markers, which still catches a download cut short.

  verify omniglot DIR [--full]     20 whole drawings per character; --full: and the
                                   release's 50 alphabets and 1623 characters
  verify omniglot_runs DIR         Lake's 20 one-shot runs
  verify miniimagenet DIR [--metadata FOLDER]
                                   each class's images whole, the classes and counts those
                                   of FOLDER's CSVs, else of the original's split
  fetch-miniimagenet STAGING --metadata SOURCE (--tar FILE | --url URL) --jobs N
                                   fetch into STAGING every image the metadata lists that
                                   is not there whole yet, then verify STAGING

verify's --label names the folder in the output (fetch_data.sh checks an Omniglot build in a
temporary folder before renaming it into place). Exit status: 1 when verification finds
problems (one line each on stderr), 2 when a fetch fails (one line on stderr).
"""

import argparse
import concurrent.futures
import functools
import io
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

from .reference import (MINIIMAGENET_WNIDS, OMNIGLOT_ALPHABETS, OMNIGLOT_CHARACTERS, OMNIGLOT_DRAWINGS,
                       OMNIGLOT_RUN_WAYS, OMNIGLOT_RUNS, miniimagenet_images, omniglot_answer_key)

try:
    from PIL import Image
except ImportError:
    Image = None

SPLITS = ('train', 'val', 'test')
# Every file of these formats starts and ends with these bytes; a cut-off download does not.
MARKERS = {'.JPEG': (b'\xff\xd8', b'\xff\xd9'), '.png': (b'\x89PNG\r\n\x1a\n', b'IEND\xaeB`\x82')}
FORMATS = {'.JPEG': 'JPEG', '.png': 'PNG'}
CHECKED = 'decoded' if Image else 'checked by their start and end markers only (python3 has no Pillow)'
METADATA_LIMIT = 1 << 20  # bytes: far more than a 600-line CSV


class FetchError(Exception):
    """A fetch that cannot go on; its message is fetch_data.sh's one-line error."""


# --- Checking images --------------------------------------------------------------------

def image_problem(data, suffix):
    """Why `data` is not a whole image of its format ('.JPEG' or '.png'), or None."""
    start, end = MARKERS[suffix]
    if not (data.startswith(start) and data.endswith(end)):
        return 'corrupt (cut short: no start or end marker)'
    if Image is None:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=[FORMATS[suffix]]) as image:
            image.draft(image.mode, (1, 1))  # JPEG: decode at 1/8 size, which still reads every byte
            image.load()
    except (OSError, SyntaxError, ValueError):  # what Pillow raises for undecodable data
        return 'corrupt (cannot decode)'
    return None


def check_folder(folder, suffix):
    """(number of whole `suffix` images in `folder`, [(name, problem)] for the others);
    a missing folder has none."""
    try:
        names = sorted(name for name in os.listdir(folder) if name.endswith(suffix))
    except FileNotFoundError:
        return 0, []
    bad = []
    for name in names:
        with open(os.path.join(folder, name), 'rb') as f:
            problem = image_problem(f.read(), suffix)
        if problem:
            bad.append((name, problem))
    return len(names) - len(bad), bad


def _ignore_sigint():
    """Leave Ctrl-C to the main process, which cancels the work (no traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def folder_problems(root, expected, suffix, label):
    """(number of whole images, problem lines) for `expected` ({folder relative to root:
    image count}, in the order to report): a line for each folder with another number of
    whole images and one for each broken image. Decoding runs in one process per core:
    60,000 JPEGs take minutes in one."""
    folders = list(expected)
    with concurrent.futures.ProcessPoolExecutor(initializer=_ignore_sigint) as pool:
        results = list(pool.map(check_folder, [os.path.join(root, f) for f in folders],
                                [suffix] * len(folders), chunksize=4))
    problems = []
    for folder, (whole, bad) in zip(folders, results):
        if whole != expected[folder]:
            problems.append(f'{label}/{folder}: {whole} of {expected[folder]} images')
        problems += [f'{label}/{folder}/{name}: {problem}' for name, problem in bad]
    return sum(whole for whole, _ in results), problems


def _text(path):
    """A text file's content; bytes that are not UTF-8 (a binary file) become U+FFFD."""
    return path.read_text(errors='replace')


def _subfolders(path):
    """Names of the folders in `path` (none if it is missing)."""
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


# --- Verifying data sets ----------------------------------------------------------------

def verify_omniglot(root, label, full):
    """Problem lines for an Omniglot folder (<alphabet>/<character>/*.png): characters
    without 20 whole drawings; with `full`, alphabet and character counts other than the
    release's."""
    characters = [f'{a}/{c}' for a in _subfolders(root) for c in _subfolders(root / a)]
    whole, problems = folder_problems(root, dict.fromkeys(characters, OMNIGLOT_DRAWINGS), '.png', label)
    alphabets = len(_subfolders(root))
    if full and (alphabets, len(characters)) != (OMNIGLOT_ALPHABETS, OMNIGLOT_CHARACTERS):
        problems.insert(0, f'{label}: {alphabets} alphabets and {len(characters)} characters, but the release '
                           f'has {OMNIGLOT_ALPHABETS} and {OMNIGLOT_CHARACTERS}')
    print(f'{label}: {alphabets} alphabets, {len(characters)} characters; {whole} PNGs {CHECKED}')
    return problems


def verify_omniglot_runs(root, label):
    """Problem lines for Lake's one-shot runs (runNN/{training,test}/*.png and
    runNN/class_labels.txt): runs without 20 whole drawings in each part or without 20
    label lines naming a test and a training drawing."""
    runs = [f'run{r:02d}' for r in range(1, OMNIGLOT_RUNS + 1)]
    expected = {f'{run}/{part}': OMNIGLOT_RUN_WAYS for run in runs for part in ('training', 'test')}
    whole, problems = folder_problems(root, expected, '.png', label)
    for run in runs:
        labels = root / run / 'class_labels.txt'
        key = omniglot_answer_key(_text(labels), run) if labels.is_file() else None
        if key is None or not all((root / path).is_file() for pair in key.items() for path in pair):
            problems.append(f'{label}/{run}/class_labels.txt: not {OMNIGLOT_RUN_WAYS} lines '
                            '"<test drawing> <training drawing>" naming each file of the run once')
    found = len(set(runs) & set(_subfolders(root)))
    print(f'{label}: {found} of {OMNIGLOT_RUNS} runs; {whole} PNGs {CHECKED}')
    return problems


def verify_miniimagenet(root, expected, label):
    """Problem lines for a Mini-ImageNet folder (<split>/<wnid>/*.JPEG) that should hold
    `expected` ({split: {wnid: image count}}): classes with missing or broken images, and
    class folders not expected."""
    counts = {f'{split}/{wnid}': count for split in SPLITS for wnid, count in expected[split].items()}
    whole, problems = folder_problems(root, counts, '.JPEG', label)
    for split in SPLITS:
        problems += [f'{label}/{split}/{wnid}: not a class of the {split} split'
                     for wnid in _subfolders(root / split) if wnid not in expected[split]]
    classes = '/'.join(str(len(_subfolders(root / split))) for split in SPLITS)
    print(f'{label}: {classes} {"/".join(SPLITS)} classes; {whole} JPEGs {CHECKED}')
    return problems


def standard_counts():
    """{split: {wnid: images}} of the original's Mini-ImageNet."""
    return {split: {wnid: miniimagenet_images(wnid) for wnid in wnids}
            for split, wnids in MINIIMAGENET_WNIDS.items()}


def image_counts(metadata):
    """{split: {wnid: images}} that `metadata` ({(split, wnid): entries}) lists."""
    return {split: {wnid: len(entries) for (entry_split, wnid), entries in metadata.items() if entry_split == split}
            for split in SPLITS}


# --- Metadata: the original's per-class CSVs ---------------------------------------------

def parse_metadata(text, wnid, source, count=None):
    """[(image name, first byte, last byte)] of one metadata CSV (lines
    `<wnid>_<n>.JPEG,<first>-<last>`, offsets into ILSVRC2012_img_train.tar). FetchError
    naming `source` if it is anything else (an HTML page, a Git LFS pointer, another class)
    or, with `count`, lists another number of images."""
    line_re = re.compile(rf'({re.escape(wnid)}_[\w-]+\.JPEG),(\d+)-(\d+)')
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = line_re.fullmatch(line.strip())
        if not match or int(match[2]) > int(match[3]):
            raise FetchError(f'{source} is not a Mini-ImageNet metadata CSV for {wnid}: line {number} is '
                             f'{line.strip()[:60]!r}')
        entries.append((match[1], int(match[2]), int(match[3])))
    if not entries:
        raise FetchError(f'{source} lists no images of {wnid}')
    if count is not None and len(entries) != count:
        raise FetchError(f'{source} lists {len(entries)} images of {wnid}, where the original\'s metadata '
                         f'lists {count}')
    return entries


def local_metadata(folder):
    """{(split, wnid): entries} from every <split>/<wnid>.csv of a local folder."""
    folder = pathlib.Path(folder)
    return {(split, csv.stem): parse_metadata(_text(csv), csv.stem, csv)
            for split in SPLITS for csv in sorted((folder / split).glob('*.csv'))}


def downloaded_metadata(url, cache, pool):
    """{(split, wnid): entries} of the original's 100 classes from `url`/<split>/<wnid>.csv,
    each checked to list that class's images; kept in `cache` across runs."""
    def fetch(key):
        split, wnid = key
        path = cache / split / f'{wnid}.csv'
        if not path.is_file():
            source = f'{url}/{split}/{wnid}.csv'
            _, body = curl(source, METADATA_LIMIT)
            parse_metadata(body.decode(errors='replace'), wnid, source, miniimagenet_images(wnid))
            write_atomically(path, body)
        return parse_metadata(_text(path), wnid, path, miniimagenet_images(wnid))

    keys = [(split, wnid) for split in SPLITS for wnid in MINIIMAGENET_WNIDS[split]]
    return dict(zip(keys, run_all(pool, fetch, keys)))


# --- Fetching Mini-ImageNet ---------------------------------------------------------------

def curl(url, limit, byte_range=None):
    """(HTTP status, body) of a GET by `curl -fL` (redirects followed, HTTP errors fail,
    transient errors retried). Reads at most `limit` + 1 bytes: a longer body is cut there
    and curl stopped (status None), so a server that ignores Range and sends the whole
    138 GB tar costs no more, whether or not it announces the length (which curl's
    --max-filesize needs)."""
    command = ['curl', '-fsSL', '--retry', '3', '--max-time', '600', '-o', '-', '-w', '%{stderr}%{http_code}']
    if byte_range:
        command += ['-r', byte_range]
    with subprocess.Popen([*command, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        body = proc.stdout.read(limit + 1)
        if len(body) > limit:
            proc.kill()
            return None, body
        err = proc.stderr.read().decode(errors='replace')
    if proc.returncode != 0:
        message = ' '.join(err[:-3].split()) or f'curl exit status {proc.returncode}'
        raise FetchError(f'download of {url} failed ({message}); check the network, re-run to resume')
    return err[-3:], body


class TarSource:
    """Byte ranges of a local ILSVRC2012_img_train.tar."""

    def __init__(self, path):
        self.name = path
        self.hint = 'IMAGENET_TAR must be the original ILSVRC2012_img_train.tar'
        self._fd = os.open(path, os.O_RDONLY)

    def read(self, first, last):
        return os.pread(self._fd, last - first + 1, first)


class UrlSource:
    """Byte ranges of ILSVRC2012_img_train.tar on a server that answers Range requests."""

    def __init__(self, url):
        self.name = url
        self.hint = 'check IMAGENET_URL or set IMAGENET_TAR'

    def read(self, first, last):
        size = last - first + 1
        status, body = curl(self.name, size, f'{first}-{last}')
        if status != '206':
            answer = (f'sent more than the {size} bytes asked for (reading stopped there)' if status is None
                      else f'answered HTTP {status}, not 206 Partial Content')
            raise FetchError(f'{self.name} does not serve byte ranges: for bytes {first}-{last} it {answer}; '
                             'IMAGENET_URL must answer Range requests, or set IMAGENET_TAR')
        return body


def write_atomically(path, data):
    """Write `data` to `path` through a .part file, so `path` never exists half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + '.part')
    part.write_bytes(data)
    os.replace(part, path)


def jpeg_problem(data, size):
    """Why `data` is not a whole JPEG of `size` bytes, or None."""
    return f'{len(data)} bytes, not {size}' if len(data) != size else image_problem(data, '.JPEG')


def fetch_image(source, folder, entry):
    """Store the image `entry` (name, first byte, last byte) of `source` in `folder`, unless
    an earlier run stored it whole; whether it was fetched. Only a whole image is stored:
    every byte, a JPEG that decodes."""
    name, first, last = entry
    path = folder / name
    if path.is_file() and not jpeg_problem(path.read_bytes(), last - first + 1):
        return False
    data = source.read(first, last)
    problem = jpeg_problem(data, last - first + 1)
    if problem:
        raise FetchError(f'bytes {first}-{last} of {source.name} ({name}) are not a whole JPEG: {problem}; '
                         f'{source.hint}')
    write_atomically(path, data)
    return True


def prune(staging, metadata):
    """Delete from `staging` what `metadata` does not list: .part files of an interrupted
    run, classes and images of other metadata."""
    for split in SPLITS:
        for wnid in _subfolders(staging / split):
            entries = metadata.get((split, wnid))
            if entries is None:
                shutil.rmtree(staging / split / wnid)
                continue
            names = {name for name, _, _ in entries}
            for path in (staging / split / wnid).iterdir():
                if path.name not in names:
                    path.unlink()


def run_all(pool, function, items):
    """[function(item) for item in items] on `pool`. The first exception cancels what has
    not started (what has finishes) and is raised."""
    futures = [pool.submit(function, item) for item in items]
    try:
        return [future.result() for future in futures]
    finally:
        for future in futures:
            future.cancel()


def fetch_images(staging, metadata, source, pool):
    """Fetch into staging/<split>/<wnid>/ every listed image not already stored whole."""
    fetched = 0
    for split in SPLITS:
        print(f'Fetching Mini-ImageNet {split} set ...', flush=True)
        for (entry_split, wnid), entries in metadata.items():
            if entry_split == split:
                print(f'Fetching wnid: {wnid}', flush=True)
                fetched += sum(run_all(pool, functools.partial(fetch_image, source, staging / split / wnid), entries))
    kept = sum(map(len, metadata.values())) - fetched
    if kept:
        print(f'Resumed: {kept} images were already in {staging}; fetched {fetched}')


def fetch_miniimagenet(args):
    """The fetch-miniimagenet command: fill the staging folder, then verify it."""
    staging = pathlib.Path(args.staging)
    cache = staging / '.metadata'
    source = TarSource(args.tar) if args.tar else UrlSource(args.url)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:  # threads wait for curl or disk
        local = _local_path(args.metadata)
        metadata = local_metadata(local) if local else downloaded_metadata(args.metadata, cache, pool)
        prune(staging, metadata)
        fetch_images(staging, metadata, source, pool)
    problems = verify_miniimagenet(staging, image_counts(metadata), args.staging)
    if not problems:
        shutil.rmtree(cache, ignore_errors=True)
    return problems


def _local_path(source):
    """The folder a local path or file:// URL names; None for a network URL."""
    path = source.removeprefix('file://')
    return None if '://' in path else path


# --- Command line -------------------------------------------------------------------------

def verify(args):
    """The verify command: problem lines of the folder args.dir."""
    root = pathlib.Path(args.dir)
    label = args.label or args.dir
    if not root.is_dir():
        return [f'{label}: missing; ./fetch_data.sh builds it']
    if args.dataset == 'omniglot':
        return verify_omniglot(root, label, args.full)
    if args.dataset == 'omniglot_runs':
        return verify_omniglot_runs(root, label)
    local = _local_path(args.metadata) if args.metadata else None
    expected = image_counts(local_metadata(local)) if local else standard_counts()
    return verify_miniimagenet(root, expected, label)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python3 -m supervised_reptile.fetch_data')
    commands = parser.add_subparsers(dest='command', required=True)
    check = commands.add_parser('verify')
    check.add_argument('dataset', choices=['omniglot', 'omniglot_runs', 'miniimagenet'])
    check.add_argument('dir')
    check.add_argument('--full', action='store_true')
    check.add_argument('--metadata')
    check.add_argument('--label')
    fetch = commands.add_parser('fetch-miniimagenet')
    fetch.add_argument('staging')
    fetch.add_argument('--metadata', required=True)
    fetch.add_argument('--tar')
    fetch.add_argument('--url')
    fetch.add_argument('--jobs', type=int, required=True)
    return parser.parse_args(argv)


def main(argv=None):
    """Run one command; exit 1 with one stderr line per problem, 2 on a failed fetch."""
    args = parse_args(argv)
    try:
        problems = fetch_miniimagenet(args) if args.command == 'fetch-miniimagenet' else verify(args)
    except FetchError as exc:
        print(f'fetch_data.sh: {exc}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    for line in problems:
        print(line, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
