"""Observation distributions p(x | canvas) with event shape (C, H, W)."""

from __future__ import annotations

import pyro
import torch
import pyro.distributions as dist
from pyro.nn import PyroModule
from torch import nn


_EPS = 1e-4
LIKELIHOODS = ("normal", "laplace", "continuous_bernoulli", "bernoulli")


class Likelihood(PyroModule):
    """Turns a mean canvas into the distribution of the observed image.

    ``normal`` with a fixed scale is the default: with scale sqrt(beta / 2) the
    negative ELBO is the papers' squared error + beta * KL, up to a constant factor.
    Bernoulli on grey values is the usual "binary cross-entropy" VAE loss (not a
    normalised density for non-binary pixels).
    """

    def __init__(self, kind: str, image_shape: tuple[int, int, int], scale: float | None = None):
        super().__init__()
        if kind not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {kind!r}")
        self.kind = kind
        self.image_shape = tuple(image_shape)
        self.fixed_scale = scale  # None: learned (normal and laplace)
        if scale is None and kind in ("normal", "laplace"):
            # log(scale), a plain parameter rather than a PyroParam, so that the value
            # used is always this module's, whatever pyro.settings say (a PyroParam in
            # Pyro's global store would be shared by every model of the same layout)
            self.scale_unconstrained = nn.Parameter(torch.tensor(0.2).log())

    def forward(self, canvas: torch.Tensor) -> dist.Distribution:
        if self.kind in ("normal", "laplace"):
            scale = self.scale_unconstrained.exp() if self.fixed_scale is None else self.fixed_scale
            family = dist.Normal if self.kind == "normal" else dist.Laplace
            return family(canvas, scale).to_event(3)
        probs = canvas.clamp(_EPS, 1 - _EPS)
        if self.kind == "continuous_bernoulli":
            return dist.ContinuousBernoulli(probs=probs).to_event(3)
        return dist.Bernoulli(probs=probs, validate_args=False).to_event(3)

    def observe(self, canvas: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        """The observation site ``x`` given the mean canvas: x observed (the model has
        checked it), or drawn when x is None."""
        return pyro.sample("x", self(canvas), obs=x)
