"""fetch_data.sh: builds the original's data/ layout from local sources, idempotently, and
leaves nothing half-done behind when it fails.

No network here: Omniglot comes from the ../shared mirror, Mini-ImageNet from a small fake
ILSVRC2012_img_train.tar generated with the real layout (per-class tars inside one tar).
"""

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest
from PIL import Image

from conftest import REPO_DIR, run_fetch

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
    assert [p.name for p in omniglot_data.parent.iterdir()] == ['omniglot']


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


def test_omniglot_extracts_with_python_when_unzip_is_missing(omniglot_mirror, tmp_path):
    # A fresh Debian has python3 but not unzip: PATH holds only the other tools used.
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for tool in ['bash', 'mkdir', 'mktemp', 'rm', 'cp', 'mv', 'basename']:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / 'python3').symlink_to(sys.executable)
    result = run_fetch(tmp_path, 'omniglot', PATH=str(bin_dir), OMNIGLOT_URL=str(omniglot_mirror),
                       OMNIGLOT_SETS='images_background_small1')
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / 'data' / 'omniglot').glob('*/*/*.png'))) == 136 * 20


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
    (mirror / 'images_background_small2.zip').write_bytes(b'not a zip')
    result = run_fetch(tmp_path, 'omniglot', OMNIGLOT_URL=str(mirror), OMNIGLOT_SETS=SMALL_SETS)
    assert result.returncode != 0
    assert list((tmp_path / 'data').iterdir()) == []


def test_ctrl_c_removes_partial_extraction(omniglot_mirror, tmp_path):
    # A stand-in unzip that hangs, so the interrupt lands in the middle of the work.
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    started = tmp_path / 'unzip_started'
    (bin_dir / 'unzip').write_text(f'#!/bin/bash\ntouch {started}\nexec sleep 30\n')
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
    out = root / 'data' / 'miniimagenet'
    found = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob('*') if p.is_file()}
    assert found == images
    assert [p.name for p in (root / 'data').iterdir()] == ['miniimagenet']


def test_miniimagenet_cuts_images_out_of_local_tar(fake_imagenet, tmp_path):
    tar_path, meta, images = fake_imagenet
    result = run_fetch(tmp_path, 'miniimagenet', IMAGENET_TAR=str(tar_path),
                       MINIIMAGENET_METADATA=str(meta))
    assert result.returncode == 0, result.stderr
    assert 'Fetching wnid: n01532829' in result.stdout
    assert_miniimagenet(tmp_path, images)


@pytest.mark.skipif(shutil.which('curl') is None, reason='curl is not installed')
def test_miniimagenet_byte_range_download_gives_same_images(fake_imagenet, tmp_path):
    # The default path (curl -r per image) tested through a file:// URL instead of image-net.org.
    tar_path, meta, images = fake_imagenet
    result = run_fetch(tmp_path, 'miniimagenet', IMAGENET_URL=tar_path.as_uri(),
                       MINIIMAGENET_METADATA=str(meta))
    assert result.returncode == 0, result.stderr
    assert_miniimagenet(tmp_path, images)


def test_wrong_tar_fails_without_leaving_images(fake_imagenet, tmp_path):
    _, meta, _ = fake_imagenet
    wrong = tmp_path / 'wrong.tar'
    wrong.write_bytes(b'\0' * 100000)
    result = run_fetch(tmp_path, 'miniimagenet', IMAGENET_TAR=str(wrong),
                       MINIIMAGENET_METADATA=str(meta))
    assert_one_line_error(result, 'IMAGENET_TAR')
    assert list((tmp_path / 'data').iterdir()) == []


def test_missing_imagenet_tar_fails_cleanly(fake_imagenet, tmp_path):
    _, meta, _ = fake_imagenet
    result = run_fetch(tmp_path, 'miniimagenet', IMAGENET_TAR=str(tmp_path / 'absent.tar'),
                       MINIIMAGENET_METADATA=str(meta))
    assert_one_line_error(result, 'absent.tar', 'IMAGENET_TAR')
    assert not (tmp_path / 'data' / 'miniimagenet').exists()


def test_missing_metadata_folder_fails_cleanly(fake_imagenet, tmp_path):
    tar_path, _, _ = fake_imagenet
    result = run_fetch(tmp_path, 'miniimagenet', IMAGENET_TAR=str(tar_path),
                       MINIIMAGENET_METADATA=str(tmp_path / 'absent'))
    assert_one_line_error(result, 'absent', 'MINIIMAGENET_METADATA')
    assert not (tmp_path / 'data' / 'miniimagenet').exists()


# --- Arguments --------------------------------------------------------------------------

def test_unknown_argument_is_rejected_before_anything_is_written(tmp_path):
    result = run_fetch(tmp_path, 'omniglot', 'cifar10')
    assert_one_line_error(result, 'cifar10', 'omniglot', 'miniimagenet')
    assert not (tmp_path / 'data').exists()
