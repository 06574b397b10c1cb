"""Programs: the networks a node's hypernetworks generate, and running them.

A node's program has two streams with the same shapes, each an encoder (one to three
ELU layers) of the last step's output and action, feeding an Elman RNN: the *state*
stream's hidden state is the next child latent z_t, the *policy* stream's is decoded
into the child's action a_t. What the encoder reads with the action is the program's
*input*: the last child latent z_{t-1} (PNAS Algorithm 1 and the authors' code), or
an image, the last decoded patch x̂_{t-1} (PNAS Fig. 5 and the workshop paper).
Nodes whose children are drawn as patches also get a patch decoder.

The generated tensors come from two hypernetworks, H_state and H_policy (PNAS), or
from one hypernetwork H whose seven heads serve both streams, which then share one
encoder (the workshop paper): see :func:`layouts`.

Every object here holds a flat batch of N nodes, each with its own weights, so the
nodes of a whole tree level run as one batch: a step is a few batched products
(the two streams stacked as 2N networks), whatever N is. The layouts say what the
hypernetworks generate per node, in the order of their output rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from .spatial import ACTION_DIM

Layout = dict[str, tuple[int, ...]]
# what a patch decoder's outputs pass through: pixels, or primitives' coefficients
ACTIVATIONS = {"relu6": F.relu6, "sigmoid": torch.sigmoid, "softplus": F.softplus}
STREAM_TENSORS = ("rnn_wh", "rnn_wx", "rnn_b", "h0")


def encoder_layout(input_dim: int, widths: tuple[int, ...], prefix: str = "") -> Layout:
    """An encoder of [input; a]: one weight and bias per layer of ``widths``."""
    layout, fan_in = {}, input_dim + ACTION_DIM
    for i, width in enumerate(widths, 1):
        layout[f"{prefix}enc_w{i}"], layout[f"{prefix}enc_b{i}"] = (width, fan_in), (width,)
        fan_in = width
    return layout


def rnn_layout(z_dim: int, widths: tuple[int, ...], prefix: str = "") -> Layout:
    """An Elman RNN of hidden size |z| fed the encoder's last layer, and its h0."""
    shapes = ((z_dim, z_dim), (z_dim, widths[-1]), (z_dim,), (z_dim,))
    return {f"{prefix}{name}": shape for name, shape in zip(STREAM_TENSORS, shapes)}


def patch_layout(z_dim: int, hidden: int, outputs: int, deep: bool = False) -> Layout:
    """The patch decoder z -> hidden [-> hidden when ``deep``] -> outputs, its large
    output matrix last, so that levels that do not draw (or do not generate it) take a
    prefix of the layout."""
    second = {"dec_wh": (hidden, hidden), "dec_bh": (hidden,)} if deep else {}
    return {"dec_w1": (hidden, z_dim), "dec_b1": (hidden,), **second, "dec_b2": (outputs,),
            "dec_w2": (outputs, hidden)}


def action_layout(z_dim: int, hidden: int, deep: bool = False) -> Layout:
    """The action decoder a_t = sin(W h_policy + b), with ``deep`` two hidden ELU
    layers of ``hidden`` units before it, and a_0's angle."""
    if not deep:
        return {"dec_w": (ACTION_DIM, z_dim), "dec_b": (ACTION_DIM,), "start": (ACTION_DIM,)}
    return {"act_w1": (hidden, z_dim), "act_b1": (hidden,), "act_w2": (hidden, hidden),
            "act_b2": (hidden,), "dec_w": (ACTION_DIM, hidden), "dec_b": (ACTION_DIM,),
            "start": (ACTION_DIM,)}


def layouts(z_dim: int, encoder: tuple[int, ...], patch_hidden: int, patch_outputs: int,
            input_dim: int | None = None, hypernetworks: int = 2,
            deep_decoders: bool = False) -> list[Layout]:
    """What the hypernetworks generate per node, one layout per hypernetwork.

    Two (PNAS): H_state makes the state stream, z_0 (or, with an image input of
    ``input_dim`` numbers, x̂_0) and the patch decoder; H_policy the policy stream and
    the action decoder. One (workshop): seven heads of one network, a shared encoder,
    the two RNNs with their h0, the patch decoder D, the action decoder T, x̂_0 (or
    z_0) and a_0. ``input_dim`` None: the program reads its child latents.
    ``deep_decoders``: D and T are three-layer MLPs (the workshop's), with hidden
    layers of ``patch_hidden`` units.
    """
    first = {"first_input": (input_dim or z_dim,)}
    patch = patch_layout(z_dim, patch_hidden, patch_outputs, deep_decoders)
    action = action_layout(z_dim, patch_hidden, deep_decoders)
    if hypernetworks == 2:
        state = {**encoder_layout(input_dim or z_dim, encoder), **rnn_layout(z_dim, encoder),
                 **first, **patch}
        policy = {**encoder_layout(input_dim or z_dim, encoder), **rnn_layout(z_dim, encoder),
                  **action}
        return [state, policy]
    return [{**encoder_layout(input_dim or z_dim, encoder),
             **rnn_layout(z_dim, encoder, "state."), **rnn_layout(z_dim, encoder, "policy."),
             **action, **first, **patch}]


@dataclass
class Stream:
    """One stream of N programs: [input; a] -> the encoder's ELU layers = e, then the
    Elman RNN h_t = ELU(W_h h_{t-1} + W_x e + b), from h0."""

    encoder: list[tuple[torch.Tensor, torch.Tensor]]  # (N, out, in) weight, (N, out) bias
    rnn_wh: torch.Tensor  # (N, |z|, |z|)
    rnn_wx: torch.Tensor  # (N, |z|, e)
    rnn_b: torch.Tensor  # (N, |z|)
    h0: torch.Tensor  # (N, |z|)

    @classmethod
    def of(cls, tensors: dict[str, torch.Tensor], prefix: str = "",
           encoder_prefix: str | None = None) -> "Stream":
        encoder_prefix = prefix if encoder_prefix is None else encoder_prefix
        layers = []
        while f"{encoder_prefix}enc_w{len(layers) + 1}" in tensors:
            i = len(layers) + 1
            layers.append((tensors[f"{encoder_prefix}enc_w{i}"],
                           tensors[f"{encoder_prefix}enc_b{i}"]))
        return cls(layers, *(tensors[prefix + name] for name in STREAM_TENSORS))


@dataclass
class PatchDecoder:
    """Patches of N nodes' children: z -> ELU(W1 z + b1) = h [-> ELU(Wh h + bh) = h]
    -> act(W2 h + b2).

    W2 (pixels x hidden per node, the largest generated tensor) is either generated,
    ``output_weight``, or applied by ``apply_output`` (h -> W2 h) without being made.
    """

    hidden: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (N, out, in), (N, out)
    output_bias: torch.Tensor  # (N, pixels)
    output_weight: torch.Tensor | None = None  # (N, pixels, hidden)
    apply_output: Callable[[torch.Tensor], torch.Tensor] | None = None
    activation: str = "relu6"  # a name from ACTIVATIONS

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, T, |z|) latents -> (N, T, pixels), all T of a node in a product per layer."""
        hidden = latents
        for weight, bias in self.hidden:
            hidden = F.elu(linear(hidden, weight, bias))
        if self.output_weight is not None:
            out = linear(hidden, self.output_weight, self.output_bias)
        else:
            out = self.apply_output(hidden) + self.output_bias.unsqueeze(1)
        return ACTIVATIONS[self.activation](out)


class Carry(NamedTuple):
    """What one step passes to the next: the input its encoder reads (N, 1, in), the
    child latent z_t or an image; the action a_t (N, 1, 6); and both streams' hidden
    states, stacked state first (2N, 1, |z|)."""

    input: torch.Tensor
    action: torch.Tensor
    hidden: torch.Tensor


class Emitted(NamedTuple):
    """What one step emits: the child latent z_t (N, 1, |z|), the state stream's
    hidden state; its action a_t (N, 1, 6); both streams' hidden states (2N, 1, |z|)."""

    latent: torch.Tensor
    action: torch.Tensor
    hidden: torch.Tensor


@dataclass
class Program:
    """The programs of N nodes: each emits one child (latent, action) per step."""

    state: Stream
    policy: Stream
    first_input: torch.Tensor  # z_0 or x̂_0 (N, in)
    first_angle: torch.Tensor  # (N, 6): a_0 = sin(first_angle)
    action_weight: torch.Tensor  # (N, 6, in): a_t = sin(W e + b), e: h_policy decoded
    action_bias: torch.Tensor  # (N, 6)
    patches: PatchDecoder | None = None  # for nodes whose children are drawn as patches
    shared_encoder: bool = False  # one encoder feeds both streams (the workshop's H)
    # the ELU layers that decode h_policy into e, each (N, out, in) and (N, out): none
    # (PNAS, e = h_policy) or two (the workshop's three-layer T)
    action_hidden: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @functools.cached_property
    def _stacked(self):
        """Each layer's weights of both streams stacked (state first) and transposed once,
        not once per step: the encoder's layers (one stream's when shared), [W_h | W_x]
        for the RNN, and the action decoder."""
        def both(*tensors):
            return torch.cat(tensors)

        if self.shared_encoder:
            encoder = [(w.transpose(1, 2), b.unsqueeze(1)) for w, b in self.state.encoder]
        else:
            encoder = [(both(ws, wp).transpose(1, 2), both(bs, bp).unsqueeze(1))
                       for (ws, bs), (wp, bp) in zip(self.state.encoder, self.policy.encoder)]
        recurrent = (torch.cat([both(self.state.rnn_wh, self.policy.rnn_wh),
                                both(self.state.rnn_wx, self.policy.rnn_wx)], -1).transpose(1, 2),
                     both(self.state.rnn_b, self.policy.rnn_b).unsqueeze(1))
        action = [(w.transpose(1, 2), b.unsqueeze(1))
                  for w, b in (*self.action_hidden, (self.action_weight, self.action_bias))]
        return encoder, recurrent, action

    def start(self) -> Carry:
        """z_0 (or x̂_0), a_0 and the streams' initial hidden states."""
        return Carry(self.first_input.unsqueeze(1), torch.sin(self.first_angle).unsqueeze(1),
                     torch.cat([self.state.h0, self.policy.h0]).unsqueeze(1))

    def step(self, carry: Carry) -> Emitted:
        """One step: [input; a_{t-1}] through both streams -> z_t and a_t."""
        encoder, (recurrent_weight, recurrent_bias), action = self._stacked
        encoded = torch.cat([carry.input, carry.action], -1)
        encoded = encoded if self.shared_encoder else encoded.repeat(2, 1, 1)
        for weight, bias in encoder:
            encoded = F.elu(torch.baddbmm(bias, encoded, weight))
        if self.shared_encoder:
            encoded = encoded.repeat(2, 1, 1)
        h = F.elu(torch.baddbmm(recurrent_bias, torch.cat([carry.hidden, encoded], -1),
                                recurrent_weight))
        h_state, decoded = h.unflatten(0, (2, -1)).unbind(0)
        for weight, bias in action[:-1]:
            decoded = F.elu(torch.baddbmm(bias, decoded, weight))
        weight, bias = action[-1]
        return Emitted(h_state, torch.sin(torch.baddbmm(bias, decoded, weight)), h)

    def run(self, tau: int, to_input: Callable | None = None,
            feed: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Child latents (N, tau, |z|) and actions (N, tau, 6) of ``tau`` steps.

        ``feed(t, z_t, a_t)`` replaces each emitted latent (a sample of the child, say)
        before the next step reads it; ``to_input(z_t)`` makes the next step's input
        of it (a decoded patch, say). Without them the next step reads z_t itself.
        """
        carry = self.start()
        latents, actions = [], []
        for t in range(tau):
            latent, action, hidden = self.step(carry)
            if feed is not None:
                latent = feed(t, latent, action)
            carry = Carry(latent if to_input is None else to_input(latent), action, hidden)
            latents.append(latent)
            actions.append(action)
        return torch.cat(latents, 1), torch.cat(actions, 1)


def generate(hypernetworks, z: torch.Tensor, *, patches: bool = False,
             materialize: bool = True, activation: str = "relu6",
             dtype: torch.dtype | None = None) -> Program:
    """The programs of nodes with latents z (N, |z|) from their hypernetworks
    (:class:`rnp_pyro.hyper.HyperNetwork` with the :func:`layouts`: H_state and
    H_policy, or the one H).

    ``patches`` adds the patch decoder; its output matrix is generated when
    ``materialize``, else applied through the output weights in ``dtype`` (e.g.
    bfloat16) without being generated.
    """
    drawer = hypernetworks[0]  # the one that makes the patch decoder
    names = list(drawer.layout)
    if not patches:
        names = names[:names.index("dec_w1")]
    elif not materialize:
        names = names[:-1]  # all but the output matrix dec_w2, the layout's last
    made = drawer(z, names)
    tensors = dict(made.tensors)
    if len(hypernetworks) == 2:
        policy = hypernetworks[1](z).tensors
        state_stream, policy_stream = Stream.of(tensors), Stream.of(policy)
    else:
        policy = tensors
        state_stream, policy_stream = (Stream.of(tensors, "state.", ""),
                                       Stream.of(tensors, "policy.", ""))
    decoder = None
    if patches:
        decoder = PatchDecoder(_layers(tensors, ("dec_w1", "dec_b1"), ("dec_wh", "dec_bh")),
                               tensors["dec_b2"],
                               output_weight=tensors["dec_w2"] if materialize else None,
                               activation=activation)
        if not materialize:
            decoder.apply_output = functools.partial(drawer.apply_linear, "dec_w2", made.hidden,
                                                     dtype=dtype)
    return Program(state_stream, policy_stream, tensors["first_input"], policy["start"],
                   policy["dec_w"], policy["dec_b"], decoder,
                   shared_encoder=len(hypernetworks) == 1,
                   action_hidden=_layers(policy, ("act_w1", "act_b1"), ("act_w2", "act_b2")))


def _layers(tensors: dict, *names: tuple[str, str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (weight, bias) pairs of ``names`` that were generated, in order."""
    return [(tensors[w], tensors[b]) for w, b in names if w in tensors]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-node affine map: x (N, [T,] in), weight (N, out, in), bias (N, out)."""
    if x.dim() == 2:
        return torch.baddbmm(bias.unsqueeze(1), x.unsqueeze(1), weight.transpose(1, 2)).squeeze(1)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def patch_outputs(channels: int, patch_side: int, primitives: int = 0) -> int:
    """Outputs of a patch decoder: the pixels of a patch, or one coefficient per
    channel and fixed primitive."""
    return channels * primitives or channels * patch_side * patch_side
