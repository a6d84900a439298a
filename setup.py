"""Installs the supervised_reptile package and its command-line dependencies."""

from setuptools import find_packages, setup

setup(
    name='supervised-reptile-tf2',
    version='0.1.0',
    description='Reptile and first-order MAML for few-shot classification (TensorFlow 2 / Keras 3)',
    packages=find_packages(include=['supervised_reptile', 'supervised_reptile.*']),
    package_data={'supervised_reptile': ['demo_page.html']},
    py_modules=['run_omniglot', 'run_miniimagenet'],
    python_requires='>=3.11',
    install_requires=['tensorflow>=2.16', 'keras>=3', 'tensorboard', 'numpy', 'pillow', 'absl-py'],
    extras_require={'test': ['pytest', 'selenium']},
)
