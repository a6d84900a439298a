"""Reptile and first-order MAML for few-shot classification, in TensorFlow 2 / Keras 3.

A reimplementation of OpenAI's `supervised-reptile` (Nichol, Achiam & Schulman, "On
First-Order Meta-Learning Algorithms", 2018) that computes what the original computes.
"""

__version__ = '0.2.0'
