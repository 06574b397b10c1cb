"""The parse tree that ``decode`` returns: everything figures and checks read."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Level:
    """All nodes of one latent level, in depth-first order of their parents.

    Node ``j`` of a level is child ``j % tau`` of node ``j // tau`` of the level above.
    Shapes carry any leading batch dimensions ``*B`` of the latents decoded.
    """

    latents: torch.Tensor  # (*B, n, |z|)
    actions: torch.Tensor  # (*B, n, 6) placing each node in its parent's frame (zeros at the root)
    drawn: torch.Tensor  # (*B, n, C, h, w) each node's canvas in its own frame, at its own
    #                      resolution: H x W, or the leaves' patch size (cfg.patch_size)
    placed: torch.Tensor  # (*B, n, C, H, W) each canvas in its parent's frame (root: its own)

    @property
    def size(self) -> int:
        return self.latents.shape[-2]

    @property
    def canvases(self) -> torch.Tensor:
        """(*B, n, C, H, W): each node's canvas in its own frame, at the image's size.

        Leaf patches of another size are resized when asked for (figures, the part
        loss), not on every decode.
        """
        size = self.placed.shape[-2:]
        if self.drawn.shape[-2:] == size:
            return self.drawn
        return F.interpolate(self.drawn.flatten(0, -4), size=tuple(size), mode="bilinear",
                             align_corners=True).unflatten(0, self.drawn.shape[:-3])


@dataclass
class Tree:
    levels: list[Level]  # top (z^K) first, leaves (z^0) last
    taus: tuple[int, ...]

    @property
    def canvas(self) -> torch.Tensor:
        """(*B, C, H, W): the mean image, the root's canvas."""
        return self.levels[0].canvases[..., 0, :, :, :]

    @property
    def leaves(self) -> Level:
        return self.levels[-1]

    def children_placed(self, level: int) -> torch.Tensor:
        """(*B, n_level, tau, C, H, W): each node's children drawn in that node's frame."""
        placed = self.levels[level + 1].placed
        tau = self.taus[level]
        return placed.reshape(*placed.shape[:-4], -1, tau, *placed.shape[-3:])
