"""Reading Mini-ImageNet: `train/`, `val/` and `test/` folders of WordNet-id folders of JPEGs."""

import os

import numpy as np
from PIL import Image

from .errors import InputError
from .imageclass import ImageClass

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


class ImageNetClass(ImageClass):
    """One Mini-ImageNet class: 84x84x3 float32 images in [0, 1]."""
    suffix = '.JPEG'

    def _decode(self, path):
        return read_image(path)

    def _present(self, image):
        return as_input(image)


def as_input(image):
    """A stored uint8 image as the network's float32 input in [0, 1]."""
    return image.astype(np.float32) / 0xff


def read_image(path):
    """A JPEG resized to 84x84 RGB uint8, resized before RGB conversion as the original did.

    Nearest-neighbour: the default of the Pillow releases the original ran with (< 7.0).
    """
    try:
        with Image.open(path) as img:
            return np.array(img.resize((84, 84), Image.Resampling.NEAREST).convert('RGB'))
    except (OSError, ValueError) as exc:
        raise InputError(f'cannot read image {path} ({exc}): delete it or re-run ./fetch_data.sh') from None
