"""A class of images in one folder: what the data set readers have in common."""

import os
import random

import numpy as np

from ..errors import InputError


class ImageClass:
    """The images with a given suffix in `dir_path`, decoded once (as uint8) and cached.

    `sample` consumes `random` as the original's classes did: shuffle the file list, take
    the first n. The list is sorted first (the original used directory order, which
    differs between file systems). Subclasses say how to decode and how to present.
    """
    suffix = None

    def __init__(self, dir_path):
        self.dir_path = dir_path
        try:
            self._names = sorted(f for f in os.listdir(dir_path) if f.endswith(self.suffix))
        except OSError as exc:
            raise InputError(f'cannot list {dir_path} ({exc.strerror}): a class must be a folder of images; '
                             'remove it or re-run ./fetch_data.sh') from None
        self._cache = {}

    def __len__(self):
        return len(self._names)

    @property
    def name(self):
        """How results files name this class: its folder."""
        return self.dir_path

    def sample(self, num_images):
        """`num_images` distinct random images of this class, as float32 arrays."""
        return [np.asarray(image) for image in self.pick(num_images)]

    def pick(self, num_images):
        """`num_images` distinct random images of this class, as `Image`s: decoded only when
        a process turns them into arrays (in a distributed run, only its own tasks')."""
        if num_images > len(self._names):
            raise InputError(f'{self.dir_path} has {len(self._names)} images but {num_images} are needed '
                             'per class: lower --shots/--train-shots or add images')
        names = list(self._names)
        random.shuffle(names)
        return [Image(self, name) for name in names[:num_images]]

    def array(self, name):
        """The float32 image stored in file `name`, decoded once."""
        return self._present(self._cached(name))

    def verify(self):
        """Raise InputError now for an image that cannot be read, rather than when it is
        first sampled, possibly hours into a run. Here: decode every image into the cache
        (which training fills anyway); subclasses may check less."""
        for name in self._names:
            self._cached(name)

    def _cached(self, name):
        if name not in self._cache:
            self._cache[name] = self._decode(os.path.join(self.dir_path, name))
        return self._cache[name]

    def _decode(self, path):
        """The stored (uint8) form of one image file."""
        raise NotImplementedError

    def _present(self, image):
        """The float32 image a task gets from the stored form."""
        raise NotImplementedError


class Image:
    """One image of an `ImageClass`, decoded (and cached) by `np.asarray`."""
    __slots__ = ('image_class', 'name')

    def __init__(self, image_class, name):
        self.image_class, self.name = image_class, name

    def __array__(self, dtype=None, copy=None):
        array = self.image_class.array(self.name)
        return array if dtype is None else array.astype(dtype)
