"""Data readers: Omniglot and Mini-ImageNet images decoded exactly as the original did.

The Omniglot tests run on the real small Omniglot sets (built by fetch_data.sh through the
`omniglot_data` fixture) and on the original's recordings in ../shared; they skip cleanly
without ../shared. The Mini-ImageNet tests build a tiny fake tree of JPEGs in tmp.
"""

import json
import os
import random
import shutil

import numpy as np
import pytest
from PIL import Image

from supervised_reptile import miniimagenet, omniglot
from supervised_reptile.errors import InputError
from supervised_reptile.data.reference import MINIIMAGENET_WNIDS, miniimagenet_images

ROTATIONS = (0, 90, 180, 270)


@pytest.fixture(scope='module')
def characters(omniglot_data):
    """The reader's characters of the merged small sets (one read per test module)."""
    return omniglot.read_dataset(str(omniglot_data))


def _relative(classes, root):
    return [os.path.relpath(c.dir_path, str(root)).replace(os.sep, '/') for c in classes]


def _original_omniglot_image(path, rotation):
    """The original's decoding, straight from Pillow: resize (NEAREST for 1-bit), rotate, float32."""
    return np.array(Image.open(path).resize((28, 28)).rotate(rotation)).astype('float32')


def _shuffled_names(dir_path, suffix, seed):
    """The files that `sample` picks after `random.seed(seed)`: the sorted listing, shuffled."""
    names = sorted(f for f in os.listdir(dir_path) if f.endswith(suffix))
    random.seed(seed)
    random.shuffle(names)
    return names


# --- Omniglot on real data -------------------------------------------------------------

def test_omniglot_reads_all_242_characters_sorted_by_path(characters, omniglot_data):
    """read_dataset finds the 242 characters of the merged small sets, in sorted path order."""
    rel = _relative(characters, omniglot_data)
    assert len(characters) == 242
    assert len(set(rel)) == 242
    assert rel == sorted(rel)
    assert all(len(c) == 20 for c in characters)
    assert {r.split('/')[0] for r in rel} == {
        'Balinese', 'Early_Aramaic', 'Greek', 'Japanese_(katakana)', 'Korean', 'Latin',
        'Sanskrit', 'Tagalog'}


def test_omniglot_sample_gives_distinct_binary_28x28_float32_images(characters):
    """sample(n) returns n distinct (28,28) float32 images of 0.0 (ink) / 1.0 (background)."""
    random.seed(3)
    for character in characters[::40]:
        images = character.sample(7)
        assert len(images) == 7
        assert len({img.tobytes() for img in images}) == 7
        for img in images:
            assert img.shape == (28, 28)
            assert img.dtype == np.float32
            assert set(np.unique(img)) <= {0.0, 1.0}
            assert img.mean() > 0.5  # background (1.0) is the majority
        assert len(character.sample(20)) == 20


def test_omniglot_sample_more_than_available_names_the_folder(characters):
    """Asking a 20-drawing character for 21 images raises InputError naming its folder."""
    character = characters[0]
    with pytest.raises(InputError, match=r'has 20 images but 21') as info:
        character.sample(21)
    assert character.dir_path in str(info.value)


def test_omniglot_decoding_matches_pillow_for_all_rotations(characters):
    """read_image + np.rot90 and a rotated class's sample equal the original's Pillow
    decoding `np.array(Image.open(p).resize((28,28)).rotate(r)).astype('float32')`,
    file for file, for rotations 0/90/180/270 (augment_dataset: 4 classes per character
    sharing the path)."""
    for character in characters[::60]:
        names = sorted(f for f in os.listdir(character.dir_path) if f.endswith('.png'))
        for name in names[:3]:
            path = os.path.join(character.dir_path, name)
            decoded = omniglot.read_image(path)
            assert decoded.shape == (28, 28)
            for rotation in ROTATIONS:
                np.testing.assert_array_equal(np.rot90(decoded, rotation // 90).astype(np.float32),
                                              _original_omniglot_image(path, rotation))

        rotated = list(omniglot.augment_dataset([character]))
        assert [c.rotation for c in rotated] == list(ROTATIONS)
        assert all(c.dir_path == character.dir_path for c in rotated)
        for seed, cls in enumerate(rotated):
            random.seed(seed)
            images = cls.sample(4)
            picked = _shuffled_names(cls.dir_path, '.png', seed)[:4]
            for img, name in zip(images, picked):
                assert img.dtype == np.float32
                np.testing.assert_array_equal(
                    img, _original_omniglot_image(os.path.join(cls.dir_path, name), cls.rotation))


def test_omniglot_split_reproduces_the_originals_seed0_split(characters, omniglot_data, shared_dir):
    """random.seed(0) + split_dataset(read_dataset(...), 180) gives the original's exact
    180/62 character split (provenance.json of its checkpoint), in the same order."""
    provenance = shared_dir / 'fixtures' / 'original' / 'ckpt_o15t' / 'provenance.json'
    if not provenance.is_file():
        pytest.skip(f'{provenance} is absent')
    split = json.loads(provenance.read_text())['split']
    assert (len(split['train']), len(split['test'])) == (180, 62)
    random.seed(0)
    train, test = omniglot.split_dataset(omniglot.read_dataset(str(omniglot_data)), 180)
    assert _relative(train, omniglot_data) == split['train']
    assert _relative(test, omniglot_data) == split['test']


def _all_reader_images(characters):
    """Bytes of every uint8 image (all 4 rotations) the reader produces for `characters`."""
    hashes = set()
    for character in characters:
        for name in sorted(f for f in os.listdir(character.dir_path) if f.endswith('.png')):
            decoded = omniglot.read_image(os.path.join(character.dir_path, name))
            for k in range(4):
                hashes.add(np.ascontiguousarray(np.rot90(decoded, k)).tobytes())
    return hashes


def test_golden_batches_consist_of_images_our_reader_produces(characters, shared_dir):
    """Every 28x28 image the original fed in its golden runs (all Omniglot cases, training
    and evaluation batches; in particular the first meta-iteration of
    reptile_adam_transductive) equals some rotation of some image our reader decodes from
    the merged small sets: the recordings and our reader share data and decoding."""
    golden = shared_dir / 'fixtures' / 'original' / 'golden'
    main_case = golden / 'reptile_adam_transductive.npz'
    if not main_case.is_file():
        pytest.skip(f'{main_case} is absent')
    known = _all_reader_images(characters)
    assert len(known) == 242 * 20 * 4  # every rotated drawing is distinct

    def unknown(x):
        assert set(np.unique(x)) <= {0.0, 1.0}
        return [i for i, img in enumerate(x) if img.astype(np.uint8).tobytes() not in known]

    with np.load(main_case) as data:
        keys = sorted(k for k in data.files if k.startswith('train/0/batch') and k.endswith('/x'))
        assert keys
        for key in keys:
            x = data[key]
            assert x.dtype == np.float32 and x.shape[1:] == (28, 28)
            assert unknown(x) == [], key

    checked = 0
    for path in sorted(golden.glob('*.npz')):
        with np.load(path) as data:
            for key in data.files:
                if key.endswith('x') and data[key].shape[1:] == (28, 28):
                    assert unknown(data[key]) == [], f'{path.name}:{key}'
                    checked += len(data[key])
    assert checked > 1000


# --- Omniglot bad input ----------------------------------------------------------------

@pytest.fixture
def small_alphabet(omniglot_data, tmp_path):
    """A writable copy of one real alphabet (Tagalog) as a one-alphabet Omniglot folder."""
    root = tmp_path / 'omniglot'
    shutil.copytree(omniglot_data / 'Tagalog', root / 'Tagalog')
    return root


def test_omniglot_corrupt_png_raises_input_error_naming_the_file(small_alphabet):
    """A garbage x.png inside a character folder makes reading the data set raise
    InputError naming it (not sampling it, possibly hours later)."""
    bad = small_alphabet / 'Tagalog' / 'character01' / 'x.png'
    bad.write_bytes(b'this is not a png\x00\xff' * 10)
    with pytest.raises(InputError) as info:
        omniglot.read_dataset(str(small_alphabet))
    assert str(bad) in str(info.value)
    with pytest.raises(InputError, match='cannot read image'):
        omniglot.read_image(str(bad))


def test_omniglot_non_1bit_png_raises_input_error(small_alphabet):
    """A PNG that is not 1-bit (here grayscale) is rejected with InputError naming it, rather
    than decoded differently from the original's binary images."""
    path = small_alphabet / 'Tagalog' / 'character01' / 'gray.png'
    Image.new('L', (105, 105), 200).save(path)
    with pytest.raises(InputError, match='1-bit') as info:
        omniglot.read_image(str(path))
    assert str(path) in str(info.value)


def test_omniglot_missing_or_empty_folder_raises_input_error(tmp_path):
    """read_dataset on a missing folder, or on one without <alphabet>/character* folders,
    raises InputError naming the folder."""
    missing = tmp_path / 'nowhere'
    with pytest.raises(InputError, match='not found') as info:
        omniglot.read_dataset(str(missing))
    assert str(missing) in str(info.value)

    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(InputError, match='no <alphabet>/character') as info:
        omniglot.read_dataset(str(empty))
    assert str(empty) in str(info.value)

    (empty / 'Alphabet' / 'notes').mkdir(parents=True)  # alphabet without characters
    with pytest.raises(InputError):
        omniglot.read_dataset(str(empty))


def test_omniglot_character_without_images_raises_input_error(tmp_path):
    """An empty character folder is found but sampling it raises InputError naming it."""
    folder = tmp_path / 'Alphabet' / 'character01'
    folder.mkdir(parents=True)
    (character,) = omniglot.read_dataset(str(tmp_path))
    assert len(character) == 0
    with pytest.raises(InputError, match='has 0 images') as info:
        character.sample(1)
    assert str(folder) in str(info.value)


# --- Mini-ImageNet on a generated tree -------------------------------------------------

WNIDS = {'train': ['n03000002', 'n01000001', 'n02000003'],  # created unsorted on purpose
         'val': ['n05000001', 'n04000002'],
         'test': ['n06000001']}
SIZES = [(100, 70), (83, 91), (500, 375), (84, 84)]


@pytest.fixture
def miniimagenet_tree(tmp_path):
    """data/miniimagenet-like tree: {train,val,test}/<wnid>/*.JPEG of random colours and odd
    sizes, one grayscale JPEG, and a non-JPEG file that must be ignored."""
    rng = np.random.default_rng(0)
    root = tmp_path / 'miniimagenet'
    for split, wnids in WNIDS.items():
        for wnid in wnids:
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i, (w, h) in enumerate(SIZES):
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels, 'RGB').save(folder / f'{wnid}_{i:04d}.JPEG')
            (folder / 'README.txt').write_text('not an image')
    gray = rng.integers(0, 256, (61, 97), dtype=np.uint8)
    Image.fromarray(gray, 'L').save(root / 'train' / WNIDS['train'][0] / 'gray_0000.JPEG')
    return root


def _original_miniimagenet_image(path):
    """The original's decoding: resize to 84x84 (NEAREST) before RGB conversion, / 0xff."""
    return np.array(Image.open(path).resize((84, 84), Image.NEAREST).convert('RGB')).astype('float32') / 0xff


def test_miniimagenet_reads_three_splits_with_sorted_classes(miniimagenet_tree):
    """read_dataset returns (train, val, test), each split's class folders sorted by name,
    counting only .JPEG files."""
    splits = miniimagenet.read_dataset(str(miniimagenet_tree))
    assert len(splits) == 3
    for split, classes in zip(('train', 'val', 'test'), splits):
        assert [os.path.basename(c.dir_path) for c in classes] == sorted(WNIDS[split])
        assert all(os.path.dirname(c.dir_path) == str(miniimagenet_tree / split) for c in classes)
    gray_class = next(c for c in splits[0] if c.dir_path.endswith(WNIDS['train'][0]))
    assert len(gray_class) == len(SIZES) + 1
    assert all(len(c) == len(SIZES) for c in splits[1])


def test_miniimagenet_sample_matches_pillow_decoding(miniimagenet_tree):
    """sample(n) gives (84,84,3) float32 images in [0,1] equal, file for file, to the
    original's `np.array(Image.open(p).resize((84,84), NEAREST).convert('RGB')) / 0xff`,
    grayscale JPEG included."""
    train, val, test = miniimagenet.read_dataset(str(miniimagenet_tree))
    for seed, cls in enumerate(train + val + test):
        n = len(cls)
        random.seed(seed)
        images = cls.sample(n)
        picked = _shuffled_names(cls.dir_path, '.JPEG', seed)[:n]
        assert len(images) == n
        for img, name in zip(images, picked):
            assert img.shape == (84, 84, 3)
            assert img.dtype == np.float32
            assert 0.0 <= img.min() and img.max() <= 1.0
            np.testing.assert_array_equal(img, _original_miniimagenet_image(os.path.join(cls.dir_path, name)))
    gray = next(c for c in train if c.dir_path.endswith(WNIDS['train'][0]))
    img = miniimagenet.read_image(os.path.join(gray.dir_path, 'gray_0000.JPEG'))
    assert img.shape == (84, 84, 3)
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()


def test_miniimagenet_sample_more_than_available_names_the_folder(miniimagenet_tree):
    """Asking a class for more images than it has raises InputError naming its folder."""
    cls = miniimagenet.read_dataset(str(miniimagenet_tree))[2][0]
    with pytest.raises(InputError) as info:
        cls.sample(len(cls) + 1)
    assert cls.dir_path in str(info.value)


def test_miniimagenet_missing_or_empty_split_raises_input_error(miniimagenet_tree):
    """A missing split folder, or a split without class folders, raises InputError naming it."""
    shutil.rmtree(miniimagenet_tree / 'val')
    with pytest.raises(InputError, match='not found') as info:
        miniimagenet.read_dataset(str(miniimagenet_tree))
    assert str(miniimagenet_tree / 'val') in str(info.value)

    (miniimagenet_tree / 'val').mkdir()
    with pytest.raises(InputError, match='no class folders') as info:
        miniimagenet.read_dataset(str(miniimagenet_tree))
    assert str(miniimagenet_tree / 'val') in str(info.value)


def test_miniimagenet_corrupt_jpeg_raises_input_error_naming_the_file(miniimagenet_tree):
    """A JPEG cut short makes reading the data set raise InputError naming the file; one
    with whole markers but garbage inside, sampling it."""
    folder = miniimagenet_tree / 'test' / WNIDS['test'][0]
    bad = folder / 'broken.JPEG'
    bad.write_bytes(b'\xff\xd8 definitely not a jpeg')
    with pytest.raises(InputError, match='cannot read image') as info:
        miniimagenet.read_dataset(str(miniimagenet_tree))
    assert str(bad) in str(info.value)
    bad.write_bytes(b'\xff\xd8 definitely not a jpeg \xff\xd9')
    cls = miniimagenet.read_dataset(str(miniimagenet_tree))[2][0]
    with pytest.raises(InputError, match='cannot read image') as info:
        cls.sample(len(cls))
    assert str(bad) in str(info.value)


def test_miniimagenet_nonstandard_warning_carries_the_counts():
    """nonstandard_warning: None for the original's classes and image counts (600 per class,
    597-599 for a few); otherwise one line with each split's class count that differs and
    the classes with fewer images."""
    counts = {split: {wnid: miniimagenet_images(wnid) for wnid in wnids}
              for split, wnids in MINIIMAGENET_WNIDS.items()}
    assert miniimagenet.nonstandard_warning('data/miniimagenet', counts) is None
    counts['train']['n01532829'] = 599
    del counts['test']['n07613480']
    assert miniimagenet.nonstandard_warning('data/miniimagenet', counts) == (
        'warning: data/miniimagenet is not the standard Mini-ImageNet: test has 19 classes (20 expected), '
        "1 classes with fewer images than the original's (n01532829: 599 of 600); results are not comparable "
        "with the paper's; ./fetch_data.sh verify miniimagenet checks it")


def test_miniimagenet_read_dataset_warns_once_on_a_small_tree(miniimagenet_tree, capsys):
    """read_dataset on a tree that is not the original's prints one warning line on stderr,
    for the whole data set, with its counts."""
    miniimagenet.read_dataset(str(miniimagenet_tree))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f'warning: {miniimagenet_tree} is not the standard Mini-ImageNet: train has 3 classes (64 expected), '
        'val has 2 classes (16 expected), test has 1 classes (20 expected), 6 classes with fewer images than '
        "the original's (n01000001: 4 of 600, n02000003: 4 of 600, n03000002: 5 of 600, ...);"), lines[0]
