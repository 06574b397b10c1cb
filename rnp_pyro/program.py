"""Running generated programs: per-node weights applied with batched products.

A program is the pair of generated networks of one node (``state`` from H_state,
``policy`` from H_policy). Every function here takes a flat batch of N nodes, each
with its own weights, so the nodes of a whole tree level run as one batch. The two
streams' encoders and Elman RNNs have the same shapes, so they run stacked as one
batch of 2N networks: a step is four batched products, whatever N is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# what H_state and H_policy both generate, with the same shapes (hyper.py's layouts)
STREAM_NAMES = ("enc_w1", "enc_b1", "enc_w2", "enc_b2", "rnn_wh", "rnn_wx", "rnn_b", "h0")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-node affine map: x (N, [T,] in), weight (N, out, in), bias (N, out)."""
    if x.dim() == 2:
        return torch.baddbmm(bias.unsqueeze(1), x.unsqueeze(1), weight.transpose(1, 2)).squeeze(1)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class Programs:
    """The programs of N nodes, ready to step: each layer's weights of both streams
    stacked (state first, then policy) and transposed once, not once per step.

    The carry between steps is (z, a, h): the last latent (N, 1, |z|), the last action
    (N, 1, 6) and both streams' hidden states (2N, 1, |z|).
    """

    def __init__(self, state: dict, policy: dict):
        both = {name: torch.cat([state[name], policy[name]]) for name in STREAM_NAMES}
        self.encoder = [(both["enc_w1"].transpose(1, 2), both["enc_b1"].unsqueeze(1)),
                        (both["enc_w2"].transpose(1, 2), both["enc_b2"].unsqueeze(1))]
        # W_h h + W_x e as one product with [W_h | W_x] on [h; e]
        self.recurrent = (torch.cat([both["rnn_wh"], both["rnn_wx"]], -1).transpose(1, 2),
                          both["rnn_b"].unsqueeze(1))
        self.action = (policy["dec_w"].transpose(1, 2), policy["dec_b"].unsqueeze(1))
        self.first = (state["start"].unsqueeze(1), torch.sin(policy["start"]).unsqueeze(1),
                      both["h0"].unsqueeze(1))

    def step(self, z: torch.Tensor, a: torch.Tensor, h: torch.Tensor):
        """One step: [z_{t-1}; a_{t-1}] -> (z_t, a_t, h); z_t is the state stream's h."""
        hidden = torch.cat([z, a], -1).repeat(2, 1, 1)  # the same input for both streams
        for weight, bias in self.encoder:
            hidden = F.elu(torch.baddbmm(bias, hidden, weight))
        weight, bias = self.recurrent
        h = F.elu(torch.baddbmm(bias, torch.cat([h, hidden], -1), weight))
        h_state, h_policy = h.chunk(2)
        return h_state, torch.sin(torch.baddbmm(self.action[1], h_policy, self.action[0])), h

    def run(self, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Child latents (N, tau, |z|) and actions (N, tau, 6) of ``tau`` steps."""
        z, a, h = self.first
        latents, actions = [], []
        for _ in range(tau):
            z, a, h = self.step(z, a, h)
            latents.append(z)
            actions.append(a)
        return torch.cat(latents, 1), torch.cat(actions, 1)


def run(state: dict, policy: dict, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run N programs for ``tau`` steps: child latents (N, tau, |z|) and actions (N, tau, 6)."""
    return Programs(state, policy).run(tau)


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
