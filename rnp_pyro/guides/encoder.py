"""The papers' amortized guide: a ResNet encoder giving q(z^K | x)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule

from ..encoder import ResNetEncoder
from ..plates import data_plate
from .registry import Guide, GuideConfig, register

__all__ = ["EncoderGuide"]


@register
class EncoderGuide(Guide, PyroModule):
    """q(z^K | x) = Normal(encoder(x)), one draw per image of the "data" plate.

    With stochastic per-level latents the lower levels are drawn from the model's own
    conditional prior (``model.sample_lower_levels``), so their log-density ratio
    cancels and only z^K is inferred. The model is kept as a plain reference, not a
    submodule, so the guide's parameters and state_dict hold only the encoder.
    """

    name = "encoder"
    data_parallel = True
    graph_capturable = True

    def __init__(self, model, config: GuideConfig | None = None, *, bf16_encoder: bool = False):
        if not hasattr(getattr(model, "config", None), "top_site"):
            raise TypeError(f"{type(self).__name__} takes the model it guides first (an RNP or "
                            f"ConvVAE, whose .config is its ModelConfig); got "
                            f"{type(model).__name__}")
        super().__init__()
        self.config = config = config or GuideConfig()
        object.__setattr__(self, "model", model)
        tree = model.config
        self.encoder = ResNetEncoder(tree.image_shape, tree.z_dim, bf16=bf16_encoder,
                                     **config.encoder_options())

    @classmethod
    def from_config(cls, model, config, *, example=None, dataset_size=None, bf16_encoder=False):
        return cls(model, config, bf16_encoder=bf16_encoder)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(*B, C, H, W) images in [0, 1] -> (*B, |z|) loc and scale of q(z^K | x)."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None,
                dataset_size: int | None = None) -> torch.Tensor:
        return self.sample(x, *self.encode(x), indices, dataset_size)

    def sample(self, x, loc, scale, indices=None, dataset_size=None) -> torch.Tensor:
        """The guide's sample sites for q(z^K | x) = Normal(loc, scale)."""
        tree = self.model.config
        with data_plate(x, indices, dataset_size), poutine.scale(scale=tree.kl_weight):
            z_top = pyro.sample(tree.top_site, dist.Normal(loc, scale).to_event(1))
            if tree.stochastic_levels:
                self.sample_lower_levels(z_top, x)
        return z_top

    def sample_lower_levels(self, z_top: torch.Tensor, x: torch.Tensor) -> None:
        """The per-level sites below z^K: here from the model's own conditional prior."""
        self.model.sample_lower_levels(z_top)
