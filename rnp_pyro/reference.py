"""A literal depth-first RNP decoder: Algorithm 1 of the PNAS paper.

Each call handles one node per image and recurses into each child as soon as it is
emitted, as the paper writes it, whatever a step reads (the model's ``program_input``
and ``parent_input``). It shares the model's hypernetworks and program
steps, so it checks that the level-synchronous ``RNP.decode`` computes the same
canvases, and it is the baseline the benchmark measures ``decode`` against.
"""

from __future__ import annotations

import torch

from . import spatial
from .model import RNP
from .program import Carry
from .variants import image_input


def depth_first_canvas(model: RNP, z: torch.Tensor) -> torch.Tensor:
    """Root canvases (B, C, H, W) of top latents z (B, |z|), depth first."""
    return _node(model, z, depth=0)


def _node(model: RNP, z: torch.Tensor, depth: int) -> torch.Tensor:
    """RNPdecoder(z, level): the canvas of one node per image, in that node's frame."""
    config = model.config
    last = depth == len(config.taus) - 1
    patch_input = config.program_input == "patch"
    programs = model.program(z, depth)
    canvas = z.new_zeros(z.shape[0], *config.image_shape)
    carry = programs.start()  # (B, 1, .): one step at a time
    for _ in range(config.taus[depth]):
        latent, action, hidden = programs.step(carry)
        if last:
            drawn = model.patches(programs, latent)[:, 0]
        else:
            drawn = _node(model, latent[:, 0], depth + 1)
        if not patch_input:  # the next step reads z_t ...
            next_input = latent
        elif config.parent_input == "child_output":  # ... the child's own drawing ...
            next_input = image_input(drawn, config.patch_shape[-1])
        else:  # ... or the child's patch as this program decodes it
            next_input = model.patches(programs, latent).flatten(2)
        carry = Carry(next_input, action, hidden)
        canvas = canvas + spatial.place(drawn, action[:, 0], config.scale_offset,
                                        config.rotation_range, size=config.image_size)
    return canvas
