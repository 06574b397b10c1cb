"""The papers' ResNet encoder: an image to the mean and scale of q(z^K | x).

Layout (as in the authors' code): ``convs`` x [5x5 valid conv + BatchNorm + ReLU],
``blocks`` ResNet BasicBlocks, flatten, one [Linear + LayerNorm + ELU] per width of
``dense``, then a mean head and a scale head.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .plates import check_batch_shape

SCALE_FLOOR = 1e-4


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity skip (He et al., 2016)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


class ResNetEncoder(nn.Module):
    """(*B, C, H, W) images -> (*B, |z|) loc and scale of a diagonal Normal.

    The scale is ``softplus(head) + 1e-4``: smooth, positive and never collapsing to
    zero, without the overflow of ``exp`` on a large log-scale.
    """

    def __init__(self, image_shape: tuple[int, int, int], z_dim: int, *, width: int = 32,
                 convs: int = 4, blocks: int = 4, dense: tuple[int, ...] = (64, 64, 64),
                 bf16: bool = False):
        super().__init__()
        channels, size, _ = image_shape
        if convs < 0 or size - 4 * convs < 1:
            raise ValueError(f"{convs} valid 5x5 convolutions do not fit a {size}px image")
        self.image_shape = tuple(image_shape)
        self.bf16 = bf16  # convolutions under bfloat16 autocast: how, not what, it computes
        layers = []
        for i in range(convs):
            # a BatchNorm right after the conv makes the conv's bias redundant
            layers += [nn.Conv2d(channels if i == 0 else width, width, 5, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        in_channels = width if convs else channels
        self.features = nn.Sequential(
            *layers, *(BasicBlock(in_channels) for _ in range(blocks)))

        side = size - 4 * convs
        layers, features = [], in_channels * side * side
        for units in dense:
            layers += [nn.Linear(features, units), nn.LayerNorm(units), nn.ELU()]
            features = units
        self.dense = nn.Sequential(nn.Flatten(), *layers)
        self.loc = nn.Linear(features, z_dim)
        self.scale = nn.Linear(features, z_dim)
        # The weights stay contiguous: Pyro's param store keeps a contiguous copy of a
        # channels-last weight, which the classic SVI loop would train in its place.
        # Channels-last images put the convolutions in oneDNN's native layout; the
        # library's own training step lays the weights so too while it trains
        # (rnp_pyro.step.TrainStep), about 10% faster on CPUs.

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_batch_shape(x, self.image_shape, "the encoder")
        batch = x.shape[:-3]
        images = x.reshape(-1, *self.image_shape).contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, torch.bfloat16, enabled=self.bf16):
            features = self.features(images)
        hidden = self.dense(features.float())
        loc = self.loc(hidden)
        scale = F.softplus(self.scale(hidden)) + SCALE_FLOOR
        return loc.reshape(*batch, -1), scale.reshape(*batch, -1)
