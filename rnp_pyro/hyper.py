"""Hypernetworks: a node's latent z -> the named weights of that node's program.

The authors' H_state / H_policy end in one bias-free linear layer whose output is
sliced into every generated tensor. Here that layer is kept as one bias-free head
per named tensor: the same function, but a level can skip the heads it does not
need (only nodes whose children are leaves need the large patch decoder).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import RNPConfig
from .spatial import ACTION_DIM


def state_layout(cfg: RNPConfig) -> dict[str, tuple[int, ...]]:
    """What H_state generates per node: encoder, Elman RNN, z_0, patch decoder.

    The patch decoder comes last, its large output matrix at the very end, so that
    levels that need less generate only a prefix (see :meth:`HyperNetwork.forward`).
    """
    z, (e1, e2), p = cfg.z_dim, cfg.program_encoder, cfg.patch_hidden
    # pixels of a patch, or one coefficient per channel and fixed primitive
    pixels = cfg.channels * len(cfg.primitives) or math.prod(cfg.patch_shape)
    return {
        "enc_w1": (e1, z + ACTION_DIM), "enc_b1": (e1,),
        "enc_w2": (e2, e1), "enc_b2": (e2,),
        "rnn_wh": (z, z), "rnn_wx": (z, e2), "rnn_b": (z,), "h0": (z,),
        "start": (z,),  # z_0, the first input
        "dec_w1": (p, z), "dec_b1": (p,), "dec_b2": (pixels,),
        "dec_w2": (pixels, p),
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


class HyperNetwork(nn.Module):
    """LayerNorm(z) -> [Linear -> LayerNorm -> ELU] x layers -> one bias-free output.

    The output is split into the named tensors of ``layout``, as in the authors' code.
    """

    def __init__(self, z_dim: int, width: int, layers: int, layout: dict[str, tuple[int, ...]],
                 output_std: float = 0.25):
        super().__init__()
        trunk: list[nn.Module] = [nn.LayerNorm(z_dim)]
        for i in range(layers):
            trunk += [nn.Linear(z_dim if i == 0 else width, width), nn.LayerNorm(width), nn.ELU()]
        self.trunk = nn.Sequential(*trunk)
        self.layout = dict(layout)
        self.slices: dict[str, slice] = {}
        offset = 0
        for name, shape in layout.items():
            self.slices[name] = slice(offset, offset + math.prod(shape))
            offset += math.prod(shape)
        self.out = nn.Linear(width, offset, bias=False)
        nn.init.normal_(self.out.weight, std=output_std)
        # Each generated tensor is the output times a fixed gain: weights start at the
        # usual 1/sqrt(fan_in) scale and biases near zero (the trunk's output has unit
        # scale), and Adam's steps have the same size relative to every generated
        # tensor, however large its fan-in (an equalised learning rate).
        self.gains = {
            name: (1.0 / math.sqrt(shape[-1]) if len(shape) == 2 else 0.1)
            / (math.sqrt(width) * output_std)
            for name, shape in layout.items()
        }
        # the gains per output row: scaling the (rows x width) weights before the product
        # is much cheaper than scaling the (nodes x rows) tensors it generates
        row_gains = torch.cat([torch.full((math.prod(shape),), self.gains[name])
                               for name, shape in layout.items()])
        self.register_buffer("row_gains", row_gains, persistent=False)

    def forward(self, z: torch.Tensor, upto: str | None = None) -> dict[str, torch.Tensor]:
        """z (N, |z|) -> {name: (N, *shape)} for the layout's names before ``upto``.

        The trunk's output is returned too, as ``"context"``, for :meth:`apply`.
        """
        hidden = self.trunk(z)
        names = list(self.layout)
        names = names[:names.index(upto)] if upto else names
        end = self.slices[names[-1]].stop
        # one split, not a slice per name: each slice's backward would fill a gradient
        # as large as the whole output
        weight = self.out.weight
        if end < self.out.out_features:  # only the rows this level needs get their gains
            weight = weight.split([end, self.out.out_features - end])[0]
        weight = weight * self.row_gains[:end, None]
        parts = F.linear(hidden, weight).split([self.slices[n].stop - self.slices[n].start
                                                for n in names], -1)
        weights = {name: part.view(*z.shape[:-1], *self.layout[name])
                   for name, part in zip(names, parts)}
        weights["context"] = hidden
        return weights

    def apply(self, name: str, context: torch.Tensor, x: torch.Tensor,
              dtype: torch.dtype | None = None) -> torch.Tensor:
        """Generated matrix ``name`` times x, without generating the matrix.

        The generated W_n = reshape(U g_n) is linear in the trunk output g_n, so
        W_n x = U (x kron g_n): one dense product with the output weights instead of
        a large matrix per node. context (N, width), x (N, T, in) -> (N, T, out).
        ``dtype`` (e.g. bfloat16) runs that product in lower precision; it
        accumulates in float32 and returns x's dtype.
        """
        rows, cols = self.layout[name]
        pairs = (x.unsqueeze(-1) * context.unsqueeze(-2).unsqueeze(-2)).flatten(-2)
        weight = self.out.weight[self.slices[name]].view(rows, cols * context.shape[-1])
        if dtype is not None and dtype != x.dtype:
            out = (pairs.to(dtype) @ weight.to(dtype).t()).to(x.dtype)
        else:
            out = pairs @ weight.t()
        return out * self.gains[name]
