"""Reading Mini-ImageNet: `train/`, `val/` and `test/` folders of WordNet-id folders of JPEGs."""

import os
import sys

import numpy as np
from PIL import Image

from .errors import InputError
from .data.imageclass import ImageClass
from .data.fetch import MARKERS
from .data.reference import MINIIMAGENET_WNIDS, miniimagenet_images

SPLITS = ('train', 'val', 'test')


def read_dataset(data_dir):
    """(train, val, test): lists of ImageNetClass, each split's classes sorted by name.

    Prints one warning line on stderr when the folder is not the original's Mini-ImageNet.
    """
    for split in SPLITS:
        if not os.path.isdir(os.path.join(data_dir, split)):
            raise InputError(f'Mini-ImageNet folder {os.path.join(data_dir, split)} not found: '
                             'run ./fetch_data.sh miniimagenet or pass --data-dir')
    splits = tuple(_read_classes(os.path.join(data_dir, split)) for split in SPLITS)
    warning = nonstandard_warning(data_dir, {split: {os.path.basename(c.dir_path): len(c) for c in classes}
                                             for split, classes in zip(SPLITS, splits)})
    if warning:
        print(warning, file=sys.stderr)
    return splits


def nonstandard_warning(data_dir, counts):
    """The one-line warning that `counts` ({split: {class name: images}}) are not those of
    the original's Mini-ImageNet (64/16/20 classes of 600 images, a few 597-599: see
    `standard`), or None when they are: results on other data are not comparable with the
    paper's."""
    differences = [f'{split} has {len(counts[split])} classes ({len(MINIIMAGENET_WNIDS[split])} expected)'
                   for split in SPLITS if len(counts[split]) != len(MINIIMAGENET_WNIDS[split])]
    short = [f'{name}: {count} of {miniimagenet_images(name)}' for split in SPLITS
             for name, count in counts[split].items() if count < miniimagenet_images(name)]
    if short:
        listed = ', '.join(short[:3]) + (', ...' if len(short) > 3 else '')
        differences.append(f'{len(short)} classes with fewer images than the original\'s ({listed})')
    if not differences:
        return None
    return (f'warning: {data_dir} is not the standard Mini-ImageNet: {", ".join(differences)}; results are not '
            "comparable with the paper's; ./fetch_data.sh verify miniimagenet checks it")


def _read_classes(dir_path):
    classes = [ImageNetClass(os.path.join(dir_path, name)) for name in sorted(os.listdir(dir_path))
               if os.path.isdir(os.path.join(dir_path, name))]
    if not classes:
        raise InputError(f'no class folders in {dir_path}: run ./fetch_data.sh miniimagenet '
                         'or pass the right --data-dir')
    for cls in classes:
        cls.verify()
    return classes


class ImageNetClass(ImageClass):
    """One Mini-ImageNet class: 84x84x3 float32 images in [0, 1]."""
    suffix = '.JPEG'

    def _decode(self, path):
        return read_image(path)

    def _present(self, image):
        return as_input(image)

    def verify(self):
        """Check each JPEG's start and end markers (decoding 60,000 JPEGs would take
        minutes): a file cut short stops the run at once. See `data.fetch.image_problem`."""
        start, end = MARKERS['.JPEG']
        for name in self._names:
            path = os.path.join(self.dir_path, name)
            try:
                with open(path, 'rb') as file:
                    head = file.read(len(start))
                    file.seek(max(0, os.path.getsize(path) - len(end)))
                    whole = head == start and file.read() == end
            except OSError as exc:
                raise InputError(f'cannot read image {path} ({exc.strerror})') from None
            if not whole:
                raise InputError(f'cannot read image {path} (cut short: no JPEG start or end marker): delete it or '
                                 're-run ./fetch_data.sh')


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
