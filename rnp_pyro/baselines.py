"""The papers' comparison model: a convolutional VAE decoder with the RNP's interface.

``ConvVAE`` has the same sample sites, ``decode``/``sample`` methods and likelihood as
the RNP model, so every guide, training loop and figure works with either.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
from pyro import poutine
from pyro.nn import PyroModule

from .errors import ConfigError
from .likelihood import Likelihood
from .model import ModelConfig, check_latents
from .plates import check_batch_shape, data_plate
from .primitives import PrimitiveStamp
from .spatial import ACTION_DIM
from .tree import Level, Tree

__all__ = ["ConvVAE"]

DEFAULT_WIDTH = 64


def _decoder(config: ModelConfig, width: int) -> nn.Sequential:
    """z -> 4w -> w x (S/4) x (S/4) -> two x2 transposed convs -> C x S x S in (0, 1).

    With ``config.primitives`` the second upsampling is the primitives stamped with fixed
    filters, weighted by non-negative coefficient maps (unbounded sums, as the RNP's)
    that pass through the RNP's ``patch_activation``.
    """
    side = config.image_size // 4
    half = max(width // 2, 1)
    trunk = [
        nn.Linear(config.z_dim, 4 * width), nn.ReLU(),
        nn.Linear(4 * width, width * side * side), nn.ReLU(),
        nn.Unflatten(-1, (width, side, side)),
        nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU(),
    ]
    if config.primitives:
        maps = config.channels * len(config.primitives)
        activation = {"relu6": nn.ReLU6, "sigmoid": nn.Sigmoid,
                      "softplus": nn.Softplus}[config.patch_activation]
        return nn.Sequential(*trunk, nn.Conv2d(width, maps, 3, padding=1), activation(),
                             PrimitiveStamp(config.primitives, config.patch_shape[-1],
                                            config.channels))
    return nn.Sequential(
        *trunk,
        nn.ConvTranspose2d(width, half, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(half, config.channels, 3, padding=1), nn.Sigmoid(),
    )


def _parameter_count(config: ModelConfig, width: int) -> int:
    with torch.device("meta"):  # count without allocating
        return sum(p.numel() for p in _decoder(config, width).parameters())


def _width_for(config: ModelConfig, target_params: int) -> int:
    """The width whose decoder has the parameter count nearest to ``target_params``."""
    low, high = 1, 1
    while _parameter_count(config, high) < target_params:
        low, high = high, 2 * high
    while high - low > 1:  # the count grows with the width: bisect
        middle = (low + high) // 2
        below = _parameter_count(config, middle) < target_params
        low, high = (middle, high) if below else (low, middle)
    return min((low, high), key=lambda w: abs(_parameter_count(config, w) - target_params))


class ConvVAE(PyroModule):
    """A convolutional VAE decoder with the RNP's latent size and sample sites.

    ``target_params`` picks the width so that the decoder has about that many
    parameters (to compare with an RNP of the same size); None uses width 64
    (about 0.9 M parameters for 28 x 28 images).
    """

    def __init__(self, config: ModelConfig, target_params: int | None = None):
        with pyro.settings.context(module_local_params=True):
            super().__init__()  # so it runs in either parameter mode, as RNP does
        if config.kind != "convvae":
            raise ConfigError(f"ConvVAE needs a model config of kind 'convvae', got "
                              f"{config.kind!r}")
        if target_params is not None and target_params < 1:
            raise ConfigError(f"target_params must be positive or None, got {target_params}")
        self.config = config
        self.width = DEFAULT_WIDTH if target_params is None else _width_for(config, target_params)
        self.decoder = _decoder(config, self.width)
        self.likelihood = Likelihood(config.likelihood, config.image_shape, config.obs_scale)

    def set_epoch(self, epoch: int, part_loss_ramp: int = 0) -> None:
        """Training's clock: nothing of the conv VAE changes with it (it has no parts)."""

    def forward(self, x: torch.Tensor | None = None, indices: torch.Tensor | None = None,
                dataset_size: int | None = None, batch_size: int | None = None) -> None:
        """The Pyro model of images x (B, C, H, W); ``x=None`` generates ``batch_size``
        images, as :meth:`rnp_pyro.model.RNP.forward` does."""
        config = self.config
        if x is not None:
            check_batch_shape(x, config.image_shape, "the model")
        zeros = next(self.parameters()).new_zeros(config.z_dim)
        prior = dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)
        with data_plate(x, indices, dataset_size, batch_size):
            with poutine.scale(scale=config.kl_weight):
                z = pyro.sample(config.top_site, prior)
            canvas = self.decode(z).canvas
            self.likelihood.observe(canvas, x)

    def decode(self, z: torch.Tensor, stochastic: bool | None = None) -> Tree:
        """(*B, |z|) latents -> a one-level tree whose root canvas is the decoded image.
        (``stochastic`` is :meth:`rnp_pyro.model.RNP.decode`'s; there are no lower levels.)"""
        check_latents(z, self.config.z_dim)
        batch = z.shape[:-1]
        canvas = self.decoder(z.reshape(-1, z.shape[-1])).reshape(*batch, *self.config.image_shape)
        root = Level(latents=z[..., None, :],
                     actions=z.new_zeros(*batch, 1, ACTION_DIM),
                     drawn=canvas[..., None, :, :, :],
                     placed=canvas[..., None, :, :, :])
        return Tree(levels=[root], taus=())

    def sample(self, n: int) -> Tree:
        """Decode ``n`` draws of z ~ N(0, I)."""
        weight = self.decoder[0].weight
        return self.decode(torch.randn(n, self.config.z_dim, device=weight.device,
                                       dtype=weight.dtype))
