"""Property-based fuzzing (Hypothesis) of what reads untrusted input: the drawings JSON,
the model-file loaders and the flag parser. Every generated input must end in a result or
in one line with exit status 2 (`InputError`, or argparse's error), never in another
exception, a hang or a NaN.

Bounded so that the module stays under a minute: a fixed number of examples per property,
each with a deadline (building a model costs ~0.1 s, so the loaders get fewer examples).
"""

import contextlib
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from supervised_reptile import args
from supervised_reptile.args import argument_parser, parse
from supervised_reptile.errors import InputError
from supervised_reptile.models import omniglot_model
from supervised_reptile.optimizers import SGD
from supervised_reptile.reptile import Reptile
from supervised_reptile.running import checkpoint
from supervised_reptile.tools import drawing, finetune

FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
MODELS = settings(max_examples=40, deadline=10000, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])

# --- drawings -------------------------------------------------------------------------------

NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 30, 10 ** 30),
                    st.floats(-1.5, 1.5), st.booleans())
JSON_VALUES = st.recursive(st.one_of(st.none(), NUMBERS, st.text(max_size=3)),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                                        max_size=3), max_leaves=30)
POINTS = st.lists(st.one_of(st.tuples(NUMBERS, NUMBERS).map(list), JSON_VALUES), min_size=0, max_size=6)
DRAWINGS = st.one_of(st.lists(POINTS, max_size=4), JSON_VALUES)


def assert_image(image, size=28):
    assert image.shape == (size, size) and image.dtype == np.float32
    assert set(np.unique(image)) <= {0.0, 1.0}


@FAST
@given(DRAWINGS)
def test_rasterize_gives_an_image_or_an_input_error(value):
    try:
        image = drawing.rasterize(value)
    except InputError as exc:
        assert '\n' not in str(exc)
    else:
        assert_image(image)


@pytest.fixture(scope='module')
def small_algo():
    """A 3-way Omniglot model: what `fewshot --drawings` reads drawings for."""
    return Reptile(omniglot_model(3, filters=4), SGD(1e-3))


@settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(JSON_VALUES.map(json.dumps), st.lists(DRAWINGS, max_size=4).map(lambda d: json.dumps({'paths': d})),
                 st.binary(max_size=40).map(lambda b: b.decode('latin-1'))))
def test_fewshot_drawings_file_gives_images_or_an_input_error(small_algo, tmp_path, text):
    path = tmp_path / 'drawings.json'
    path.write_text(text, encoding='utf-8', errors='surrogatepass')
    try:
        images = finetune.read_drawings(small_algo, str(path))
    except InputError as exc:
        assert '\n' not in str(exc)
    else:
        for image in images:
            assert_image(image)


# --- model files ----------------------------------------------------------------------------

DTYPES = ['float16', 'float32', 'float64', 'int32', 'int64', 'bool', 'complex64', 'str']


def _base_tensors():
    """{name: array} of a real 3-way, 4-filter Omniglot model: as a TF1 checkpoint holds it
    (SGD), and as the web demo's .npz holds it (no conv biases, an adam_v per weight)."""
    algo = Reptile(omniglot_model(3, filters=4), SGD(1e-3))
    bundle = {name: np.array(value) for name, value in checkpoint.state_tensors(algo).items()}
    weights = omniglot_model(3, filters=4, conv_bias=False).trainable_variables
    npz = {key: np.array(w) for key, w in zip(WEBDEMO_KEYS, weights)}
    npz.update({f'{key}/adam_v': np.ones_like(value) for key, value in list(npz.items())})
    return bundle, npz


WEBDEMO_KEYS = [f'conv{i}/{w}' for i in range(4) for w in ('kernel', 'gamma', 'beta')] + ['dense/kernel', 'dense/bias']
BUNDLE, NPZ = _base_tensors()


@st.composite
def mutated(draw, base):
    """{name: array}: `base` with a few tensors dropped, retyped, reshaped or filled with
    NaN or infinity, and maybe an extra one."""
    tensors = dict(base)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(tensors)))
        kind = draw(st.sampled_from(['drop', 'dtype', 'shape', 'nan', 'extra']))
        if kind == 'drop':
            del tensors[name]
        elif kind == 'dtype':
            tensors[name] = np.ones(tensors[name].shape).astype(draw(st.sampled_from(DTYPES)))
        elif kind == 'shape':
            shape = draw(st.lists(st.integers(0, 5), max_size=4))
            tensors[name] = np.ones(shape, tensors[name].dtype)
        elif kind == 'nan':
            tensors[name] = np.full(tensors[name].shape, draw(st.sampled_from([np.nan, np.inf, -np.inf])))
        else:
            tensors[draw(st.text('abc/_', min_size=1, max_size=8))] = np.zeros(draw(st.integers(0, 3)))
        if not tensors:
            break
    return tensors


def assert_loaded_or_refused(path):
    """load_pretrained(path) gives a model of finite weights, or one line of InputError."""
    try:
        algo = checkpoint.load_pretrained(str(path))
    except InputError as exc:
        assert '\n' not in str(exc)
        event('refused')
    else:
        assert checkpoint.non_finite(algo) is None
        event('loaded')


@MODELS
@given(mutated(NPZ))
def test_npz_loader_gives_a_model_or_an_input_error(tmp_path_factory, tensors):
    path = tmp_path_factory.mktemp('npz') / 'model.npz'
    np.savez(path, **tensors)
    assert_loaded_or_refused(path)


@MODELS
@given(mutated(BUNDLE), st.booleans())
def test_tf1_checkpoint_loader_gives_a_model_or_an_input_error(tmp_path_factory, tensors, claim_more):
    folder = tmp_path_factory.mktemp('ck')
    specs = [''] * len(tensors)
    if claim_more and tensors and next(iter(tensors.values())).size:  # the index claims more than the data holds
        first = next(iter(tensors))
        tensors[first] = np.ravel(tensors[first])
        specs[0] = f'{max(1, tensors[first].size) * 1000} 0,{tensors[first].size}'
    if tensors:
        tf.raw_ops.SaveV2(prefix=str(folder / 'model.ckpt-0'), tensor_names=list(tensors), shape_and_slices=specs,
                          tensors=[tf.constant(v) for v in tensors.values()])
        (folder / 'checkpoint').write_text('model_checkpoint_path: "model.ckpt-0"\n')
    assert_loaded_or_refused(folder)


# --- flags ----------------------------------------------------------------------------------

FLAGS = [args.FLAGS[name].name for name in args.TRAINING]
TOKENS = st.one_of(st.sampled_from(FLAGS), st.integers(-2 ** 70, 2 ** 70).map(str), NUMBERS.map(str),
                   st.sampled_from(['nan', 'inf', '-inf', '', 'bfloat16', 'float64', 'mirrored', '--', '-', '=']),
                   st.text(max_size=6).filter(lambda t: t not in ('-h', '--help') and not t.startswith('--h')))
LINE_BREAKS = '\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029'  # what str.splitlines splits at


def assert_parses_or_exits_2_in_one_line(argv):
    """run_omniglot.py's flags: a namespace, or exit status 2 with one line on stderr."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            parse(argument_parser('data/omniglot', omniglot=True), argv)
        except SystemExit as exc:
            assert exc.code == 2, (argv, exc.code)
            assert len(stderr.getvalue().strip().splitlines()) == 1, stderr.getvalue()


@FAST
@given(st.lists(TOKENS, max_size=8))
def test_any_argv_parses_or_exits_2_in_one_line(argv):
    assert_parses_or_exits_2_in_one_line(argv)


@pytest.mark.parametrize('argv', [['\r'], ['x\ny'], [LINE_BREAKS]])
def test_a_line_break_in_an_argument_stays_one_line(argv):
    assert_parses_or_exits_2_in_one_line(argv)
