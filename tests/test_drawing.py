"""The drawing rasterizer against the original web demo's own rasterization in Chromium,
and `fewshot --drawings` against the probabilities the demo computes for its default drawing."""

import json

import numpy as np
import pytest

from supervised_reptile.tools import drawing
from supervised_reptile import fewshot
from supervised_reptile.errors import InputError


def test_default_drawing_matches_chromium(webdemo):
    """Each of the 4 default drawings agrees with the demo's own 28x28 tensors in >= 97% of pixels."""
    paths = json.loads((webdemo / 'default_drawing.json').read_text())['paths']
    expected = np.load(webdemo / 'default_drawing_tensors.npy')
    for path, want in zip(paths, expected):
        assert np.mean(drawing.rasterize(path) == want) >= 0.97


def test_fewshot_drawings_gives_reference_probs(webdemo, tmp_path, capsys):
    """fewshot --drawings rasterizes, fine-tunes with the web-demo rule and prints the demo's probs."""
    saved = tmp_path / 'tensors.npy'
    fewshot.main(['--model', str(webdemo / 'reptile_webdemo_omniglot_3way.npz'),
                  '--drawings', str(webdemo / 'default_drawing.json'), '--save-tensors', str(saved)])
    probs = json.loads(capsys.readouterr().out)['probs']
    reference = json.loads((webdemo / 'default_drawing_reference.json').read_text())['probs']
    np.testing.assert_allclose(probs, reference, atol=0.02)
    paths = json.loads((webdemo / 'default_drawing.json').read_text())['paths']
    np.testing.assert_array_equal(np.load(saved), np.stack([drawing.rasterize(p) for p in paths]))


def test_output_format():
    """float32 [size, size], only 0 (ink) and 1 (background), the drawing centered."""
    image = drawing.rasterize([[[0.2, 0.2], [0.8, 0.8]], [[0.2, 0.8], [0.8, 0.2]]])
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert set(np.unique(image)) == {0.0, 1.0}
    assert image[14, 14] == 0 and image[0, 0] == 1 and 20 < np.sum(image == 0) < 120
    assert drawing.rasterize([[[0, 0], [1, 1]]], size=56).shape == (56, 56)


def test_single_point_stroke_gives_ink():
    """A one-point stroke (a click) draws a dot, alone (in the center) or beside other strokes."""
    assert np.sum(drawing.rasterize([[[0.3, 0.4]]]) == 0) >= 1
    line = [[0.1, 0.1], [0.9, 0.1]]
    with_dot = drawing.rasterize([line, [[0.52, 0.62]]])
    assert np.sum(with_dot[14:, :] == 0) >= 1  # the dot, well below the line


@pytest.mark.parametrize('bad, words', [
    ([], 'empty'), ({'x': 1}, 'list of strokes'), ([[]], 'stroke'), ([[[0, 1, 2]]], 'pair'),
    ([[['a', 0]]], 'pair'), ([[[float('nan'), 0]]], 'pair'),
    ([[[0.5, 0.5]] * (drawing.MAX_POINTS + 1)], 'points'), ([[[0, 0]]] * (drawing.MAX_STROKES + 1), 'strokes'),
])
def test_malformed_drawings_are_refused(bad, words):
    """Malformed drawings raise InputError naming the problem (the CLI exits 2, the API answers 400)."""
    with pytest.raises(InputError, match=words):
        drawing.rasterize(bad)
