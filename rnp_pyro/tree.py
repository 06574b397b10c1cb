"""The parse tree that ``decode`` returns: everything figures and checks read."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Level:
    """All nodes of one latent level, in depth-first order of their parents.

    Node ``j`` of a level is child ``j % tau`` of node ``j // tau`` of the level above.
    Shapes carry any leading batch dimensions ``*B`` of the latents decoded.
    """

    latents: torch.Tensor  # (*B, n, |z|)
    actions: torch.Tensor  # (*B, n, 6) placing each node in its parent's frame (zeros at the root)
    canvases: torch.Tensor  # (*B, n, C, H, W) each node's canvas in its own frame
    #                         (leaves: their patches, resized to H x W if cfg.patch_size)
    placed: torch.Tensor  # (*B, n, C, H, W) each canvas in its parent's frame (root: its own)

    @property
    def size(self) -> int:
        return self.latents.shape[-2]


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
