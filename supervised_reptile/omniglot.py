"""Reading the Omniglot data set: characters as classes of 28x28 images.

Same data flow as the original: `read_dataset` lists every character folder of every
alphabet (sorted, so a seed always gives the same split), `split_dataset` shuffles with
Python's `random` exactly as the original did, and `augment_dataset` adds rotations by
90, 180 and 270 degrees as extra classes.
"""

import copy
import os
import random

import numpy as np
from PIL import Image

from .errors import InputError
from .data.imageclass import ImageClass


def read_dataset(data_dir):
    """All characters under `data_dir` (`<alphabet>/character*/*.png`), sorted by path, with
    every image decoded (about 0.25 ms each: see docs/faults.md), so that a broken one
    stops the run at once."""
    if not os.path.isdir(data_dir):
        raise InputError(f'Omniglot folder {data_dir} not found: run ./fetch_data.sh omniglot '
                         'or pass --data-dir')
    characters = [Character(os.path.join(data_dir, alphabet, name))
                  for alphabet in sorted(os.listdir(data_dir))
                  if os.path.isdir(os.path.join(data_dir, alphabet))
                  for name in sorted(os.listdir(os.path.join(data_dir, alphabet)))
                  if name.startswith('character')]
    if not characters:
        raise InputError(f'no <alphabet>/character* folders in {data_dir}: run ./fetch_data.sh omniglot '
                         'or pass the right --data-dir')
    for character in characters:
        character.verify()
    return characters


def split_dataset(dataset, num_train=1200):
    """Shuffle (consuming `random` like the original) and split into (train, test)."""
    all_data = list(dataset)
    random.shuffle(all_data)
    return all_data[:num_train], all_data[num_train:]


def augment_dataset(dataset):
    """Each character at rotations 0, 90, 180 and 270 degrees, each a class of its own.

    Rotated classes share the unrotated image cache: rotation happens when sampling.
    """
    for character in dataset:
        for rotation in [0, 90, 180, 270]:
            rotated = copy.copy(character)
            rotated.rotation = rotation
            yield rotated


class Character(ImageClass):
    """One Omniglot character (optionally rotated): a class of 28x28 float32 images,
    1.0 for background and 0.0 for ink. Rotated copies share the cache of decoded images."""
    suffix = '.png'

    def __init__(self, dir_path, rotation=0):
        super().__init__(dir_path)
        self.rotation = rotation

    @property
    def name(self):
        """The folder, and the rotation when there is one: `.../character07@90`."""
        return f'{self.dir_path}@{self.rotation}' if self.rotation else self.dir_path

    def _decode(self, path):
        return read_image(path)

    def _present(self, image):
        return as_input(image, self.rotation)


def as_input(image, rotation=0):
    """A stored 0/1 image, rotated counter-clockwise by `rotation` degrees, as float32."""
    return np.rot90(image, rotation // 90).astype(np.float32)


def read_image(path, binarize=False):
    """A 1-bit Omniglot PNG as a 28x28 uint8 array (1 background, 0 ink).

    Nearest-neighbour resizing keeps the image binary, as Pillow does for 1-bit images.
    With `binarize`, other images are first thresholded at half intensity (no dithering).
    """
    try:
        with Image.open(path) as img:
            if binarize and img.mode != '1':
                img = img.convert('L').point(lambda v: 255 if v >= 128 else 0).convert('1', dither=Image.Dither.NONE)
            if img.mode != '1':
                raise ValueError(f'mode {img.mode}, not a 1-bit image')
            return np.array(img.resize((28, 28), Image.Resampling.NEAREST), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise InputError(f'cannot read image {path} ({exc}): delete it or re-run ./fetch_data.sh') from None
