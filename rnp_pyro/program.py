"""Programs: the networks a node's hypernetworks generate, and running them.

A node's program has two streams with the same shapes, each an encoder of the last
step's [z; a] (two ELU layers) feeding an Elman RNN: the *state* stream's hidden
state is the next child latent z_t, the *policy* stream's is decoded into the
child's action a_t. Nodes whose children are leaves also get a patch decoder,
which turns those children's latents into pixels.

Every object here holds a flat batch of N nodes, each with its own weights, so the
nodes of a whole tree level run as one batch: a step is four batched products
(the two streams stacked as 2N networks), whatever N is. The layouts say what the
hypernetworks generate per node, in the order of their output rows.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from .spatial import ACTION_DIM


def stream_layout(z_dim: int, encoder: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """The shapes of one stream's tensors per node (the fields of :class:`Stream`)."""
    e1, e2 = encoder
    return {"enc_w1": (e1, z_dim + ACTION_DIM), "enc_b1": (e1,),
            "enc_w2": (e2, e1), "enc_b2": (e2,),
            "rnn_wh": (z_dim, z_dim), "rnn_wx": (z_dim, e2), "rnn_b": (z_dim,), "h0": (z_dim,)}


def state_layout(z_dim: int, encoder: tuple[int, int], patch_hidden: int,
                 patch_outputs: int) -> dict[str, tuple[int, ...]]:
    """What H_state generates per node: its stream, z_0, then the patch decoder.

    The patch decoder comes last, its large output matrix at the very end, so that
    levels that need less generate only a prefix.
    """
    return {**stream_layout(z_dim, encoder), "start": (z_dim,),
            "dec_w1": (patch_hidden, z_dim), "dec_b1": (patch_hidden,),
            "dec_b2": (patch_outputs,), "dec_w2": (patch_outputs, patch_hidden)}


def policy_layout(z_dim: int, encoder: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """What H_policy generates per node: its stream, the action decoder, a_0's angle."""
    return {**stream_layout(z_dim, encoder), "dec_w": (ACTION_DIM, z_dim),
            "dec_b": (ACTION_DIM,), "start": (ACTION_DIM,)}


@dataclass
class Stream:
    """One stream of N programs: [z; a] -> ELU(W1 . + b1) -> ELU(W2 . + b2) = e, then
    the Elman RNN h_t = ELU(W_h h_{t-1} + W_x e + b), from h0."""

    enc_w1: torch.Tensor  # (N, e1, |z| + 6)
    enc_b1: torch.Tensor  # (N, e1)
    enc_w2: torch.Tensor  # (N, e2, e1)
    enc_b2: torch.Tensor  # (N, e2)
    rnn_wh: torch.Tensor  # (N, |z|, |z|)
    rnn_wx: torch.Tensor  # (N, |z|, e2)
    rnn_b: torch.Tensor  # (N, |z|)
    h0: torch.Tensor  # (N, |z|)

    @classmethod
    def of(cls, tensors: dict[str, torch.Tensor]) -> "Stream":
        return cls(**{f.name: tensors[f.name] for f in dataclasses.fields(cls)})


@dataclass
class PatchDecoder:
    """Leaf patches of N nodes' children: z -> ELU(W1 z + b1) = h -> act(W2 h + b2).

    W2 (pixels x hidden per node, the largest generated tensor) is either generated,
    ``output_weight``, or applied by ``apply_output`` (h -> W2 h) without being made.
    """

    hidden_weight: torch.Tensor  # (N, hidden, |z|)
    hidden_bias: torch.Tensor  # (N, hidden)
    output_bias: torch.Tensor  # (N, pixels)
    output_weight: torch.Tensor | None = None  # (N, pixels, hidden)
    apply_output: Callable[[torch.Tensor], torch.Tensor] | None = None
    activation: str = "relu6"  # or "sigmoid"

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, T, |z|) latents -> (N, T, pixels), all T of a node in two products."""
        hidden = F.elu(linear(latents, self.hidden_weight, self.hidden_bias))
        if self.output_weight is not None:
            out = linear(hidden, self.output_weight, self.output_bias)
        else:
            out = self.apply_output(hidden) + self.output_bias.unsqueeze(1)
        return F.relu6(out) if self.activation == "relu6" else torch.sigmoid(out)


class Carry(NamedTuple):
    """What one step passes to the next: the child latent z_t (N, 1, |z|), which is the
    state stream's hidden state; the action a_t (N, 1, 6); and both streams' hidden
    states, stacked state first (2N, 1, |z|)."""

    latent: torch.Tensor
    action: torch.Tensor
    hidden: torch.Tensor


@dataclass
class Program:
    """The programs of N nodes: each emits one child (latent, action) per step."""

    state: Stream
    policy: Stream
    first_latent: torch.Tensor  # z_0 (N, |z|)
    first_angle: torch.Tensor  # (N, 6): a_0 = sin(first_angle)
    action_weight: torch.Tensor  # (N, 6, |z|): a_t = sin(W h_policy + b)
    action_bias: torch.Tensor  # (N, 6)
    patches: PatchDecoder | None = None  # for nodes whose children are leaves

    @functools.cached_property
    def _stacked(self):
        """Each layer's weights of both streams stacked (state first) and transposed once,
        not once per step: the encoder's two layers, [W_h | W_x] for the RNN, and the
        action decoder."""
        both = {name: torch.cat([getattr(self.state, name), getattr(self.policy, name)])
                for name in ("enc_w1", "enc_b1", "enc_w2", "enc_b2", "rnn_wh", "rnn_wx", "rnn_b")}
        encoder = [(both["enc_w1"].transpose(1, 2), both["enc_b1"].unsqueeze(1)),
                   (both["enc_w2"].transpose(1, 2), both["enc_b2"].unsqueeze(1))]
        recurrent = (torch.cat([both["rnn_wh"], both["rnn_wx"]], -1).transpose(1, 2),
                     both["rnn_b"].unsqueeze(1))
        action = (self.action_weight.transpose(1, 2), self.action_bias.unsqueeze(1))
        return encoder, recurrent, action

    def start(self) -> Carry:
        """z_0, a_0 and the streams' initial hidden states."""
        return Carry(self.first_latent.unsqueeze(1), torch.sin(self.first_angle).unsqueeze(1),
                     torch.cat([self.state.h0, self.policy.h0]).unsqueeze(1))

    def step(self, carry: Carry) -> Carry:
        """One step: [z_{t-1}; a_{t-1}] through both streams -> z_t and a_t."""
        encoder, (recurrent_weight, recurrent_bias), (action_weight, action_bias) = self._stacked
        hidden = torch.cat([carry.latent, carry.action], -1).repeat(2, 1, 1)  # both streams' input
        for weight, bias in encoder:
            hidden = F.elu(torch.baddbmm(bias, hidden, weight))
        h = F.elu(torch.baddbmm(recurrent_bias, torch.cat([carry.hidden, hidden], -1),
                                recurrent_weight))
        h_state, h_policy = h.chunk(2)
        return Carry(h_state, torch.sin(torch.baddbmm(action_bias, h_policy, action_weight)), h)

    def run(self, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Child latents (N, tau, |z|) and actions (N, tau, 6) of ``tau`` steps."""
        carry = self.start()
        latents, actions = [], []
        for _ in range(tau):
            carry = self.step(carry)
            latents.append(carry.latent)
            actions.append(carry.action)
        return torch.cat(latents, 1), torch.cat(actions, 1)


def generate(hyper_state, hyper_policy, z: torch.Tensor, *, patches: bool = False,
             materialize: bool = True, activation: str = "relu6",
             dtype: torch.dtype | None = None) -> Program:
    """The programs of nodes with latents z (N, |z|) from the two hypernetworks
    (:class:`rnp_pyro.hyper.HyperNetwork` with :func:`state_layout` and
    :func:`policy_layout`).

    ``patches`` adds the patch decoder (for nodes whose children are leaves); its
    output matrix is generated when ``materialize``, else applied through H_state's
    output weights in ``dtype`` (e.g. bfloat16) without being generated.
    """
    state_names = [*(field.name for field in dataclasses.fields(Stream)), "start"]
    if patches:
        state_names += ["dec_w1", "dec_b1", "dec_b2"] + (["dec_w2"] if materialize else [])
    state = hyper_state(z, state_names)
    policy = hyper_policy(z).tensors
    decoder = None
    if patches:
        generated = state.tensors
        decoder = PatchDecoder(generated["dec_w1"], generated["dec_b1"], generated["dec_b2"],
                               output_weight=generated["dec_w2"] if materialize else None,
                               activation=activation)
        if not materialize:
            decoder.apply_output = functools.partial(hyper_state.apply_linear, "dec_w2",
                                                     state.hidden, dtype=dtype)
    return Program(Stream.of(state.tensors), Stream.of(policy), state.tensors["start"],
                   policy["start"], policy["dec_w"], policy["dec_b"], decoder)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-node affine map: x (N, [T,] in), weight (N, out, in), bias (N, out)."""
    if x.dim() == 2:
        return torch.baddbmm(bias.unsqueeze(1), x.unsqueeze(1), weight.transpose(1, 2)).squeeze(1)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def patch_outputs(channels: int, patch_side: int, primitives: int = 0) -> int:
    """Outputs of a patch decoder: the pixels of a patch, or one coefficient per
    channel and fixed primitive."""
    return channels * primitives or channels * patch_side * patch_side
