"""A structured guide for stochastic per-level latents: top-down, ladder style.

With stochastic per-level latents the model has a site per tree level below the top,
``z{k} ~ Normal(m_k, level_scale)`` with ``m_k`` the child latents that the parents'
programs emit. :class:`~rnp_pyro.guides.EncoderGuide` infers only z^K and draws the
lower levels from that prior. :class:`LadderGuide` infers them too, top-down over
the tree, as the model generates them:

    q(z^K | x)                   = Normal(ResNetEncoder(x))
    q(z^k_t | z^k_{<t}, z^{k+1}, x) = Normal(m + delta, scale),  per node and step,
    (delta, scale)               = head([features(crop), m])

one site per level and program step, as in the model: ``m`` and each node's action
come from running the *model's own* programs, step by step, on the latents the guide
has sampled (the model's own traversal, ``RNP.grow``: each sampled child is what its
program's next step reads), and ``crop`` is the region of x
under the node: the root's crop is x, a child's is its parent's crop cropped under
the child's action (:func:`rnp_pyro.spatial.crop`), ``crop_size`` pixels square (the
guide config's; half the image's side by default). One small network encodes the
crops of every level (bottom-up evidence). The head's output layer starts at zero,
with the scale's bias set so that ``scale == level_scale``: at initialisation the
guide's lower levels are exactly the model's conditional prior.

The model is held as a plain reference (not a submodule), so the guide's parameters
and state_dict hold only its own networks. Gradients of the loss still reach the
model's parameters through the prior means and actions the guide computes with
them, as they must: q depends on them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import spatial
from ..encoder import SCALE_FLOOR
from ..errors import ConfigError
from ..variants import emitted_site, sample_children
from .encoder import EncoderGuide
from .registry import GuideConfig, register

__all__ = ["LadderGuide", "CropEncoder", "LevelPosterior"]


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class CropEncoder(nn.Module):
    """Crops (M, C, H, W) -> features (M, ``features``): two strided convs, a 4x4 pool, a dense layer."""

    def __init__(self, channels: int, width: int = 16, features: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.ELU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ELU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, features), nn.ELU())

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net(crops)


class LevelPosterior(nn.Module):
    """[crop features, prior mean] (M, F + |z|) -> (delta, scale), each (M, |z|).

    The output layer starts at zero weights, its delta bias at zero and its scale bias
    at softplus^-1(level_scale - floor): delta == 0 and scale == level_scale at first.
    """

    def __init__(self, features: int, z_dim: int, level_scale: float, hidden: int = 64):
        super().__init__()
        self.z_dim = z_dim
        self.hidden = nn.Sequential(nn.Linear(features + z_dim, hidden), nn.ELU())
        self.out = nn.Linear(hidden, 2 * z_dim)
        with torch.no_grad():
            self.out.weight.zero_()
            self.out.bias[:z_dim].zero_()
            self.out.bias[z_dim:].fill_(_inverse_softplus(max(level_scale - SCALE_FLOOR, 1e-6)))

    def forward(self, features: torch.Tensor, prior_mean: torch.Tensor):
        out = self.out(self.hidden(torch.cat([features, prior_mean], -1)))
        delta, raw_scale = out.split(self.z_dim, -1)
        return delta, F.softplus(raw_scale) + SCALE_FLOOR


@register
class LadderGuide(EncoderGuide):
    """q(z^K | x) q(z^{K-1} | z^K, x) ... q(z^0 | z^1, x), a site per level and step as
    in the model.

    ``LadderGuide(model)`` needs a model with stochastic per-level latents, whose
    programs give each level's prior means and actions. q(z^K | x) is the encoder
    guide's; the levels below replace its draws from the model's prior.
    """

    name = "ladder"
    stochastic_levels = "required"

    def __init__(self, model, config: GuideConfig | None = None, *, bf16_encoder: bool = False,
                 crop_width: int = 16, features: int = 64, hidden: int = 64):
        tree = getattr(model, "config", None)
        if not hasattr(model, "grow"):
            raise ConfigError("LadderGuide runs the model's programs top-down: pass "
                              "LadderGuide(model) with the RNP it guides")
        if not tree.stochastic_levels:
            raise ConfigError("LadderGuide infers the per-level latents of a model with "
                              "stochastic_levels=True; this model has a deterministic tree "
                              "(stochastic_levels=False), whose only latent is z^K: use "
                              "EncoderGuide, or set stochastic_levels=True")
        super().__init__(model, config, bf16_encoder=bf16_encoder)
        self.crop_size = self.config.crop_size or max(4, tree.image_size // 2)
        self.crop_encoder = CropEncoder(tree.channels, crop_width, features)
        self.posterior = LevelPosterior(features, tree.z_dim, tree.level_scale, hidden)

    def sample_lower_levels(self, z_top: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
        """Sample the sites of the levels below z^K (*B, |z|) top-down, one program step
        at a time as the model does (each sample is what the program's next step
        reads), given the images x: the model's own traversal
        (:meth:`rnp_pyro.model.RNP.grow`) with this guide's posterior drawing the latents.

        Returns the sampled latents of each level below the top, (*B, n_k, |z|).
        """
        tree = self.model.config
        lead = z_top.shape[:-1]
        crops = x.expand(*lead, *tree.image_shape).reshape(-1, *tree.image_shape)
        posterior = _PosteriorLatents(self, crops, lead)
        grown = self.model.grow_for_replay(z_top, posterior)
        return [level.latents.reshape(*lead, -1, tree.z_dim) for level in grown]


class _PosteriorLatents:
    """The ladder guide's q for each child a program emits (``feed`` of
    :meth:`rnp_pyro.model.RNP.grow`), given the crop of x under each node: the root's
    crop is x, a child's is its parent's crop cropped under the child's action."""

    def __init__(self, guide: LadderGuide, root_crops: torch.Tensor, lead: torch.Size):
        self.guide, self.lead = guide, lead
        self.crops = {0: root_crops}  # tree depth -> the crops of its nodes (N, C, H, W)

    def feed(self, depth: int):
        tree = self.guide.model.config
        parent_crops = self.crops[depth]
        if isinstance(parent_crops, list):  # one (nodes, C, h, w) per step of the level above
            parent_crops = torch.stack(parent_crops, 1).flatten(0, 1)
        child_crops = self.crops[depth + 1] = []

        def sample(t, means, actions):
            crop = spatial.crop(parent_crops, actions[:, 0], tree.scale_offset,
                                tree.rotation_range, self.guide.crop_size)  # (N * n, C, h, w)
            child_crops.append(crop)
            delta, scale = self.guide.posterior(self.guide.crop_encoder(crop), means[:, 0])
            return sample_children(emitted_site(len(tree.taus), depth, t), self.lead,
                                   means + delta.unsqueeze(1), scale)

        return sample
