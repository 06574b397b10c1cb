"""The RNP generative model as a Pyro program.

``RNP(cfg)(x)`` is the Pyro model: z^K ~ N(0, I) per image, the tree of programs it
generates, and the observation ``x`` given the root canvas. The tree is grown
level-synchronously: all nodes of a level run as one batch with their own generated
weights, so the sequential work is sum(taus) steps, not their product. Depth d of
the tree (0 = root) holds latent level K - d; program depth d runs ``taus[d]`` steps.
"""

from __future__ import annotations

import functools

import torch
import pyro
import pyro.distributions as dist
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from . import program, spatial
from .config import RNPConfig, site_name, top_site
from .hyper import HyperNetwork, policy_layout, state_layout
from .likelihood import Likelihood
from .plates import data_plate
from .primitives import combine, primitive_images
from .tree import Level, Tree


class RNP(PyroModule):
    """Recursive Neural Program: hypernetworks H_state and H_policy, shared by all levels."""

    def __init__(self, cfg: RNPConfig):
        super().__init__()
        if cfg.model != "rnp":
            raise ValueError(f"RNP needs cfg.model == 'rnp', got {cfg.model!r}")
        self.cfg = cfg
        copies = 1 if cfg.shared_hypernetworks else len(cfg.taus)
        self.hyper_state = nn.ModuleList(
            HyperNetwork(cfg.z_dim, cfg.hyper_width, cfg.hyper_state_layers, state_layout(cfg),
                         cfg.hyper_output_std)
            for _ in range(copies))
        self.hyper_policy = nn.ModuleList(
            HyperNetwork(cfg.z_dim, cfg.hyper_width, cfg.hyper_policy_layers, policy_layout(cfg),
                         cfg.hyper_output_std)
            for _ in range(copies))
        self.likelihood = Likelihood(cfg)
        if cfg.primitives:
            self.register_buffer("primitive_images", primitive_images(
                cfg.primitives, cfg.patch_shape[-1]), persistent=False)  # from the config

    # ------------------------------------------------------------------ networks
    def programs(self, z: torch.Tensor, depth: int, leaves_next: bool = True):
        """Generated (state, policy) weights of nodes at ``depth`` with latents z (N, |z|)."""
        i = 0 if self.cfg.shared_hypernetworks else depth
        if not leaves_next:
            upto = "dec_w1"  # no patch decoder
        else:
            upto = None if self.cfg.materialize_weights else "dec_w2"
        return self.hyper_state[i](z, upto=upto), self.hyper_policy[i](z)

    def patches(self, state: dict, latents: torch.Tensor, depth: int) -> torch.Tensor:
        """Leaf patches (N, T, C, P, P) of latents (N, T, |z|) from the programs at ``depth``."""
        hyper = self.hyper_state[0 if self.cfg.shared_hypernetworks else depth]
        dtype = torch.bfloat16 if self.cfg.bf16_decoder else None
        pixels = program.decode_patches(state, latents, self.cfg.patch_activation, hyper, dtype)
        if self.cfg.primitives:  # coefficients of the fixed primitives, per channel
            return combine(pixels.unflatten(-1, (self.cfg.channels, -1)), self.primitive_images)
        return pixels.reshape(*latents.shape[:2], *self.cfg.patch_shape)

    def grow(self, z: torch.Tensor, stochastic: bool | None = None, patches: bool = True,
             start: int = 0):
        """Run the programs top-down from z^K (*B, |z|), or from latents of tree depth
        ``start`` (see ``decode``).

        Returns per depth the latents (N, n, |z|) and actions (N, n, 6) with the
        batch flattened to N, and the leaf patches (N, n_leaves, C, P, P), or None
        without ``patches``. Under ``stochastic`` each level below the top is sampled
        (site ``z{k}``) around the latents its parents' programs emit.
        """
        cfg = self.cfg
        if not 0 <= start < len(cfg.taus):
            raise ValueError(f"depth must be 0 (the top) to {len(cfg.taus) - 1} (the last "
                             f"level with programs) for taus {cfg.taus}; got {start}")
        stochastic = cfg.stochastic_levels if stochastic is None else stochastic
        lead = z.shape[:-1]
        flat = z.reshape(-1, 1, cfg.z_dim)
        n_batch = flat.shape[0]
        latents = [flat]
        actions = [flat.new_zeros(n_batch, 1, spatial.ACTION_DIM)]
        leaf_patches = None
        for depth, tau in enumerate(cfg.taus[start:], start=start):
            parents = latents[-1].reshape(-1, cfg.z_dim)
            last = depth == len(cfg.taus) - 1
            state, policy = self.programs(parents, depth, leaves_next=last and patches)
            children, moves = _program_runner(cfg.compile_programs)(state, policy, tau)
            if stochastic:
                children = self._sample_level(children, lead, depth + 1)
            if last and patches:
                leaf_patches = self.patches(state, children, depth).reshape(
                    n_batch, -1, *cfg.patch_shape)
            latents.append(children.reshape(n_batch, -1, cfg.z_dim))
            actions.append(moves.reshape(n_batch, -1, spatial.ACTION_DIM))
        return latents, actions, leaf_patches

    def _sample_level(self, means: torch.Tensor, lead: torch.Size, depth: int) -> torch.Tensor:
        """Sample one whole tree level, site z{K - depth}, event (nodes, |z|)."""
        shaped = means.reshape(*lead, -1, self.cfg.z_dim)
        node = dist.Normal(shaped, self.cfg.level_scale).to_event(2)
        sample = pyro.sample(site_name(len(self.cfg.taus) - depth), node)
        return sample.reshape(means.shape)

    def render(self, latents, actions, patches, lead: torch.Size, start: int = 0) -> Tree:
        """Place and sum canvases bottom-up; the leaves' canvases are their patches.

        Leaves are placed from their patches, whatever the patch size; the tree keeps
        the patches as the leaves' own canvases (``Level.drawn``). ``latents`` begin
        at tree depth ``start``.
        """
        cfg = self.cfg
        taus = cfg.taus[start:]
        canvases = [None] * len(latents)
        placed = [None] * len(latents)
        leaf = len(latents) - 1
        placed[leaf] = spatial.place(patches, actions[leaf], cfg.scale_offset,
                                     cfg.rotation_range, size=cfg.image_size)
        canvases[leaf] = patches
        for depth in range(leaf - 1, -1, -1):
            children = placed[depth + 1]
            canvases[depth] = children.reshape(
                children.shape[0], -1, taus[depth], *cfg.image_shape).sum(2)
            placed[depth] = canvases[depth] if depth == 0 else spatial.place(
                canvases[depth], actions[depth], cfg.scale_offset, cfg.rotation_range)

        def shaped(t):
            return t.reshape(*lead, *t.shape[1:])

        levels = [Level(shaped(z), shaped(a), shaped(c), shaped(p))
                  for z, a, c, p in zip(latents, actions, canvases, placed)]
        return Tree(levels, taus)

    # ------------------------------------------------------------------ public
    def decode(self, z: torch.Tensor, stochastic: bool | None = None, depth: int = 0) -> Tree:
        """The parse tree of top latents z (*B, |z|).

        With stochastic per-level latents the lower levels are sampled unless
        ``stochastic=False``, which decodes their means. ``depth`` > 0 decodes z as
        latents of that tree depth (depth 1: the parts), each the root of its own
        subtree drawn in its own frame: a part's program is a program too.
        """
        latents, actions, patches = self.grow(z, stochastic, start=depth)
        return self.render(latents, actions, patches, z.shape[:-1], start=depth)

    def subtree_state(self, depth: int) -> dict:
        """The weights of the tree below depth ``depth``, as a state dict for an RNP with
        ``taus[depth:]``: that model's ``decode(z)`` is this one's ``decode(z, depth=depth)``.

        Shared hypernetworks serve every depth, so they carry over whole; per-level
        ones from ``depth`` down are renumbered from 0.
        """
        if self.cfg.shared_hypernetworks:
            return self.state_dict()
        state = {}
        for key, value in self.state_dict().items():
            stream, index, rest = (key.split(".", 2) + ["", ""])[:3]
            if stream in ("hyper_state", "hyper_policy"):
                if int(index) < depth:
                    continue
                key = f"{stream}.{int(index) - depth}.{rest}"
            state[key] = value
        return state

    def sample_lower_levels(self, z: torch.Tensor) -> None:
        """Sample the per-level sites given z^K from the model's own conditional prior.

        Guides that only infer z^K call this to complete the latent set.
        """
        self.grow(z, stochastic=True, patches=False)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None,
                dataset_size: int | None = None) -> torch.Tensor:
        """The Pyro model of a batch of images x (B, C, H, W); returns the root canvas.

        ``indices`` and ``dataset_size`` subsample the ``data`` plate (see
        :func:`rnp_pyro.plates.data_plate`), for guides with parameters per image.
        """
        cfg = self.cfg
        prior = dist.Normal(x.new_zeros(cfg.z_dim), x.new_ones(cfg.z_dim)).to_event(1)
        with data_plate(x, indices, dataset_size):
            with poutine.scale(scale=cfg.kl_weight):
                z = pyro.sample(top_site(cfg), prior)
                tree = self.decode(z)
            self.likelihood.observe(tree.canvas, x)
            if cfg.part_loss_weight > 0:
                pyro.factor("parts", -cfg.part_loss_weight * part_loss(tree, x, cfg))
        return tree.canvas

    def sample(self, n: int, device: torch.device | str | None = None) -> Tree:
        """Parse trees of n images drawn from the prior z^K ~ N(0, I)."""
        device = device or next(self.parameters()).device
        return self.decode(torch.randn(n, self.cfg.z_dim, device=device))


def _program_runner(compiled: bool):
    """``program.run``, or its torch.compile'd form (compiled once per process)."""
    return _compiled_program_run() if compiled else program.run


@functools.cache
def _compiled_program_run():
    return torch.compile(program.run, dynamic=True)


def part_loss(tree: Tree, x: torch.Tensor, cfg: RNPConfig) -> torch.Tensor:
    """The papers' eq. 2: each top-level part's composite against the crop of x it covers.

    (1 / tau) * sum_t || canvas of part t - crop(x, a_t) ||^2, per image (*B,).
    The crop is a target, so it carries no gradient.
    """
    parts = tree.levels[1]
    target = x.unsqueeze(-4).expand(*parts.canvases.shape)
    with torch.no_grad():
        crops = spatial.crop(target, parts.actions, cfg.scale_offset, cfg.rotation_range)
    return (parts.canvases - crops).pow(2).sum((-1, -2, -3)).mean(-1)
