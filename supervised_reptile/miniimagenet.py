"""Reading Mini-ImageNet: `train/`, `val/` and `test/` folders of WordNet-id folders of JPEGs."""

import os
import random

import numpy as np
from PIL import Image

from .errors import InputError

SPLITS = ('train', 'val', 'test')


def read_dataset(data_dir):
    """(train, val, test): lists of ImageNetClass, each split's classes sorted by name."""
    for split in SPLITS:
        if not os.path.isdir(os.path.join(data_dir, split)):
            raise InputError(f'Mini-ImageNet folder {os.path.join(data_dir, split)} not found: '
                             'run ./fetch_data.sh miniimagenet or pass --data-dir')
    return tuple(_read_classes(os.path.join(data_dir, split)) for split in SPLITS)


def _read_classes(dir_path):
    classes = [ImageNetClass(os.path.join(dir_path, name)) for name in sorted(os.listdir(dir_path))
               if os.path.isdir(os.path.join(dir_path, name))]
    if not classes:
        raise InputError(f'no class folders in {dir_path}: run ./fetch_data.sh miniimagenet '
                         'or pass the right --data-dir')
    return classes


class ImageNetClass:
    """One Mini-ImageNet class: 84x84x3 float32 images in [0, 1], decoded once and cached."""

    def __init__(self, dir_path):
        self.dir_path = dir_path
        self._names = sorted(f for f in os.listdir(dir_path) if f.endswith('.JPEG'))
        self._cache = {}

    def __len__(self):
        return len(self._names)

    def sample(self, num_images):
        """`num_images` distinct random images of this class."""
        if num_images > len(self._names):
            raise InputError(f'{self.dir_path} has {len(self._names)} images but {num_images} are needed '
                             'per class: lower --shots/--train-shots or add images')
        names = list(self._names)
        random.shuffle(names)
        return [self._read_image(name).astype(np.float32) / 0xff for name in names[:num_images]]

    def _read_image(self, name):
        if name not in self._cache:
            self._cache[name] = read_image(os.path.join(self.dir_path, name))
        return self._cache[name]


def read_image(path):
    """A JPEG resized to 84x84 RGB uint8, resized before RGB conversion as the original did.

    Nearest-neighbour: the default of the Pillow releases the original ran with (< 7.0).
    """
    try:
        with Image.open(path) as img:
            return np.array(img.resize((84, 84), Image.Resampling.NEAREST).convert('RGB'))
    except (OSError, ValueError) as exc:
        raise InputError(f'cannot read image {path} ({exc}): delete it or re-run ./fetch_data.sh') from None
