"""The papers' amortized guide: a ResNet encoder giving q(z^K | x)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule

from ..config import RNPConfig, top_site
from ..encoder import ResNetEncoder
from ..plates import data_plate

__all__ = ["EncoderGuide"]


class EncoderGuide(PyroModule):
    """q(z^K | x) = Normal(encoder(x)), one draw per image of the "data" plate.

    With ``cfg.stochastic_levels`` the lower levels are drawn from the model's own
    conditional prior (``model.sample_lower_levels``), so their log-density ratio
    cancels and only z^K is inferred. The model is kept as a plain reference, not a
    submodule, so the guide's parameters and state_dict hold only the encoder.
    """

    def __init__(self, cfg: RNPConfig, model=None):
        super().__init__()
        if cfg.stochastic_levels and model is None:
            raise ValueError("with stochastic_levels the guide samples the lower levels from the "
                             "model's prior: pass EncoderGuide(cfg, model=model)")
        self.cfg = cfg
        self.encoder = ResNetEncoder(cfg)
        object.__setattr__(self, "model", model)

    per_image = False  # amortized: no parameters of its own per dataset image

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(*B, C, H, W) images in [0, 1] -> (*B, |z|) loc and scale of q(z^K | x)."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None,
                dataset_size: int | None = None) -> torch.Tensor:
        return self.sample(x, *self.encode(x), indices, dataset_size)

    def sample(self, x, loc, scale, indices=None, dataset_size=None) -> torch.Tensor:
        """The guide's sample sites for q(z^K | x) = Normal(loc, scale)."""
        with data_plate(x, indices, dataset_size), poutine.scale(scale=self.cfg.kl_weight):
            z_top = pyro.sample(top_site(self.cfg), dist.Normal(loc, scale).to_event(1))
            if self.cfg.stochastic_levels:
                self.sample_lower_levels(z_top, x)
        return z_top

    def sample_lower_levels(self, z_top: torch.Tensor, x: torch.Tensor) -> None:
        """The per-level sites below z^K: here from the model's own conditional prior."""
        self.model.sample_lower_levels(z_top)
