"""Fixed drawing primitives, for the papers' comparison of an RNP with a conv VAE when
both may only draw with given strokes (PNAS Fig. 4A).

An RNP with ``cfg.primitives`` draws each leaf patch as a non-negative combination of
the primitives (its generated decoder emits one coefficient per primitive and channel
instead of pixels), then places it under the leaf's learned action. The conv VAE
with ``cfg.primitives`` has them as the fixed filters of its last transposed
convolution: it can only stamp them, upright and unscaled, on a grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PRIMITIVES = ("line", "curve")  # the strokes there are, by name
PEN_WIDTH = 0.18  # stroke width as a fraction of the patch side


def primitive_images(names: tuple[str, ...], size: int) -> torch.Tensor:
    """(k, size, size) antialiased strokes in [0, 1], in the order of ``names``.

    "line": a diagonal bar from corner to corner; "curve": a half circle.
    """
    side = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(side, side, indexing="ij")
    images = []
    for name in names:
        if name == "line":  # the segment from (-0.8, -0.8) to (0.8, 0.8)
            along = ((x + y) / 2).clamp(-0.8, 0.8)
            distance = torch.hypot(x - along, y - along)
        elif name == "curve":  # the upper half of the circle of radius 0.6 about (0, 0.3)
            dx, dy = x, y - 0.3
            radius = torch.hypot(dx, dy)
            ends = torch.minimum(torch.hypot(dx - 0.6, dy), torch.hypot(dx + 0.6, dy))
            distance = torch.where(dy <= 0, (radius - 0.6).abs(), ends)
        else:
            raise ValueError(f"unknown primitive {name!r}: choose from {PRIMITIVES}")
        # the patch spans 2 units, so half the pen's width is PEN_WIDTH units
        pixels_per_unit = (size - 1) / 2
        images.append(((PEN_WIDTH - distance) * pixels_per_unit + 0.5).clamp(0, 1))
    return torch.stack(images)


def combine(coefficients: torch.Tensor, primitives: torch.Tensor) -> torch.Tensor:
    """(*, C, k) coefficients and (k, P, P) primitives -> (*, C, P, P) patches."""
    return torch.einsum("...ck,kpq->...cpq", coefficients, primitives.to(coefficients))


class PrimitiveStamp(nn.Module):
    """A transposed convolution whose filters are the primitives, fixed: (N, C*k, h, w)
    coefficient maps -> (N, C, 2h, 2w), each channel stamped with its own k filters."""

    def __init__(self, names: tuple[str, ...], size: int, channels: int):
        super().__init__()
        if size % 2:
            raise ValueError(f"stamping at stride 2 needs an even primitive size, got {size}")
        k = len(names)
        weight = torch.zeros(channels * k, channels, size, size)
        for c in range(channels):
            weight[c * k:(c + 1) * k, c] = primitive_images(names, size)
        self.register_buffer("weight", weight, persistent=False)  # rebuilt from the config
        self.padding = (size - 2) // 2

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(maps, self.weight, stride=2, padding=self.padding)
