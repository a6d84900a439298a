"""Shared test fixtures: where the read-only reference data lives.

Every test that needs ../shared (real Omniglot, the original's recordings, the web-demo
model) asks for it through `shared_dir`, so an outside user without that folder gets clean
skips instead of failures. `SHARED_DIR` overrides the location.
"""

import os
import pathlib

import pytest

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent
SHARED_DIR = pathlib.Path(os.environ.get('SHARED_DIR', REPO_DIR.parent / 'shared'))


@pytest.fixture(scope='session')
def shared_dir():
    """The ../shared folder; skips the test when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f'reference folder {SHARED_DIR} is absent (set SHARED_DIR)')
    return SHARED_DIR


@pytest.fixture(scope='session')
def omniglot_mirror(shared_dir):
    """Folder holding the Omniglot release zips (a mirror for fetch_data.sh)."""
    path = shared_dir / 'data' / 'omniglot'
    if not (path / 'images_background_small1.zip').is_file():
        pytest.skip(f'Omniglot mirror {path} is absent')
    return path


def run_fetch(cwd, *targets, **env):
    """Run the project's fetch_data.sh in `cwd` with extra environment variables."""
    import subprocess
    full_env = dict(os.environ, **env)
    return subprocess.run(['bash', str(REPO_DIR / 'fetch_data.sh'), *targets], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='session')
def omniglot_data(omniglot_mirror, tmp_path_factory):
    """data/omniglot built by fetch_data.sh from the two small sets of the mirror (242 characters)."""
    root = tmp_path_factory.mktemp('fetched')
    result = run_fetch(root, 'omniglot', OMNIGLOT_URL=str(omniglot_mirror),
                       OMNIGLOT_SETS='images_background_small1 images_background_small2')
    assert result.returncode == 0, result.stderr
    return root / 'data' / 'omniglot'
