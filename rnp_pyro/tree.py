"""The parse tree that ``decode`` returns: everything figures and checks read."""

from __future__ import annotations

import dataclasses
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
    drawn: torch.Tensor | None = None  # (*B, n, C, h, w) each node's canvas in its own frame,
    #                      at its own resolution: H x W, or the leaves' patch size (patch_size)
    placed: torch.Tensor | None = None  # (*B, n, C, H, W) each canvas in its parent's frame
    #                      (root: its own)
    decoded: torch.Tensor | None = None  # (*B, n, C, P, P) each node's own patch, decoded
    #                      by its parent's program: the leaves' drawn, parts' with decode_parts

    @property
    def size(self) -> int:
        return self.latents.shape[-2]

    @property
    def canvases(self) -> torch.Tensor:
        """(*B, n, C, H, W): each node's canvas in its own frame, at the image's size.

        Leaf patches of another size are resized when asked for (figures, the part
        loss), not on every decode.
        """
        return _resized(self.drawn, self.placed.shape[-2:])

    @property
    def decoded_canvases(self) -> torch.Tensor:
        """(*B, n, C, H, W): each node's own decoded patch at the image's size."""
        if self.decoded is None:
            raise ValueError("this level's patches were not decoded: decode parts with "
                             "decode_parts=True")
        return _resized(self.decoded, self.placed.shape[-2:])

    def reshape(self, *lead: int) -> "Level":
        """The same nodes with the batch dimensions before (n, ...) made ``lead`` (the
        node dimension may be -1)."""
        def shaped(tensor, event):
            return None if tensor is None else tensor.reshape(*lead, *tensor.shape[-event:])

        return Level(shaped(self.latents, 1), shaped(self.actions, 1), shaped(self.drawn, 3),
                     shaped(self.placed, 3), shaped(self.decoded, 3))

    @classmethod
    def concat(cls, levels, dim: int = 1) -> "Level":
        """Levels of (N, n_i, ...) nodes joined node-wise (``dim=1``), in order, or
        levels of (N_i, n, ...) joined tree-wise (``dim=0``)."""
        def joined(tensors):
            return None if tensors[0] is None else torch.cat(tensors, dim)

        return cls(*(joined([getattr(level, f.name) for level in levels])
                     for f in dataclasses.fields(cls)))


def _resized(images: torch.Tensor, size) -> torch.Tensor:
    if images.shape[-2:] == size:
        return images
    return F.interpolate(images.flatten(0, -4), size=tuple(size), mode="bilinear",
                         align_corners=True).unflatten(0, images.shape[:-3])


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
