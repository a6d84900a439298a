"""Shared test fixtures: where the data lives.

The small Omniglot sets, Lake's runs (datasets/omniglot) and the web-demo model
(supervised_reptile/assets/webdemo) ship with the repository, so tests that use them always
run. Only the original's full recordings and its checkpoint stay in ../shared: tests that
need them ask for `shared_dir`, so a clone without that folder gets clean skips.
`SHARED_DIR` overrides its location.
"""

import shutil

import pytest

from supervised_reptile.assets import WEBDEMO

from helpers import CHROMEDRIVER, CHROMIUM, REPO_DIR, SHARED_DIR, run_fetch


@pytest.fixture(scope='session')
def shared_dir():
    """The ../shared folder; skips the test when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f'reference folder {SHARED_DIR} is absent (set SHARED_DIR)')
    return SHARED_DIR


@pytest.fixture(scope='session')
def omniglot_mirror():
    """Folder holding the Omniglot release zips that ship with the repository (a mirror for
    fetch_data.sh): the two small background sets and Lake's all_runs.zip."""
    return REPO_DIR / 'datasets' / 'omniglot'


@pytest.fixture(scope='session')
def omniglot_data(omniglot_mirror, tmp_path_factory):
    """data/omniglot built by fetch_data.sh from the two small sets of the mirror (242 characters)."""
    root = tmp_path_factory.mktemp('fetched')
    result = run_fetch(root, 'omniglot', OMNIGLOT_URL=str(omniglot_mirror),
                       OMNIGLOT_SETS='images_background_small1 images_background_small2')
    assert result.returncode == 0, result.stderr
    return root / 'data' / 'omniglot'


@pytest.fixture(scope='session')
def webdemo():
    """The published web-demo files that ship with the package: model, default drawing, its
    tensors and probabilities."""
    return WEBDEMO


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
