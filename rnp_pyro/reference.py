"""A literal depth-first RNP decoder: Algorithm 1 of the PNAS paper.

Each call handles one node per image and recurses into each child as soon as it is
emitted, as the paper writes it. It shares the model's hypernetworks and program
steps, so it checks that the level-synchronous ``RNP.decode`` computes the same
canvases, and it is the baseline the benchmark measures ``decode`` against.
"""

from __future__ import annotations

import torch

from . import program, spatial
from .model import RNP


def depth_first_canvas(model: RNP, z: torch.Tensor) -> torch.Tensor:
    """Root canvases (B, C, H, W) of top latents z (B, |z|), depth first."""
    return _node(model, z, depth=0)


def _node(model: RNP, z: torch.Tensor, depth: int) -> torch.Tensor:
    """RNPdecoder(z, level): the canvas of one node per image, in that node's frame."""
    cfg = model.cfg
    last = depth == len(cfg.taus) - 1
    state, policy = model.programs(z, depth, leaves_next=last)
    canvas = z.new_zeros(z.shape[0], *cfg.image_shape)
    programs = program.Programs(state, policy)
    child, action, hidden = programs.first  # (B, 1, .): one step at a time
    for _ in range(cfg.taus[depth]):
        child, action, hidden = programs.step(child, action, hidden)
        if last:
            drawn = model.patches(state, child, depth)[:, 0]
        else:
            drawn = _node(model, child[:, 0], depth + 1)
        canvas = canvas + spatial.place(drawn, action[:, 0], cfg.scale_offset,
                                        cfg.rotation_range, size=cfg.image_size)
    return canvas
