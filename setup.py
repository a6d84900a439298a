"""Installs the supervised_reptile package and its command-line dependencies."""

import re

from setuptools import find_packages, setup

VERSION = re.search(r"__version__ = '(.+)'", open('supervised_reptile/__init__.py').read()).group(1)

setup(
    name='supervised-reptile-tf2',
    version=VERSION,
    description='Reptile and first-order MAML for few-shot classification (TensorFlow 2 / Keras 3)',
    packages=find_packages(include=['supervised_reptile', 'supervised_reptile.*']),
    package_data={'supervised_reptile.assets': ['webdemo/*'],
                  'supervised_reptile.tools': ['web/*.html', 'web/*.js', 'web/vendor/*']},
    py_modules=['run_omniglot', 'run_miniimagenet'],
    license='MIT',
    python_requires='>=3.11',
    install_requires=['tensorflow>=2.16', 'keras>=3', 'tensorboard', 'numpy', 'pillow', 'absl-py'],
    extras_require={'test': ['pytest', 'pytest-xdist', 'selenium', 'hypothesis']},
    entry_points={'console_scripts': [f'reptile-{tool}=supervised_reptile.{tool}:cli'
                                      for tool in ('fewshot', 'demo', 'compare', 'export', 'lake')]},
)
