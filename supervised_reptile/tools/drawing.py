"""Drawings to 28x28 Omniglot-like images, the way the original web demo rasterizes them.

A drawing is a list of strokes, each a list of [x, y] points (any scale; the web page
sends [0, 1] canvas coordinates). As in the original demo's `drawing.js`:

- the drawing's bounding box is centered in a square of side (1 + 0.9) x its larger extent;
- each stroke is one canvas path drawn with line width 0.05 x image size, square caps and
  miter joins (the original asks for lineJoin 'square', which canvas ignores, so its
  default 'miter', limit 10, applies); a one-point stroke becomes a tiny segment;
- strokes are composited one over another, and a pixel is ink where the alpha is over half.

Canvas anti-aliasing is reproduced by supersampling, as Skia (Chromium's canvas) does for
such paths: each pixel is split into 4 x 4 samples at sub-pixel centers, and a stroke
covers a sample when the sample lies in one of the convex pieces the stroke's outline is
made of (one rectangle per segment, caps at both ends, one miter or bevel wedge per join).
So a pixel is ink when at least 9 of its 16 samples are. Output: float32 [size, size],
1.0 background, 0.0 ink.

Only numpy: the web server and `fewshot --drawings` share this one rasterizer.
"""

import numpy as np

from ..errors import InputError

LINE_WIDTH = 0.05    # fraction of the image size
CENTERED_PAD = 0.9   # margin around the bounding box, as a fraction of its larger extent
MITER_LIMIT = 10.0   # canvas default
SUBPIXELS = 4        # samples per pixel side, as Skia's supersampling (Chromium's canvas)
MAX_POINTS = 2000    # per drawing, and
MAX_STROKES = 200    # strokes per drawing: both bound the work one drawing can cause
MAX_COORDINATE = 1000.0


def check_drawing(drawing, name='drawing'):
    """Validate one drawing (JSON-decoded) and return it as a list of float arrays [n, 2].

    Raises InputError with a message saying what is wrong, for the CLI and the web API.
    """
    if not isinstance(drawing, list):
        raise InputError(f'{name} must be a list of strokes, each a list of [x, y] points')
    if not drawing:
        raise InputError(f'{name} is empty: draw something')
    if len(drawing) > MAX_STROKES:
        raise InputError(f'{name} has {len(drawing)} strokes, more than the limit of {MAX_STROKES}')
    strokes, total = [], 0
    for stroke in drawing:
        if not isinstance(stroke, list) or not stroke:
            raise InputError(f'{name} has an empty or malformed stroke: each stroke is a non-empty list of [x, y]')
        total += len(stroke)
        if total > MAX_POINTS:
            raise InputError(f'{name} has more than {MAX_POINTS} points')
        points = _points(stroke)
        if points is None:
            raise InputError(f'{name} has a point that is not a pair of numbers [x, y] '
                             f'within +-{MAX_COORDINATE:g}')
        strokes.append(points)
    return strokes


def _points(stroke):
    """The stroke as a float array [n, 2], or None unless it is a list of pairs of numbers
    (finite, of sane size). numpy does the checking: a Python loop would cost more than drawing."""
    try:
        points = np.array(stroke)
    except ValueError:  # ragged
        return None
    if points.ndim != 2 or points.shape[1] != 2 or points.dtype.kind not in 'iuf':
        return None
    points = points.astype(np.float64)
    return points if np.all(np.abs(points) <= MAX_COORDINATE) else None


def rasterize(drawing, size=28, name='drawing'):
    """The drawing (list of strokes of [x, y]) as a float32 [size, size] image, 1 = background.

    `name` names the drawing in the InputError raised for malformed input.
    """
    strokes = _centered(check_drawing(drawing, name), size)
    outlines = [_outline(stroke, size) for stroke in strokes]
    owners = np.repeat(np.arange(len(outlines)), [len(o) for o in outlines])
    alpha = _alpha(np.concatenate(outlines), owners, size)
    return np.where(alpha > 0.5, 0.0, 1.0).astype(np.float32)


def _centered(strokes, size):
    """Strokes mapped so that their bounding box is centered in the unit square with margin.

    A drawing that is one dot (where the original divides by zero) goes to the middle of the
    center pixel, so that it shows.
    """
    points = np.concatenate(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    side = (high - low).max() * (1 + CENTERED_PAD)
    if side == 0:
        return [s - low + (size // 2 + 0.5) / size for s in strokes]
    corner = (high + low) / 2 - side / 2
    return [(s - corner) / side for s in strokes]


def _outline(points, size):
    """Convex quads [n, 4, 2] (pixel units) whose union is the stroke through `points` (unit
    square) drawn on a size x size canvas."""
    if len(points) > 1:  # canvas drops zero-length segments
        points = points[np.concatenate([[True], np.any(np.diff(points, axis=0) != 0, axis=1)])]
    if len(points) == 1:  # as the original: a dot is a tiny diagonal segment
        points = np.concatenate([points, points + 0.001])
    points, half_width = points * size, LINE_WIDTH * size / 2
    return np.concatenate([_segments(points, half_width), _joins(points, half_width)])


def _segments(points, half_width):
    """A rectangle per segment, square caps at the stroke's two ends.

    Long segments are cut into pieces at most a pixel long, so that every piece fits a small
    window of samples.
    """
    starts, ends = points[:-1].copy(), points[1:].copy()
    direction = ends - starts
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    starts[0] -= direction[0] * half_width   # square cap: extend by half the line width
    ends[-1] += direction[-1] * half_width
    counts = np.ceil(np.linalg.norm(ends - starts, axis=1)).astype(int)
    index = np.repeat(np.arange(len(starts)), counts)
    step = np.arange(len(index)) - np.repeat(np.cumsum(counts) - counts, counts)
    span = (ends - starts)[index] / counts[index, None]
    a = starts[index] + span * step[:, None]
    b = a + span
    normal = np.stack([-direction[index, 1], direction[index, 0]], axis=1) * half_width
    return np.stack([a + normal, b + normal, b - normal, a - normal], axis=1)


def _joins(points, half_width):
    """A wedge per interior point filling the outer corner: miter, or bevel past the limit."""
    direction = np.diff(points, axis=0)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    d1, d2, corner = direction[:-1], direction[1:], points[1:-1]
    turn = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    keep = turn != 0  # straight on, or straight back (where a bevel has no area)
    d1, d2, corner, side = d1[keep], d2[keep], corner[keep], np.sign(turn[keep])[:, None]
    outer1 = np.stack([d1[:, 1], -d1[:, 0]], axis=1) * side * half_width  # away from the turn
    outer2 = np.stack([d2[:, 1], -d2[:, 0]], axis=1) * side * half_width
    middle = (outer1 + outer2) / 2
    ratio = half_width / np.linalg.norm(middle, axis=1, keepdims=True)  # miter length / line width
    tip = np.where(ratio <= MITER_LIMIT, middle * ratio ** 2, middle)
    return corner[:, None] + np.stack([np.zeros_like(tip), outer1, tip, outer2], axis=1)


def _alpha(polygons, owners, size):
    """Canvas alpha [size, size] of strokes drawn one over another; `owners` names each
    polygon's stroke. Within a stroke, coverage is that of the polygons' union."""
    samples = size * SUBPIXELS
    keys = np.concatenate(list(_inside_samples(polygons, samples)) + [np.zeros(0, np.int64)])
    polygon, sample = np.divmod(keys, samples * samples)
    stroke, sample = np.divmod(np.unique(owners[polygon] * samples * samples + sample), samples * samples)
    row, col = np.divmod(sample, samples)
    pixel = (row // SUBPIXELS) * size + col // SUBPIXELS
    pairs, counts = np.unique(stroke * size * size + pixel, return_counts=True)
    transparency = np.ones(size * size)
    np.multiply.at(transparency, pairs % (size * size), 1 - counts / SUBPIXELS ** 2)
    return 1 - transparency.reshape(size, size)


def _inside_samples(polygons, samples, chunk=1 << 20):
    """Yield keys (polygon index * samples^2 + sample index) of the samples inside each convex
    polygon, testing a square window around each; polygons of similar size go in one batch."""
    low = np.floor(polygons.min(axis=1) * SUBPIXELS).astype(int)
    window = np.ceil(np.ptp(polygons, axis=1).max(axis=1) * SUBPIXELS).astype(int) + 2
    window = 2 ** np.ceil(np.log2(window)).astype(int)  # few distinct sizes
    for size in np.unique(window):
        batch = np.nonzero(window == size)[0]
        for part in np.array_split(batch, -(-len(batch) * size * size // chunk)):
            yield _inside_window(polygons[part], part, low[part], size, samples)


def _inside_window(polygons, index, low, window, samples):
    """Keys of the samples within `window` of `low` that lie inside each polygon [n, k, 2]."""
    offsets = np.arange(window)
    xs = low[:, None, 0, None] + offsets[None, None, :]   # [n, 1, window]
    ys = low[:, None, 1, None] + offsets[None, :, None]   # [n, window, 1]
    px, py = (xs + 0.5) / SUBPIXELS, (ys + 0.5) / SUBPIXELS
    inside_left = inside_right = True
    for k in range(polygons.shape[1]):  # inside: on the same side of every edge
        a, b = polygons[:, k, None, None], polygons[:, (k + 1) % polygons.shape[1], None, None]
        cross = (b[..., 0] - a[..., 0]) * (py - a[..., 1]) - (b[..., 1] - a[..., 1]) * (px - a[..., 0])
        inside_left = inside_left & (cross >= 0)
        inside_right = inside_right & (cross <= 0)
    inside = (inside_left | inside_right) & (xs >= 0) & (xs < samples) & (ys >= 0) & (ys < samples)
    n, row, col = np.nonzero(inside)
    return index[n] * samples * samples + ys[n, row, 0] * samples + xs[n, 0, col]
