"""Guides: distributions q(latents | x) whose sample sites match the model's.

Every guide takes the model's arguments ``(x, indices=None, dataset_size=None)``
and has ``mean(x, indices, dataset_size)``, the z^K that reconstructions decode.
Guides with ``per_image = True`` keep parameters per dataset image and need the
indices; the others are amortized and ignore them.
"""

from __future__ import annotations

from ..config import GUIDES, ConfigError, RNPConfig
from .encoder import EncoderGuide
from .ladder import LadderGuide
from .local import ImageDelta, ImageNormal
from .refined import RefinedGuide

__all__ = ["GUIDES", "EncoderGuide", "ImageDelta", "ImageNormal", "LadderGuide", "RefinedGuide",
           "make"]


def make(name: str, cfg: RNPConfig, model, example=None, dataset_size: int | None = None):
    """The guide ``name`` (one of GUIDES) for ``model``.

    Per-image guides ("normal", "delta") need ``dataset_size`` and one ``example``
    batch of images, from which Pyro lays out their parameters.
    """
    if name == "encoder":
        return EncoderGuide(cfg, model=model)
    if name == "refined":
        return RefinedGuide(cfg, model)
    if name == "ladder":
        return LadderGuide(cfg, model)
    if name in ("normal", "delta"):
        if dataset_size is None or example is None:
            raise ValueError(f"the per-image guide {name!r} needs dataset_size and an example batch")
        guide = ImageNormal(model) if name == "normal" else ImageDelta(model)
        guide.initialise(example, dataset_size)
        return guide
    raise ConfigError(f"unknown guide {name!r}; choose one of {', '.join(GUIDES)}")
