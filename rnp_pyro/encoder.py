"""The papers' ResNet encoder: an image to the mean and scale of q(z^K | x).

Layout (as in the authors' code): ``encoder_convs`` x [5x5 valid conv + BatchNorm +
ReLU], ``encoder_blocks`` ResNet BasicBlocks, flatten, one [Linear + LayerNorm + ELU]
per width of ``encoder_dense``, then a mean head and a scale head.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import RNPConfig
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

    def __init__(self, cfg: RNPConfig):
        super().__init__()
        self.image_shape = cfg.image_shape
        self.bf16 = cfg.bf16_encoder
        width = cfg.encoder_channels
        convs = []
        for i in range(cfg.encoder_convs):
            # a BatchNorm right after the conv makes the conv's bias redundant
            convs += [nn.Conv2d(cfg.channels if i == 0 else width, width, 5, bias=False),
                      nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        in_channels = width if cfg.encoder_convs else cfg.channels
        self.features = nn.Sequential(
            *convs, *(BasicBlock(in_channels) for _ in range(cfg.encoder_blocks)))

        side = cfg.image_size - 4 * cfg.encoder_convs
        dense, features = [], in_channels * side * side
        for units in cfg.encoder_dense:
            dense += [nn.Linear(features, units), nn.LayerNorm(units), nn.ELU()]
            features = units
        self.dense = nn.Sequential(nn.Flatten(), *dense)
        self.loc = nn.Linear(features, cfg.z_dim)
        self.scale = nn.Linear(features, cfg.z_dim)
        # channels-last weights and images run the convolutions in oneDNN's native
        # layout on CPUs (about 10% faster there); the math is unchanged
        self.to(memory_format=torch.channels_last)

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
