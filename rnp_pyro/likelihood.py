"""Observation distributions p(x | canvas) with event shape (C, H, W)."""

from __future__ import annotations

import pyro
import torch
import torch.distributions.constraints as constraints
import pyro.distributions as dist
from pyro.nn import PyroModule, PyroParam

from .config import RNPConfig
from .plates import check_batch_shape

_EPS = 1e-4


class Likelihood(PyroModule):
    """Turns a mean canvas into the distribution of the observed image.

    ``normal`` with a fixed scale is the default: with scale sqrt(beta / 2) the
    negative ELBO is the papers' squared error + beta * KL, up to a constant factor.
    Bernoulli on grey values is the usual "binary cross-entropy" VAE loss (not a
    normalised density for non-binary pixels).
    """

    def __init__(self, cfg: RNPConfig):
        super().__init__()
        self.kind = cfg.likelihood
        self.image_shape = cfg.image_shape
        self.fixed_scale = cfg.obs_scale
        if cfg.obs_scale is None and self.kind in ("normal", "laplace"):
            self.scale = PyroParam(torch.full((), 0.2), constraint=constraints.positive)

    def forward(self, canvas: torch.Tensor) -> dist.Distribution:
        if self.kind in ("normal", "laplace"):
            scale = self.scale if self.fixed_scale is None else self.fixed_scale
            family = dist.Normal if self.kind == "normal" else dist.Laplace
            return family(canvas, scale).to_event(3)
        probs = canvas.clamp(_EPS, 1 - _EPS)
        if self.kind == "continuous_bernoulli":
            return dist.ContinuousBernoulli(probs=probs).to_event(3)
        return dist.Bernoulli(probs=probs, validate_args=False).to_event(3)

    def observe(self, canvas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The observation site ``x`` given the mean canvas, after checking x's shape."""
        check_batch_shape(x, self.image_shape, "the model")
        return pyro.sample("x", self(canvas), obs=x)
