"""Golden cases in a compact, lossless form that ships with the tests, and the one loader.

The recorded trajectories of the original live in ../shared/fixtures/original/golden
(`<case>.json` + `<case>.npz`, described in ../shared/README.md), which an outside user does
not have. This script converts chosen cases into this folder so that a fresh clone's
`pytest` still proves parity:

    python tests/golden/convert.py reptile_adam_transductive_f64 foml_tail_f64 ...
        [--source ../shared/fixtures/original/golden] [--dest tests/golden]

`<case>.json` is copied unchanged. `<case>.npz` is written with `np.savez_compressed` and
decodes (`load_case`) to exactly the original file's arrays, key for key, dtype for dtype,
bit for bit (a test checks this whenever ../shared is present):
- the images of all batches, supports and queries go into one pool of distinct images,
  bit-packed when every pixel is 0 or 1 (Omniglot's are); each image array becomes an
  index array into the pool;
- every other array is kept exactly, its bytes transposed into planes (byte k of every
  value, then byte k+1, ...), which deflate compresses better for float64 weights;
- the final trainable weights under `state/` equal `after/<last>/` and are stored once.
"""

import argparse
import json
import pathlib
import shutil

import numpy as np

FORMAT = 'golden-compact-1'
HERE = pathlib.Path(__file__).resolve().parent


def load_case(folder, name):
    """(record, arrays) of golden case `name` in `folder`, in either format: `record` is the
    parsed `<name>.json` and `arrays` a dict with the original `.npz`'s keys and values."""
    folder = pathlib.Path(folder)
    record = json.loads((folder / f'{name}.json').read_text())
    with np.load(folder / f'{name}.npz') as stored:
        arrays = {key: stored[key] for key in stored.files}
    if '__format__' in arrays:
        arrays = expand(arrays)
    return record, arrays


def compact(arrays, record):
    """The compact form (a dict for `np.savez`) of a case's original `arrays`."""
    is_image = lambda key: key.endswith('/x') or key.endswith('_x')  # [count, *image]
    image_shape = next(value.shape[1:] for key, value in arrays.items() if is_image(key))
    images = np.concatenate([arrays[key].reshape(-1, *image_shape) for key in arrays if is_image(key)])
    pool, inverse = np.unique(images.reshape(len(images), -1), axis=0, return_inverse=True)
    binary = bool(np.all((pool == 0) | (pool == 1)))
    out = {'__format__': np.array(FORMAT), '__pool__': np.packbits(pool.astype(bool), axis=1) if binary else pool,
           '__pool_shape__': np.array(image_shape), '__pool_binary__': np.array(binary)}
    last = len(record['meta_iters']) - 1
    aliases = {f'state/{n}': f'after/{last}/{i:02d}' for i, n in enumerate(record['trainable_names'])}
    layout, start = [], 0
    for key, value in arrays.items():
        if is_image(key):
            out[key] = inverse.ravel()[start:start + len(value)].astype(np.uint16)
            start += len(value)
            layout.append([key, 'images', value.dtype.str, list(value.shape)])
        elif key in aliases and np.array_equal(value, arrays[aliases[key]]) and value.dtype == arrays[aliases[key]].dtype:
            layout.append([key, 'alias:' + aliases[key], value.dtype.str, list(value.shape)])
        else:
            out[key] = np.ascontiguousarray(np.ascontiguousarray(value).reshape(-1).view(np.uint8).reshape(-1, value.dtype.itemsize).T)
            layout.append([key, 'planes', value.dtype.str, list(value.shape)])
    out['__layout__'] = np.array(json.dumps(layout))
    return out


def expand(stored):
    """The original arrays (dict, original key order) from a `compact` dict."""
    assert str(stored['__format__']) == FORMAT, f'unknown golden format {stored["__format__"]}'
    shape = tuple(stored['__pool_shape__'])
    pool = stored['__pool__']
    if bool(stored['__pool_binary__']):
        pool = np.unpackbits(pool, axis=1, count=int(np.prod(shape)))
    arrays = {}
    for key, kind, dtype, value_shape in json.loads(str(stored['__layout__'])):
        if kind == 'images':
            arrays[key] = pool[stored[key].astype(np.int64)].astype(dtype).reshape(value_shape)
        elif kind.startswith('alias:'):
            arrays[key] = arrays[kind[len('alias:'):]].copy()
        else:
            arrays[key] = np.ascontiguousarray(stored[key].T).view(dtype).reshape(value_shape)
    return arrays


def convert(source, dest, name):
    """Write `name`.json (copied) and the compact `name`.npz from `source` into `dest`;
    checks that the result decodes to the source exactly and returns its size in bytes."""
    record, arrays = load_case(source, name)
    shutil.copyfile(pathlib.Path(source) / f'{name}.json', pathlib.Path(dest) / f'{name}.json')
    np.savez_compressed(pathlib.Path(dest) / f'{name}.npz', **compact(arrays, record))
    _, decoded = load_case(dest, name)
    assert list(decoded) == list(arrays), 'keys differ'
    for key, value in arrays.items():
        assert decoded[key].dtype == value.dtype and np.array_equal(decoded[key], value), key
    return (pathlib.Path(dest) / f'{name}.npz').stat().st_size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('cases', nargs='+', help='case names, e.g. reptile_adam_transductive_f64')
    parser.add_argument('--source', default=str(HERE.parent.parent.parent / 'shared' / 'fixtures' / 'original' / 'golden'))
    parser.add_argument('--dest', default=str(HERE))
    args = parser.parse_args(argv)
    for name in args.cases:
        print(f'{name}: {convert(args.source, args.dest, name) / 1e6:.2f} MB')


if __name__ == '__main__':
    main()
