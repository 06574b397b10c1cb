"""Guides: distributions q(latents | x) whose sample sites match the model's.

Every guide takes the model's arguments ``(x, indices=None, dataset_size=None)``.
Guide classes are found by name in a registry (:mod:`.registry`), and each declares
what it supports (``per_image``, ``data_parallel``, ``stochastic_levels``,
``graph_capturable``); :func:`build` makes the one a :class:`GuideConfig` names.
:func:`reconstruct` decodes any guide's means.
"""

from __future__ import annotations

from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from .registry import (Guide, GuideConfig, guide_class, guide_for_model, is_per_image,
                       keeps_positions, names, register)
from .encoder import EncoderGuide
from .local import ImageDelta, ImageNormal
from .ladder import LadderGuide
from .refined import RefinedGuide

__all__ = ["AtMeans", "EncoderGuide", "Guide", "GuideConfig", "ImageDelta", "ImageNormal",
           "LadderGuide", "RefinedGuide", "build", "decode_latents", "guide_class",
           "is_per_image", "keeps_positions", "names", "posterior_means", "reconstruct",
           "register"]


def build(config: GuideConfig, model, *, example=None, dataset_size: int | None = None,
          bf16_encoder: bool = False):
    """The guide ``config`` names, fresh, for ``model``.

    Per-image guides need ``dataset_size`` and one ``example`` batch of images, from
    which Pyro lays out their parameters.
    """
    cls = guide_for_model(config.kind, model.config.stochastic_levels)
    return cls.from_config(model, config, example=example, dataset_size=dataset_size,
                           bf16_encoder=bf16_encoder)


class AtMeans(Messenger):
    """Every latent site not given a value takes its distribution's mean instead of a
    sample; a distribution with no mean in closed form (a normalising flow's) is
    sampled."""

    def _pyro_sample(self, msg):
        if not msg["is_observed"] and not site_is_subsample(msg):
            try:
                msg["value"] = msg["fn"].mean
            except NotImplementedError:
                return
            msg["done"] = True


def posterior_means(guide, x, *args) -> dict:
    """{site: mean} of every latent the guide draws, each given its parents' means.

    Top-down guides (the ladder) thus give the tree they read in x; guides of z^K
    alone give the model's prior means for the levels below.
    """
    with AtMeans():
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
    top = lower.pop(model.config.top_site)
    return poutine.condition(model.decode, data=lower)(top)
