"""Guides: distributions q(latents | x) whose sample sites match the model's.

Every guide takes the model's arguments ``(x, indices=None, dataset_size=None)``.
"""

from .encoder import EncoderGuide

__all__ = ["EncoderGuide"]
