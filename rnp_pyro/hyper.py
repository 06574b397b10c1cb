"""Hypernetworks: a node's latent z -> the named tensors of that node's networks.

The authors' H_state / H_policy end in one bias-free linear layer whose output is
cut into every generated tensor. Here that layer is kept whole, and the tensors are
named by a layout (name -> shape, in output order) that the caller gives: a level
generates only a prefix of the layout when it needs less (see
:func:`rnp_pyro.program.generate`, which owns the programs' layouts).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Generated(NamedTuple):
    """What a hypernetwork made for N nodes: its trunk's output (N, width), from which
    any of its tensors can be applied without generating it (:meth:`HyperNetwork.apply_linear`),
    and the tensors it generated, {name: (N, *shape)}."""

    hidden: torch.Tensor
    tensors: dict[str, torch.Tensor]


class HyperNetwork(nn.Module):
    """LayerNorm(z) -> [Linear -> LayerNorm -> ELU] x layers -> one bias-free output,
    cut into the named tensors of ``layout``, as in the authors' code."""

    def __init__(self, z_dim: int, width: int, layers: int, layout: dict[str, tuple[int, ...]],
                 output_std: float = 0.25):
        super().__init__()
        trunk: list[nn.Module] = [nn.LayerNorm(z_dim)]
        for i in range(layers):
            trunk += [nn.Linear(z_dim if i == 0 else width, width), nn.LayerNorm(width), nn.ELU()]
        self.trunk = nn.Sequential(*trunk)
        self.layout = dict(layout)
        self.sizes = {name: math.prod(shape) for name, shape in layout.items()}
        self.starts = dict(zip(layout, [0, *itertools.accumulate(self.sizes.values())]))
        self.out = nn.Linear(width, sum(self.sizes.values()), bias=False)
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
        row_gains = torch.cat([torch.full((self.sizes[name],), self.gains[name])
                               for name in layout])
        self.register_buffer("row_gains", row_gains, persistent=False)

    def forward(self, z: torch.Tensor, names: Sequence[str] | None = None) -> Generated:
        """z (N, |z|) -> the trunk's output and the tensors ``names`` (default: all),
        which must be the first names of the layout, in its order."""
        everything = list(self.layout)
        names = everything if names is None else list(names)
        if names != everything[:len(names)] or not names:
            raise ValueError(f"a hypernetwork generates a prefix of its layout {everything}; "
                             f"got {names}")
        hidden = self.trunk(z)
        end = self.starts[names[-1]] + self.sizes[names[-1]]
        # one split, not a slice per name: each slice's backward would fill a gradient
        # as large as the whole output
        weight = self.out.weight
        if end < self.out.out_features:  # only the rows this level needs get their gains
            weight = weight.split([end, self.out.out_features - end])[0]
        weight = weight * self.row_gains[:end, None]
        parts = F.linear(hidden, weight).split([self.sizes[name] for name in names], -1)
        tensors = {name: part.view(*z.shape[:-1], *self.layout[name])
                   for name, part in zip(names, parts)}
        return Generated(hidden, tensors)

    def apply_linear(self, name: str, hidden: torch.Tensor, x: torch.Tensor,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
        """The generated matrix ``name`` times x, without generating the matrix.

        The generated W_n = reshape(U g_n) is linear in the trunk output g_n, so
        W_n x = U (x kron g_n): one dense product with the output weights instead of
        a large matrix per node. hidden (N, width), x (N, T, in) -> (N, T, out).
        ``dtype`` (e.g. bfloat16) runs that product in lower precision; it
        accumulates in float32 and returns x's dtype.
        """
        rows, cols = self.layout[name]
        pairs = (x.unsqueeze(-1) * hidden.unsqueeze(-2).unsqueeze(-2)).flatten(-2)
        start = self.starts[name]
        weight = self.out.weight[start:start + self.sizes[name]].view(rows, cols * hidden.shape[-1])
        if dtype is not None and dtype != x.dtype:
            out = (pairs.to(dtype) @ weight.to(dtype).t()).to(x.dtype)
        else:
            out = pairs @ weight.t()
        return out * self.gains[name]

