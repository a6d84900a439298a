"""Shared test fixtures: where the read-only reference data lives.

Every test that needs ../shared (real Omniglot, the original's recordings, the web-demo
model) asks for it through `shared_dir`, so an outside user without that folder gets clean
skips instead of failures. `SHARED_DIR` overrides the location.
"""

import os
import pathlib
import shutil
import sys

import pytest

CHROMIUM = os.environ.get('CHROMIUM', '/usr/bin/chromium')
CHROMEDRIVER = os.environ.get('CHROMEDRIVER', '/usr/bin/chromedriver')
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


def fetch_env(**env):
    """The environment for fetch_data.sh: ours plus `env`, with this interpreter's python3
    (which has Pillow) first on PATH, as in an activated virtualenv."""
    full_env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    full_env.update(env)
    return full_env


def run_fetch(cwd, *targets, **env):
    """Run the project's fetch_data.sh in `cwd` with extra environment variables."""
    import subprocess
    return subprocess.run(['bash', str(REPO_DIR / 'fetch_data.sh'), *targets], cwd=cwd,
                          env=fetch_env(**env), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='session')
def omniglot_data(omniglot_mirror, tmp_path_factory):
    """data/omniglot built by fetch_data.sh from the two small sets of the mirror (242 characters)."""
    root = tmp_path_factory.mktemp('fetched')
    result = run_fetch(root, 'omniglot', OMNIGLOT_URL=str(omniglot_mirror),
                       OMNIGLOT_SETS='images_background_small1 images_background_small2')
    assert result.returncode == 0, result.stderr
    return root / 'data' / 'omniglot'


@pytest.fixture(scope='session')
def webdemo(shared_dir):
    """The web-demo folder of ../shared: model, default drawing, its tensors and probabilities."""
    return shared_dir / 'data' / 'webdemo'


@pytest.fixture(scope='module')
def original_ckpt(shared_dir, tmp_path_factory):
    """A writable copy of the original's checkpoint folder: its `checkpoint` file and
    model.ckpt-2999 (the shared files are read-only); skips when it is absent."""
    source = shared_dir / 'fixtures' / 'original' / 'ckpt_o15t'
    if not (source / 'checkpoint').is_file():
        pytest.skip(f'original checkpoint {source} is absent')
    dest = tmp_path_factory.mktemp('original') / 'ckpt_o15t'
    dest.mkdir()
    for path in source.iterdir():
        if path.name == 'checkpoint' or path.name.startswith('model.ckpt-2999.'):
            shutil.copyfile(path, dest / path.name)
    return dest


@pytest.fixture(scope='session')
def browser(tmp_path_factory):
    """Headless Chromium under Selenium, from the system packages (nothing is downloaded).
    WebGL, where Chromium has it, runs in software (SwiftShader): the web pages' tests use it."""
    webdriver = pytest.importorskip('selenium.webdriver', reason='selenium is not installed (pip install selenium)')
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.skip(f'{path} is absent (apt-get install chromium chromium-driver)')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ('--headless=new', '--no-sandbox', '--enable-unsafe-swiftshader', '--disable-dev-shm-usage',
                 '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
                 '--window-size=1000,900', f'--user-data-dir={tmp_path_factory.mktemp("chromium-profile")}'):
        options.add_argument(flag)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('SE_OFFLINE', 'true')  # never let Selenium Manager look for downloads
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(300)
    yield driver
    driver.quit()
