"""Hypernetworks: a node's latent z -> the named weights of that node's program.

The authors' H_state / H_policy end in one bias-free linear layer whose output is
sliced into every generated tensor. Here that layer is kept as one bias-free head
per named tensor: the same function, but a level can skip the heads it does not
need (only nodes whose children are leaves need the large patch decoder).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import RNPConfig
from .spatial import ACTION_DIM


def state_layout(cfg: RNPConfig) -> dict[str, tuple[int, ...]]:
    """What H_state generates per node: encoder, Elman RNN, patch decoder, z_0."""
    z, (e1, e2), p = cfg.z_dim, cfg.program_encoder, cfg.patch_hidden
    pixels = cfg.channels * cfg.image_size * cfg.image_size
    return {
        "enc_w1": (e1, z + ACTION_DIM), "enc_b1": (e1,),
        "enc_w2": (e2, e1), "enc_b2": (e2,),
        "rnn_wh": (z, z), "rnn_wx": (z, e2), "rnn_b": (z,), "h0": (z,),
        "dec_w1": (p, z), "dec_b1": (p,),
        "dec_w2": (pixels, p), "dec_b2": (pixels,),
        "start": (z,),  # z_0, the first input
    }


def policy_layout(cfg: RNPConfig) -> dict[str, tuple[int, ...]]:
    """What H_policy generates per node: encoder, Elman RNN, action decoder, a_0."""
    z, (e1, e2) = cfg.z_dim, cfg.program_encoder
    return {
        "enc_w1": (e1, z + ACTION_DIM), "enc_b1": (e1,),
        "enc_w2": (e2, e1), "enc_b2": (e2,),
        "rnn_wh": (z, z), "rnn_wx": (z, e2), "rnn_b": (z,), "h0": (z,),
        "dec_w": (ACTION_DIM, z), "dec_b": (ACTION_DIM,),
        "start": (ACTION_DIM,),  # a_0 = sin(start)
    }


DECODER_HEADS = ("dec_w1", "dec_b1", "dec_w2", "dec_b2")


class HyperNetwork(nn.Module):
    """LayerNorm(z) -> [Linear -> LayerNorm -> ELU] x layers -> bias-free heads."""

    def __init__(self, z_dim: int, width: int, layers: int, layout: dict[str, tuple[int, ...]]):
        super().__init__()
        trunk: list[nn.Module] = [nn.LayerNorm(z_dim)]
        for i in range(layers):
            trunk += [nn.Linear(z_dim if i == 0 else width, width), nn.LayerNorm(width), nn.ELU()]
        self.trunk = nn.Sequential(*trunk)
        self.layout = dict(layout)
        self.heads = nn.ModuleDict({
            name: nn.Linear(width, math.prod(shape), bias=False) for name, shape in layout.items()
        })
        for name, head in self.heads.items():
            shape = layout[name]
            # Generated weights start at the usual 1/sqrt(fan_in) scale, biases near zero,
            # assuming the trunk's output has unit scale (it ends in LayerNorm + ELU).
            gain = 1.0 / math.sqrt(shape[-1]) if len(shape) == 2 else 0.1
            nn.init.normal_(head.weight, std=gain / math.sqrt(width))

    def forward(self, z: torch.Tensor, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
        """z (N, |z|) -> {name: (N, *shape)}, leaving out the heads named in ``skip``."""
        hidden = self.trunk(z)
        return {
            name: head(hidden).view(*z.shape[:-1], *self.layout[name])
            for name, head in self.heads.items() if name not in skip
        }
