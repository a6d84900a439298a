"""Files that ship with the package: the published web-demo model of the original project,
its default drawing and reference probabilities (MIT, see webdemo/LICENSE)."""

import pathlib

WEBDEMO = pathlib.Path(__file__).resolve().parent / 'webdemo'
