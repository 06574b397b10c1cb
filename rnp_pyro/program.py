"""Running generated programs: per-node weights applied with batched products.

A program is the pair of generated networks of one node (``state`` from H_state,
``policy`` from H_policy). Every function here takes a flat batch of N nodes, each
with its own weights, so the nodes of a whole tree level run as one batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-node affine map: x (N, [T,] in), weight (N, out, in), bias (N, out)."""
    if x.dim() == 2:
        return torch.baddbmm(bias.unsqueeze(1), x.unsqueeze(1), weight.transpose(1, 2)).squeeze(1)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _encode(net: dict, za: torch.Tensor) -> torch.Tensor:
    hidden = F.elu(linear(za, net["enc_w1"], net["enc_b1"]))
    return F.elu(linear(hidden, net["enc_w2"], net["enc_b2"]))


def _recur(net: dict, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Elman step h' = elu(W_h h + W_x e + b)."""
    pre = linear(h, net["rnn_wh"], net["rnn_b"]) + torch.bmm(net["rnn_wx"], e.unsqueeze(-1)).squeeze(-1)
    return F.elu(pre)


def initial_state(state: dict, policy: dict):
    """(z_0, a_0, h_state, h_policy) of each node's program."""
    return state["start"], torch.sin(policy["start"]), state["h0"], policy["h0"]


def step(state: dict, policy: dict, z, a, h_state, h_policy):
    """One program step: [z_{t-1}; a_{t-1}] -> (z_t, a_t, h_state, h_policy)."""
    za = torch.cat([z, a], -1)
    h_state = _recur(state, h_state, _encode(state, za))
    h_policy = _recur(policy, h_policy, _encode(policy, za))
    action = torch.sin(linear(h_policy, policy["dec_w"], policy["dec_b"]))
    return h_state, action, h_state, h_policy


def run(state: dict, policy: dict, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run N programs for ``tau`` steps: child latents (N, tau, |z|) and actions (N, tau, 6)."""
    z, a, h_state, h_policy = initial_state(state, policy)
    latents, actions = [], []
    for _ in range(tau):
        z, a, h_state, h_policy = step(state, policy, z, a, h_state, h_policy)
        latents.append(z)
        actions.append(a)
    return torch.stack(latents, 1), torch.stack(actions, 1)


def decode_patches(state: dict, latents: torch.Tensor, activation: str,
                   hyper=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Leaf patches (N, T, pixels) of T latents per node (N, T, |z|), all in two products.

    Without a generated ``dec_w2`` in ``state``, the output layer is applied through
    ``hyper.apply`` (the hypernetwork that made ``state``), never materialised,
    in ``dtype`` if given.
    """
    hidden = F.elu(linear(latents, state["dec_w1"], state["dec_b1"]))
    if "dec_w2" in state:
        out = linear(hidden, state["dec_w2"], state["dec_b2"])
    else:
        out = hyper.apply("dec_w2", state["context"], hidden, dtype) + state["dec_b2"].unsqueeze(1)
    return F.relu6(out) if activation == "relu6" else torch.sigmoid(out)
