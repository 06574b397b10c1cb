"""Guides: distributions q(latents | x) whose sample sites match the model's.

Every guide takes the model's arguments ``(x, indices=None, dataset_size=None)``.
Guides with ``per_image = True`` keep parameters per dataset image and need the
indices; the others are amortized and ignore them. :func:`reconstruct` decodes any
guide's means.
"""

from __future__ import annotations

from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from ..config import GUIDES, ConfigError, RNPConfig, top_site
from .encoder import EncoderGuide
from .ladder import LadderGuide
from .local import ImageDelta, ImageNormal
from .refined import RefinedGuide

__all__ = ["GUIDES", "EncoderGuide", "ImageDelta", "ImageNormal", "LadderGuide", "RefinedGuide",
           "decode_latents", "make", "posterior_means", "reconstruct"]


def make(name: str, cfg: RNPConfig, model, example=None, dataset_size: int | None = None):
    """The guide ``name`` (one of GUIDES) for ``model``.

    Per-image guides ("normal", "delta") need ``dataset_size`` and one ``example``
    batch of images, from which Pyro lays out their parameters.
    """
    if name == "encoder":
        return EncoderGuide(cfg, model=model)
    if name == "refined":
        return RefinedGuide(cfg, model=model)
    if name == "ladder":
        return LadderGuide(cfg, model)
    if name in ("normal", "delta"):
        if dataset_size is None or example is None:
            raise ValueError(f"the per-image guide {name!r} needs dataset_size and an example batch")
        guide = ImageNormal(model) if name == "normal" else ImageDelta(model)
        guide.initialise(example, dataset_size)
        return guide
    raise ConfigError(f"unknown guide {name!r}; choose one of {', '.join(GUIDES)}")


class _Means(Messenger):
    """Every latent site takes its distribution's mean instead of a sample."""

    def _pyro_sample(self, msg):
        if not msg["is_observed"] and not site_is_subsample(msg):
            msg["value"] = msg["fn"].mean
            msg["done"] = True


def posterior_means(guide, x, *args) -> dict:
    """{site: mean} of every latent the guide draws, each given its parents' means.

    Top-down guides (the ladder) thus give the tree they read in x; guides of z^K
    alone give the model's prior means for the levels below.
    """
    with _Means():
        trace = poutine.trace(guide).get_trace(x, *args)
    return {name: site["value"] for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)}


def reconstruct(model, guide, x, *args):
    """The parse tree decoded from the guide's means: what reconstructions show."""
    return decode_latents(model, posterior_means(guide, x, *args))


def decode_latents(model, latents: dict):
    """The parse tree of given latent values {site: value}: z^K decoded, each lower
    level's site (when there are any) held at its given value."""
    lower = dict(latents)
    top = lower.pop(top_site(model.cfg))
    return poutine.condition(model.decode, data=lower)(top)
