"""fetch_data.sh: builds the original's data/ layout from local sources, idempotently,
verifies it, and leaves nothing half-done behind when it fails; `verify` re-checks data/.

No network here: Omniglot comes from the ../shared mirror, Mini-ImageNet from a small fake
ILSVRC2012_img_train.tar generated with the real layout (per-class tars inside one tar),
read directly or through a byte-range HTTP server on 127.0.0.1 that each test starts.
"""

import http.server
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time

import pytest
from PIL import Image

from helpers import REPO_DIR, fetch_env, run_fetch
from supervised_reptile.data.fetch import FetchError, parse_metadata
from supervised_reptile.data.reference import MINIIMAGENET_WNIDS, miniimagenet_images

SMALL_SETS = 'images_background_small1 images_background_small2'


def tree(root):
    """{relative path: (size, mtime)} of every file under root."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob('*')) if p.is_file()}


def assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


# --- Omniglot ---------------------------------------------------------------------------

def test_omniglot_merges_overlapping_sets_into_alphabet_folders(omniglot_data):
    alphabets = sorted(p.name for p in omniglot_data.iterdir())
    assert alphabets == ['Balinese', 'Early_Aramaic', 'Greek', 'Japanese_(katakana)', 'Korean',
                         'Latin', 'Sanskrit', 'Tagalog']
    characters = [c for a in omniglot_data.iterdir() for c in a.iterdir()]
    assert len(characters) == 242
    assert all(c.name.startswith('character') for c in characters)
    assert all(len(list(c.glob('*.png'))) == 20 for c in characters)


def test_omniglot_leaves_no_temporary_folders(omniglot_data):
    assert sorted(p.name for p in omniglot_data.parent.iterdir()) == ['omniglot', 'omniglot_runs']


def test_omniglot_fetches_lakes_one_shot_runs_into_their_own_folder(omniglot_data):
    runs = omniglot_data.parent / 'omniglot_runs'
    assert sorted(p.name for p in runs.iterdir()) == [f'run{r:02d}' for r in range(1, 21)]
    for run in runs.iterdir():
        assert sorted(p.name for p in (run / 'training').iterdir()) == [f'class{c:02d}.png' for c in range(1, 21)]
        assert sorted(p.name for p in (run / 'test').iterdir()) == [f'item{c:02d}.png' for c in range(1, 21)]
        lines = (run / 'class_labels.txt').read_text().splitlines()
        assert len(lines) == 20 and lines[0].startswith(f'{run.name}/test/item01.png {run.name}/training/class')


def test_verify_omniglot_prints_counts_and_checks_the_release_counts(omniglot_data):
    # The small sets pass the per-character checks (the build verified them) but, with the
    # default OMNIGLOT_SETS, not the full release's 50 alphabets and 1623 characters.
    result = run_fetch(omniglot_data.parent.parent, 'verify', 'omniglot')
    assert result.returncode == 1
    assert result.stdout.splitlines() == ['data/omniglot: 8 alphabets, 242 characters; 4840 PNGs decoded',
                                          'data/omniglot_runs: 20 of 20 runs; 800 PNGs decoded']
    assert result.stderr.splitlines() == [
        'data/omniglot: 8 alphabets and 242 characters, but the release has 50 and 1623']


def test_verify_omniglot_names_each_broken_character_and_run(omniglot_data, tmp_path):
    shutil.copytree(omniglot_data / 'Greek', tmp_path / 'data' / 'omniglot' / 'Greek')
    shutil.copytree(omniglot_data.parent / 'omniglot_runs', tmp_path / 'data' / 'omniglot_runs')
    character = tmp_path / 'data' / 'omniglot' / 'Greek' / 'character03'
    drawings = sorted(character.iterdir())
    drawings[0].unlink()
    drawings[1].write_bytes(drawings[1].read_bytes()[:100])
    (tmp_path / 'data' / 'omniglot_runs' / 'run07' / 'test' / 'item05.png').unlink()
    result = run_fetch(tmp_path, 'verify', OMNIGLOT_SETS=SMALL_SETS)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        'data/omniglot/Greek/character03: 18 of 20 images',
        f'data/omniglot/Greek/character03/{drawings[1].name}: corrupt (cut short: no start or end marker)',
        'data/omniglot_runs/run07/test: 19 of 20 images',
        'data/omniglot_runs/run07/class_labels.txt: not 20 lines "<test drawing> <training drawing>" naming '
        'each file of the run once']


@pytest.fixture(scope='module')
def file_url_root(omniglot_mirror, tmp_path_factory):
    """A folder where fetch_data.sh fetched Omniglot from a file:// URL."""
    root = tmp_path_factory.mktemp('file_url')
    result = run_fetch(root, 'omniglot', OMNIGLOT_URL=omniglot_mirror.as_uri(),
                       OMNIGLOT_SETS=SMALL_SETS)
    assert result.returncode == 0, result.stderr
    assert 'Fetching omniglot/images_background_small1 ...' in result.stdout
    assert 'Extracting omniglot/images_background_small2 ...' in result.stdout
    return root


def test_omniglot_file_url_gives_same_tree_as_folder(file_url_root, omniglot_data):
    assert tree(file_url_root / 'data' / 'omniglot').keys() == tree(omniglot_data).keys()


def test_rerun_with_complete_data_succeeds_and_changes_nothing(file_url_root):
    before = tree(file_url_root / 'data')
    start = time.monotonic()
    # An unusable source proves the re-run does not even look at it.
    result = run_fetch(file_url_root, 'omniglot', OMNIGLOT_URL='/nonexistent')
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 5
    assert 'skipping' in result.stdout
    assert tree(file_url_root / 'data') == before


def _path_without_unzip(tmp_path):
    """A PATH as on a fresh Debian, which has python3 but not unzip: only the other tools used."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for tool in ['bash', 'mkdir', 'mktemp', 'rm', 'cp', 'mv', 'grep', 'dirname']:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / 'python3').symlink_to(sys.executable)
    return str(bin_dir)


def test_omniglot_extracts_with_python_when_unzip_is_missing(omniglot_mirror, tmp_path):
    result = run_fetch(tmp_path, 'omniglot', PATH=_path_without_unzip(tmp_path), OMNIGLOT_URL=str(omniglot_mirror),
                       OMNIGLOT_SETS='images_background_small1')
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / 'data' / 'omniglot').glob('*/*/*.png'))) == 136 * 20


@pytest.mark.parametrize('content, words', [
    (b'version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 9464212\n', ['Git LFS pointer']),
    (b'<!DOCTYPE html>\n<html><body>Not found</body></html>\n', ['HTML page']),
])
def test_omniglot_zip_that_is_not_a_zip_fails_naming_what_it_is(omniglot_mirror, tmp_path, content, words):
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    (mirror / 'images_background.zip').write_bytes(content)
    result = run_fetch(tmp_path, 'omniglot', OMNIGLOT_URL=mirror.as_uri(), OMNIGLOT_SETS='images_background',
                       OMNIGLOT_RUNS_URL=str(omniglot_mirror / 'all_runs.zip'))
    assert_one_line_error(result, 'images_background.zip', *words)
    assert list((tmp_path / 'data').iterdir()) == []


def test_missing_omniglot_zip_fails_cleanly(omniglot_mirror, tmp_path):
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    shutil.copy(omniglot_mirror / 'images_background_small1.zip', mirror)
    result = run_fetch(tmp_path, 'omniglot', OMNIGLOT_URL=str(mirror), OMNIGLOT_SETS=SMALL_SETS)
    assert_one_line_error(result, 'images_background_small2.zip', 'OMNIGLOT_URL')
    assert not (tmp_path / 'data' / 'omniglot').exists()


def test_missing_omniglot_folder_fails_cleanly(tmp_path):
    result = run_fetch(tmp_path, 'omniglot', OMNIGLOT_URL=str(tmp_path / 'absent'))
    assert_one_line_error(result, 'absent', 'OMNIGLOT_URL')
    assert not (tmp_path / 'data' / 'omniglot').exists()


def test_corrupt_zip_midway_removes_partial_extraction(omniglot_mirror, tmp_path):
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    shutil.copy(omniglot_mirror / 'images_background_small1.zip', mirror)
    shutil.copy(omniglot_mirror / 'all_runs.zip', mirror)
    (mirror / 'images_background_small2.zip').write_bytes(b'not a zip')
    result = run_fetch(tmp_path, 'omniglot', OMNIGLOT_URL=str(mirror), OMNIGLOT_SETS=SMALL_SETS)
    assert result.returncode != 0
    assert list((tmp_path / 'data').iterdir()) == []


@pytest.mark.parametrize('unzip', ['unzip', 'python'])
def test_damaged_zip_fails_in_one_line_with_status_2(omniglot_mirror, tmp_path, unzip):
    """A zip cut short (a valid start, then nothing) ends in one line of ours and status 2,
    not unzip's own lines and status (1, 9, 50), with unzip or Python's zipfile."""
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    data = (omniglot_mirror / 'images_background_small1.zip').read_bytes()
    (mirror / 'images_background_small1.zip').write_bytes(data[:len(data) // 2])
    shutil.copy(omniglot_mirror / 'all_runs.zip', mirror)
    env = {'PATH': _path_without_unzip(tmp_path)} if unzip == 'python' else {}
    result = run_fetch(tmp_path, 'omniglot', OMNIGLOT_URL=str(mirror), OMNIGLOT_SETS='images_background_small1',
                       **env)
    assert_one_line_error(result, 'cannot extract', 'images_background_small1.zip', 'damaged')
    assert list((tmp_path / 'data').iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs: room for one small Omniglot zip, not for its 2862 extracted files."""
    disk = tmp_path / 'disk'
    disk.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(disk)], capture_output=True).returncode:
        pytest.skip('cannot mount a tmpfs here (needs root): the full-disk case is not run')
    yield disk
    subprocess.run(['umount', str(disk)], check=True)


def test_full_disk_fails_in_one_line_without_asking(omniglot_mirror, small_disk):
    """A disk that fills up while extracting ends in one line and status 2, at once: unzip
    never stops to ask "Continue? (y/n)" (stdin is a pipe that stays open here), and no
    partial extraction remains."""
    proc = subprocess.run(['bash', str(REPO_DIR / 'fetch_data.sh'), 'omniglot'], cwd=small_disk,
                          env=fetch_env(OMNIGLOT_URL=str(omniglot_mirror), OMNIGLOT_SETS='images_background_small1'),
                          stdin=subprocess.PIPE, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert 'disk is full' in lines[0]
    assert list((small_disk / 'data').iterdir()) == []


def test_ctrl_c_removes_partial_extraction(omniglot_mirror, tmp_path):
    # A stand-in unzip that hangs, so the interrupt lands in the middle of the work. Python,
    # so that Ctrl-C ends it wherever it lands (a shell script could finish `touch` and sleep on).
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    started = tmp_path / 'unzip_started'
    (bin_dir / 'unzip').write_text(f'#!{sys.executable}\nimport pathlib, time\n'
                                   f'pathlib.Path({str(started)!r}).touch()\ntime.sleep(30)\n')
    (bin_dir / 'unzip').chmod(0o755)
    env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}',
               OMNIGLOT_URL=str(omniglot_mirror), OMNIGLOT_SETS=SMALL_SETS)
    proc = subprocess.Popen(['bash', str(REPO_DIR / 'fetch_data.sh'), 'omniglot'], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
        assert len(list((tmp_path / 'data').iterdir())) == 1  # the temporary folder
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert proc.wait(timeout=20) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert list((tmp_path / 'data').iterdir()) == []


# --- Mini-ImageNet ----------------------------------------------------------------------

FAKE_SPLITS = {'train': ['n01532829', 'n01558993'], 'val': ['n01855672'], 'test': ['n01930112']}


def _jpeg(seed):
    image = Image.new('RGB', (20, 30), ((seed * 40) % 256, (seed * 90) % 256, 128))
    buffer = io.BytesIO()
    image.save(buffer, format='JPEG')
    return buffer.getvalue()


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope='module')
def fake_imagenet(tmp_path_factory):
    """(tar path, metadata folder, {split/wnid/name: JPEG bytes}) mimicking the real release:
    ILSVRC2012_img_train.tar holds one uncompressed <wnid>.tar per class, which holds the JPEGs."""
    root = tmp_path_factory.mktemp('imagenet')
    images = {}
    outer_path = root / 'ILSVRC2012_img_train.tar'
    with tarfile.open(outer_path, 'w', format=tarfile.USTAR_FORMAT) as outer:
        _add(outer, 'n09999999.tar', b'')  # a class outside Mini-ImageNet, to shift offsets
        for split, wnids in FAKE_SPLITS.items():
            for wnid in wnids:
                inner = io.BytesIO()
                with tarfile.open(fileobj=inner, mode='w', format=tarfile.USTAR_FORMAT) as tar:
                    for k in range(3):
                        name = f'{wnid}_{k + 10}.JPEG'
                        images[f'{split}/{wnid}/{name}'] = _jpeg(len(images))
                        _add(tar, name, images[f'{split}/{wnid}/{name}'])
                _add(outer, f'{wnid}.tar', inner.getvalue())
    # Byte ranges as in the original's CSVs: offset of the inner tar plus offset in it, inclusive.
    meta = root / 'metadata'
    with tarfile.open(outer_path) as outer:
        for member in outer.getmembers():
            wnid = member.name[:-4]
            split = next((s for s, w in FAKE_SPLITS.items() if wnid in w), None)
            if split is None:
                continue
            (meta / split).mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=outer.extractfile(member)) as inner:
                rows = [f'{m.name},{member.offset_data + m.offset_data}-'
                        f'{member.offset_data + m.offset_data + m.size - 1}\n' for m in inner]
            (meta / split / f'{wnid}.csv').write_text(''.join(rows))
    return outer_path, meta, images


def assert_miniimagenet(root, images):
    """data/miniimagenet holds exactly `images`, and data/ nothing else (no staging folder)."""
    out = root / 'data' / 'miniimagenet'
    found = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob('*') if p.is_file()}
    assert found == images
    assert [p.name for p in (root / 'data').iterdir()] == ['miniimagenet']


FAKE_SUMMARY = 'data/.miniimagenet.partial: 2/1/1 train/val/test classes; 12 JPEGs decoded'


def test_miniimagenet_cuts_images_out_of_local_tar(fake_imagenet, tmp_path):
    tar_path, meta, images = fake_imagenet
    result = run_fetch(tmp_path, 'miniimagenet', IMAGENET_TAR=str(tar_path),
                       MINIIMAGENET_METADATA=str(meta))
    assert result.returncode == 0, result.stderr
    assert 'Fetching wnid: n01532829' in result.stdout
    assert result.stdout.splitlines()[-2:] == [FAKE_SUMMARY, 'Renamed data/.miniimagenet.partial to data/miniimagenet']
    assert_miniimagenet(tmp_path, images)


def test_wrong_tar_fails_without_keeping_images(fake_imagenet, tmp_path):
    _, meta, _ = fake_imagenet
    wrong = tmp_path / 'wrong.tar'
    wrong.write_bytes(b'\0' * 100000)
    result = run_fetch(tmp_path, 'miniimagenet', IMAGENET_TAR=str(wrong),
                       MINIIMAGENET_METADATA=str(meta))
    assert_one_line_error(result, 'not a whole JPEG', 'IMAGENET_TAR')
    assert not (tmp_path / 'data' / 'miniimagenet').exists()
    assert list((tmp_path / 'data').rglob('*.JPEG')) == []


def test_missing_imagenet_tar_fails_cleanly(fake_imagenet, tmp_path):
    _, meta, _ = fake_imagenet
    result = run_fetch(tmp_path, 'miniimagenet', IMAGENET_TAR=str(tmp_path / 'absent.tar'),
                       MINIIMAGENET_METADATA=str(meta))
    assert_one_line_error(result, 'absent.tar', 'IMAGENET_TAR')
    assert not (tmp_path / 'data').exists()


def test_missing_metadata_folder_fails_cleanly(fake_imagenet, tmp_path):
    tar_path, _, _ = fake_imagenet
    result = run_fetch(tmp_path, 'miniimagenet', IMAGENET_TAR=str(tar_path),
                       MINIIMAGENET_METADATA=str(tmp_path / 'absent'))
    assert_one_line_error(result, 'absent', 'MINIIMAGENET_METADATA')
    assert not (tmp_path / 'data').exists()


def test_imagenet_url_must_be_http(fake_imagenet, tmp_path):
    tar_path, meta, _ = fake_imagenet
    result = run_fetch(tmp_path, 'miniimagenet', IMAGENET_URL=tar_path.as_uri(), MINIIMAGENET_METADATA=str(meta))
    assert_one_line_error(result, 'IMAGENET_URL', 'http', 'IMAGENET_TAR')
    assert not (tmp_path / 'data').exists()


# Two lines of the original's metadata/miniimagenet/train/n01532829.csv (of its 600).
REAL_CSV = 'n01532829_100.JPEG,1907826176-1907937291\nn01532829_10032.JPEG,1932231680-1932423711\n'


def test_metadata_parser_takes_only_the_originals_csv_format():
    assert parse_metadata(REAL_CSV, 'n01532829', 'x.csv') == [
        ('n01532829_100.JPEG', 1907826176, 1907937291), ('n01532829_10032.JPEG', 1932231680, 1932423711)]
    with pytest.raises(FetchError, match="x.csv lists 2 images of n01532829, where the original's metadata lists 600"):
        parse_metadata(REAL_CSV, 'n01532829', 'x.csv', 600)
    for wrong in ['version https://git-lfs.github.com/spec/v1\n', '<!DOCTYPE html>\n', '',
                  REAL_CSV.replace('n01532829', 'n01558993'), 'n01532829_1.JPEG,20-10\n']:
        with pytest.raises(FetchError, match='x.csv'):
            parse_metadata(wrong, 'n01532829', 'x.csv')


# --- verify -----------------------------------------------------------------------------

@pytest.fixture
def standard_miniimagenet(tmp_path):
    """data/miniimagenet with the original's classes and image counts, every image a hard
    link to one tiny JPEG; removed after the test rather than left to pytest's rotation of
    temporary folders (60,000 files)."""
    tiny = tmp_path / 'tiny.JPEG'
    tiny.write_bytes(_jpeg(0))
    data = tmp_path / 'data' / 'miniimagenet'
    for split, wnids in MINIIMAGENET_WNIDS.items():
        for wnid in wnids:
            (data / split / wnid).mkdir(parents=True)
            for k in range(miniimagenet_images(wnid)):
                os.link(tiny, data / split / wnid / f'{wnid}_{k}.JPEG')
    yield data
    shutil.rmtree(data)


def test_verify_miniimagenet_names_each_class_with_a_missing_or_corrupt_image(standard_miniimagenet, tmp_path):
    data = standard_miniimagenet
    (data / 'train' / 'n01532829' / 'n01532829_7.JPEG').unlink()
    corrupt = data / 'val' / 'n03535780' / 'n03535780_3.JPEG'
    corrupt.unlink()  # a file of its own, not the shared link
    corrupt.write_bytes(b'\xff\xd8' + b'not a JPEG' * 10 + b'\xff\xd9')
    # One run (decoding 60,000 files takes seconds): every other class passes, unnamed.
    result = run_fetch(tmp_path, 'verify', 'miniimagenet')
    assert result.returncode == 1
    assert result.stdout == 'data/miniimagenet: 64/16/20 train/val/test classes; 59979 JPEGs decoded\n'
    assert result.stderr.splitlines() == ['data/miniimagenet/train/n01532829: 599 of 600 images',
                                          'data/miniimagenet/val/n03535780: 596 of 597 images',
                                          'data/miniimagenet/val/n03535780/n03535780_3.JPEG: corrupt (cannot decode)']


def test_verify_without_pillow_checks_start_and_end_markers_and_says_so(fake_imagenet, tmp_path):
    tar_path, meta, _ = fake_imagenet
    built = run_fetch(tmp_path, 'miniimagenet', IMAGENET_TAR=str(tar_path), MINIIMAGENET_METADATA=str(meta))
    assert built.returncode == 0, built.stderr
    no_pillow = tmp_path / 'no_pillow' / 'PIL'
    no_pillow.mkdir(parents=True)
    (no_pillow / '__init__.py').write_text('raise ImportError("Pillow hidden by the test")\n')
    cut, undecodable = sorted((tmp_path / 'data' / 'miniimagenet' / 'train').glob('*/*.JPEG'))[:2]
    cut.write_bytes(cut.read_bytes()[:-10])
    undecodable.write_bytes(b'\xff\xd8' + b'not a JPEG' * 10 + b'\xff\xd9')  # passes a marker check
    result = run_fetch(tmp_path, 'verify', 'miniimagenet', MINIIMAGENET_METADATA=str(meta),
                       PYTHONPATH=str(no_pillow.parent))
    assert result.returncode == 1
    assert result.stdout == ('data/miniimagenet: 2/1/1 train/val/test classes; 11 JPEGs checked by their start '
                             'and end markers only (python3 has no Pillow)\n')
    relative = cut.relative_to(tmp_path)
    assert result.stderr.splitlines() == [f'{relative.parent}: 2 of 3 images',
                                          f'{relative}: corrupt (cut short: no start or end marker)']


def test_verify_with_nothing_to_verify_fails_cleanly(tmp_path):
    result = run_fetch(tmp_path, 'verify')
    assert_one_line_error(result, 'nothing to verify')


# --- Downloads through a byte-range HTTP server --------------------------------------------

class TarServer(http.server.ThreadingHTTPServer):
    """A local stand-in for the ILSVRC2012_img_train.tar server: GET /<mode>/<file>, where
    mode is one of
      ranges    206 Partial Content with the bytes of the `Range: bytes=a-b` header
      redirect  302 to /ranges/<file>, as download servers do
      ignore    200 with a 64 MB body of unannounced length: a server that ignores Range
      html      200 with a small HTML page (a login page)
    It records (path, Range header) of each request. `fail_after` turns every request after
    that many into a 404, `delay` delays each answer, `most_at_once` is the peak number of
    requests in progress, `sent` the bytes of all 'ignore' bodies written."""
    daemon_threads = True

    def __init__(self, data):
        super().__init__(('127.0.0.1', 0), _TarHandler)
        self.data = data
        self.requests, self.fail_after, self.delay = [], None, 0
        self.in_progress = self.most_at_once = self.sent = 0
        self.lock = threading.Lock()

    def url(self, mode, name='ILSVRC2012_img_train.tar'):
        return f'http://127.0.0.1:{self.server_port}/{mode}/{name}'


class _TarHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        with server.lock:
            server.requests.append((self.path, self.headers['Range']))
            failing = server.fail_after is not None and len(server.requests) > server.fail_after
            server.in_progress += 1
            server.most_at_once = max(server.most_at_once, server.in_progress)
        try:
            time.sleep(server.delay)
            if failing:
                self.send_error(404)
            else:
                getattr(self, '_' + self.path.split('/')[1])()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, as it should from 'ignore'
        finally:
            with server.lock:
                server.in_progress -= 1

    def _ranges(self):
        first, last = map(int, re.fullmatch(r'bytes=(\d+)-(\d+)', self.headers['Range']).groups())
        self.send_response(206)
        self.send_header('Content-Range', f'bytes {first}-{last}/{len(self.server.data)}')
        self._send(self.server.data[first:last + 1])

    def _redirect(self):
        self.send_response(302)
        self.send_header('Location', self.path.replace('/redirect/', '/ranges/', 1))
        self._send(b'')

    def _ignore(self):
        self.send_response(200)
        self.end_headers()  # no Content-Length: the body ends when the connection closes
        for _ in range(1024):
            self.wfile.write(b'\0' * 65536)
            with self.server.lock:
                self.server.sent += 65536

    def _html(self):
        self.send_response(200)
        self._send(b'<!DOCTYPE html>\n<html><body>Please log in</body></html>\n')

    def _send(self, body):
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass  # keep the test output clean


@pytest.fixture
def server(fake_imagenet):
    """A TarServer of the fake tar, running in a thread for the test."""
    if shutil.which('curl') is None:
        pytest.skip('curl is not installed')
    tar_server = TarServer(fake_imagenet[0].read_bytes())
    thread = threading.Thread(target=tar_server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield tar_server
    tar_server.shutdown()
    tar_server.server_close()
    thread.join()


def fetch_from(server, mode, root, meta, **env):
    return run_fetch(root, 'miniimagenet', IMAGENET_URL=server.url(mode), MINIIMAGENET_METADATA=str(meta), **env)


@pytest.mark.parametrize('mode', ['ranges', 'redirect'])
def test_byte_range_download_gives_same_images(fake_imagenet, server, tmp_path, mode):
    _, meta, images = fake_imagenet
    result = fetch_from(server, mode, tmp_path, meta)
    assert result.returncode == 0, result.stderr
    assert FAKE_SUMMARY in result.stdout.splitlines()
    assert_miniimagenet(tmp_path, images)
    assert len([path for path, _ in server.requests if path.startswith('/ranges/')]) == len(images)


def test_downloads_run_in_parallel_up_to_fetch_jobs(fake_imagenet, server, tmp_path):
    _, meta, images = fake_imagenet
    server.delay = 0.1
    result = fetch_from(server, 'ranges', tmp_path, meta, FETCH_JOBS='2')
    assert result.returncode == 0, result.stderr
    assert server.most_at_once == 2
    assert_miniimagenet(tmp_path, images)


@pytest.mark.parametrize('mode, answer', [('ignore', 'sent more than the'),
                                          ('html', 'answered HTTP 200, not 206 Partial Content')])
def test_server_ignoring_range_fails_without_downloading_the_tar(fake_imagenet, server, tmp_path, mode, answer):
    _, meta, _ = fake_imagenet
    result = fetch_from(server, mode, tmp_path, meta, FETCH_JOBS='1')
    assert_one_line_error(result, server.url(mode), 'does not serve byte ranges', answer, 'IMAGENET_TAR')
    assert len(server.requests) <= 2  # the first answer stops the fetch (one more may have started)
    assert server.sent < 16 << 20  # of 64 MB: curl was stopped
    assert not (tmp_path / 'data' / 'miniimagenet').exists()


def test_rerun_fetches_only_missing_or_broken_images(fake_imagenet, server, tmp_path):
    _, meta, images = fake_imagenet
    server.fail_after = 5
    result = fetch_from(server, 'ranges', tmp_path, meta, FETCH_JOBS='1')
    assert_one_line_error(result, 'error: 404', 're-run to resume')
    assert not (tmp_path / 'data' / 'miniimagenet').exists()
    kept = sorted((tmp_path / 'data' / '.miniimagenet.partial').rglob('*.JPEG'))
    assert len(kept) == 5
    kept[0].write_bytes(kept[0].read_bytes()[:-10])  # cut short, as by a full disk
    (kept[1].parent / 'other.JPEG.part').write_bytes(b'half an image')

    server.requests.clear()
    server.fail_after = None
    result = fetch_from(server, 'ranges', tmp_path, meta)
    assert result.returncode == 0, result.stderr
    assert 'Resumed: 4 images were already in data/.miniimagenet.partial; fetched 8' in result.stdout
    ranges = {name: f'bytes={span}' for csv in meta.rglob('*.csv')
              for name, span in (line.split(',') for line in csv.read_text().split())}
    refetched = set(ranges) - {path.name for path in kept[1:]}
    assert sorted(r for _, r in server.requests) == sorted(ranges[name] for name in refetched)
    assert_miniimagenet(tmp_path, images)


def test_ctrl_c_during_download_leaves_only_the_staging_folder(fake_imagenet, server, tmp_path):
    _, meta, images = fake_imagenet
    server.delay = 0.3
    env = fetch_env(IMAGENET_URL=server.url('ranges'), MINIIMAGENET_METADATA=str(meta), FETCH_JOBS='1')
    proc = subprocess.Popen(['bash', str(REPO_DIR / 'fetch_data.sh'), 'miniimagenet'], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    staging = tmp_path / 'data' / '.miniimagenet.partial'
    try:
        deadline = time.monotonic() + 20
        while not list(staging.rglob('*.JPEG')) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert 'Traceback' not in stderr, stderr
    assert [p.name for p in (tmp_path / 'data').iterdir()] == ['.miniimagenet.partial']
    assert 0 < len(list(staging.rglob('*.JPEG'))) < len(images)


def test_metadata_download_that_is_not_the_originals_csv_fails_naming_it(server, tmp_path):
    result = run_fetch(tmp_path, 'miniimagenet', MINIIMAGENET_METADATA=server.url('html', 'metadata'),
                       IMAGENET_URL=server.url('ranges'))
    assert_one_line_error(result, server.url('html', 'metadata/train/n01532829.csv'),
                          'not a Mini-ImageNet metadata CSV for n01532829', "'<!DOCTYPE html>'")
    assert not (tmp_path / 'data' / 'miniimagenet').exists()


# --- Arguments --------------------------------------------------------------------------

def test_unknown_argument_is_rejected_before_anything_is_written(tmp_path):
    result = run_fetch(tmp_path, 'omniglot', 'cifar10')
    assert_one_line_error(result, 'cifar10', 'omniglot', 'miniimagenet')
    assert not (tmp_path / 'data').exists()
