"""The RNP generative model as a Pyro program, and the settings that say what it is.

``RNP(config)(x)`` is the Pyro model: z^K ~ N(0, I) per image, the tree of programs
it generates, and the observation ``x`` given the root canvas. The tree is grown
top-down, one level of nodes at a time (:meth:`RNP.grow`: all nodes of a level run
their programs as one batch with their own generated weights, so the sequential work
is sum(taus) steps, not their product), and drawn bottom-up (:meth:`RNP.draw`). What
varies between the papers' variants is chosen once, as the parts the model is built
from (:mod:`rnp_pyro.variants`). Depth d of the tree (0 = root) holds latent level
K - d; program depth d runs ``taus[d]`` steps.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from . import program, spatial
from .errors import ConfigError, check_fields
from .hyper import HyperNetwork
from .likelihood import LIKELIHOODS, Likelihood
from .plates import check_batch_shape, data_plate
from .primitives import PRIMITIVES
from .tree import Level, Tree
from .variants import (READERS, EmittedLatents, FreePatches, KeptGrowth, PriorLatents,
                       PrimitivePatches, ProgramLevel, Registered, site_name)

MODELS = ("rnp", "convvae")
PROGRAM_INPUTS = ("latent", "patch")
PARENT_INPUTS = ("own_output", "child_output")
PART_LOSSES = ("composite", "patch", "patch_vs_composite")
PATCH_ACTIVATIONS = tuple(program.ACTIVATIONS)


@dataclass(frozen=True)
class ModelConfig:
    """What a generative model is: its image shape, tree, generated networks and likelihood.

    Names follow the papers: ``levels`` levels of latents (``K = levels - 1`` at the
    top, 0 at the leaves) and ``levels - 1`` levels of programs; ``taus[i]`` is the
    number of steps the programs of the i-th program level (top first) run.
    """

    kind: str = "rnp"  # "rnp" or the "convvae" baseline
    channels: int = 1
    image_size: int = 28

    # --- the tree ---
    z_dim: int = 16
    taus: tuple[int, ...] = (4, 4)  # steps per program level, top first
    scale_offset: float = 2.0  # child scale in [offset, offset + 2]: children are smaller
    rotation_range: float = math.pi  # rotation angle = rotation_range * a_rot
    shared_hypernetworks: bool = True  # one H_state/H_policy for every level (papers)
    stochastic_levels: bool = False  # a sample site per level below the top
    level_scale: float = 0.1  # scale of p(z^{k-1} | program) when stochastic

    # --- networks generated per node ---
    hyper_width: int = 64
    hyper_state_layers: int = 4  # hidden layers of H_state, or of the one H
    hyper_policy_layers: int = 3  # hidden layers of H_policy (one fewer, as in the code)
    # Initial std of the hypernetworks' output weights; fixed gains divide it back out,
    # so each generated tensor changes by about lr / hyper_output_std of its size per
    # Adam step whatever its fan-in (docs/architecture.md, benchmarks/RESULTS.md).
    hyper_output_std: float = 0.25
    # One hypernetwork H whose heads make both streams, which share one encoder (the
    # workshop paper), or two, H_state and H_policy (PNAS and the authors' code).
    hypernetworks: int = 2
    program_encoder: tuple[int, ...] = (64, 32)  # [input; a] -> 64 -> 32: one to three widths
    # What each program step reads with the last action: the last child latent z_{t-1}
    # ("latent": PNAS Algorithm 1 and the authors' code) or the last decoded patch
    # x̂_{t-1} ("patch": PNAS Fig. 5 and the workshop paper).
    program_input: str = "latent"
    # With patch input, what a parent reads of its last child: the child's patch decoded
    # by the parent ("own_output"), or the canvas the child's own program drew
    # ("child_output", the workshop's Fig. 2b), which makes the tree depth-first.
    parent_input: str = "own_output"
    patch_hidden: int = 64  # z -> 64 -> C*P*P
    # The workshop's decoders: the patch decoder D and the action decoder T each a
    # three-layer MLP (two hidden ELU layers of patch_hidden units), instead of PNAS's
    # z -> 64 -> patch and a_t = sin(W h_policy + b)
    three_layer_decoders: bool = False
    # Side P of the leaf patches in pixels (None: the image size, as in the papers). A
    # leaf is drawn at 1/(s_1 s_2 ...) of the frame, so a full-size patch is mostly
    # skipped by bilinear placement; a smaller patch is used whole.
    patch_size: int | None = None
    # What a patch decoder's outputs pass through: "relu6" (authors' code), "sigmoid" or
    # "softplus"; with primitives, their coefficients (the conv VAE's too), where relu6
    # can switch a leaf off for good: a coefficient at 0 gets no gradient
    patch_activation: str = "relu6"
    # Fixed strokes the leaves may only combine, names from primitives.PRIMITIVES (the
    # papers' Fig. 4A); the conv VAE then stamps them as its last layer. () = free.
    primitives: tuple[str, ...] = ()

    # --- likelihood and loss ---
    likelihood: str = "normal"
    # Normal/Laplace scale; None learns it. sqrt(0.1 / 2) makes -ELBO proportional to
    # the papers' loss: sum of squared errors + 0.1 * KL.
    obs_scale: float | None = math.sqrt(0.05)
    kl_weight: float = 1.0  # weight of the latent sites' log-density ratio (annealing)
    # Decode every node's latent into a patch with its parent's decoder, parts too, not
    # only leaves (PNAS: "for 0 <= k < 2, an image patch decoder generated by H_state
    # decodes z^k"); the parse tree then holds each part's own patch.
    decode_parts: bool = False
    # The papers' eq. 2 with the weight lambda of the authors' loss, squared error +
    # beta * KL + lambda * eq. 2 (the workshop's eq. 1 has lambda = 1): each top-level
    # part against a target, in one of the authors' three forms (see part_loss).
    # Training may ramp lambda up (part_loss_ramp). Needs the normal likelihood with a
    # fixed scale, which sets beta = 2 * obs_scale^2 (see nats_per_squared_error).
    part_loss_lambda: float = 0.0
    part_loss: str = "composite"
    # The authors' regulariser lambda * (||theta_Hstate|| + ||theta_Hpolicy||), the
    # Euclidean norm (not squared) of each hypernetwork's parameters, lambda in the
    # same units as part_loss_lambda (their scripts: 1e-6 to 1e-4); 0: none
    hyper_norm_lambda: float = 0.0

    def __post_init__(self):
        check_fields(self)
        self.validate()

    @property
    def levels(self) -> int:
        """Number of latent levels (z^K ... z^0)."""
        return len(self.taus) + 1

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def patch_shape(self) -> tuple[int, int, int]:
        side = self.patch_size or self.image_size
        return (self.channels, side, side)

    @property
    def nodes_per_level(self) -> tuple[int, ...]:
        """Nodes per latent level, top first: (1, tau_K, tau_K * tau_{K-1}, ...)."""
        return tuple(math.prod(self.taus[:depth]) for depth in range(self.levels))

    @property
    def top_site(self) -> str:
        """Name of the top latent site z^K, the one every guide must provide."""
        return site_name(self.levels - 1)

    @property
    def latent_sites(self) -> tuple[str, ...]:
        """Names of the latent sample sites, top first: z^K, then, when
        ``stochastic_levels`` is on, each lower level's, one site per program step."""
        return tuple(site for sites in self.sites_by_level.values() for site in sites)

    @property
    def sites_by_level(self) -> dict[int, tuple[str, ...]]:
        """The latent sites of each level, top first: {K: (z^K,), K - 1: (its sites, one
        per step of the programs above it), ...}; the top level alone for a
        deterministic tree."""
        top = self.levels - 1
        lower = {top - 1 - depth: tuple(site_name(top - 1 - depth, step)
                                        for step in range(1, tau + 1))
                 for depth, tau in enumerate(self.taus)}
        return {top: (self.top_site,), **(lower if self.stochastic_levels else {})}

    @property
    def nats_per_squared_error(self) -> float:
        """1 / beta: the factor that turns the papers' loss (squared error + beta * KL +
        lambda * ...) into nats of the negative ELBO, whose squared-error term is
        ||x - canvas||^2 / (2 obs_scale^2) under the normal likelihood."""
        if self.likelihood != "normal" or self.obs_scale is None:
            raise ConfigError("the papers' loss weights are relative to the squared error: "
                              "they need likelihood='normal' with a fixed obs_scale")
        return 1.0 / (2.0 * self.obs_scale ** 2)

    @property
    def patch_input_dim(self) -> int | None:
        """Numbers in the image a program step reads (None: it reads a latent)."""
        return math.prod(self.patch_shape) if self.program_input == "patch" else None

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        def need(ok, what):
            if not ok:
                raise ConfigError(what)

        for name, choices in (("kind", MODELS), ("program_input", PROGRAM_INPUTS),
                              ("parent_input", PARENT_INPUTS), ("part_loss", PART_LOSSES),
                              ("likelihood", LIKELIHOODS),
                              ("patch_activation", PATCH_ACTIVATIONS)):
            value = getattr(self, name)
            need(value in choices, f"{'model' if name == 'kind' else name} must be one of "
                                   f"{choices}, got {value!r}")
        need(self.channels in (1, 3), f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        need(self.image_size >= 8, f"image_size must be at least 8, got {self.image_size}")
        need(self.z_dim >= 1, f"z_dim must be positive, got {self.z_dim}")
        need(len(self.taus) >= 1 and all(t >= 1 for t in self.taus),
             f"taus needs at least one positive step count, got {self.taus}")
        need(min(self.hyper_width, self.hyper_state_layers, self.patch_hidden,
                 *self.program_encoder) >= 1 and self.hyper_policy_layers >= 0,
             "hyper_width, hyper_state_layers, patch_hidden and program_encoder's widths must "
             "be at least 1, hyper_policy_layers at least 0")
        need(1 <= len(self.program_encoder) <= 3,
             f"program_encoder is one to three layer widths, got {self.program_encoder}")
        need(self.hypernetworks in (1, 2),
             f"hypernetworks must be 1 (the workshop's H) or 2 (H_state and H_policy), got "
             f"{self.hypernetworks}")
        need(self.parent_input == "own_output" or self.program_input == "patch",
             "parent_input='child_output' feeds parents their children's canvases, which are "
             "images: set program_input='patch' too")
        need(self.parent_input == "own_output" or not self.stochastic_levels,
             "stochastic_levels samples each tree level as the level-synchronous tree makes "
             "it; parent_input='child_output' makes the tree depth-first: set one of them back")
        need(self.part_loss == "composite" or not self.part_loss_lambda or self.decode_parts,
             f"part_loss={self.part_loss!r} compares each part's own decoded patch with a "
             f"target: set decode_parts=True, or part_loss='composite'")
        need(not (self.part_loss_lambda or self.hyper_norm_lambda) or
             (self.likelihood == "normal" and self.obs_scale is not None),
             "part_loss_lambda and hyper_norm_lambda weigh terms against the papers' squared "
             "error: they need likelihood='normal' with a fixed obs_scale (beta = 2 obs_scale^2)")
        need(self.rotation_range >= 0 and self.level_scale > 0,
             f"rotation_range must be 0 or more and level_scale positive; got "
             f"{self.rotation_range}, {self.level_scale}")
        need(self.hyper_output_std > 0,
             f"hyper_output_std must be positive, got {self.hyper_output_std}")
        need(self.patch_size is None or self.patch_size >= 2,
             f"patch_size must be at least 2 (or None for the image size), got {self.patch_size}")
        need(self.scale_offset > 0, f"scale_offset must be positive, got {self.scale_offset}")
        need(self.obs_scale is None or self.obs_scale > 0,
             f"obs_scale must be positive or None (learned), got {self.obs_scale}")
        need(min(self.kl_weight, self.part_loss_lambda, self.hyper_norm_lambda) >= 0,
             f"kl_weight, part_loss_lambda and hyper_norm_lambda must be 0 or more; got "
             f"{self.kl_weight}, {self.part_loss_lambda}, {self.hyper_norm_lambda}")
        need(set(self.primitives) <= set(PRIMITIVES) and
             len(set(self.primitives)) == len(self.primitives),
             f"primitives must be distinct names from {PRIMITIVES}, got {self.primitives}")
        need(not self.primitives or self.kind != "convvae" or self.patch_shape[-1] % 2 == 0,
             f"the conv VAE stamps primitives at stride 2: patch_size must be even, got "
             f"{self.patch_shape[-1]}")
        need(self.kind != "convvae" or self.image_size % 4 == 0,
             f"the convvae baseline upsamples twice by 2: image_size must be divisible by 4, "
             f"got {self.image_size}")
        need(self.kind != "convvae" or not self.stochastic_levels,
             "the convvae baseline has a single latent level: set stochastic_levels=False")


class RNP(PyroModule):
    """Recursive Neural Program: hypernetworks H_state and H_policy, shared by all levels.

    The keyword options change how the model computes, not what: ``materialize_weights``
    generates each node's patch-decoder output matrix (else it is applied as one dense
    product without being generated), ``bf16_decoder`` runs that product in bfloat16,
    ``compile_programs`` torch.compiles the program steps. They may be changed at any
    time (see benchmarks/RESULTS.md for what each costs and saves).
    """

    def __init__(self, config: ModelConfig, *, materialize_weights: bool = False,
                 bf16_decoder: bool = True, compile_programs: bool = False):
        # A PyroModule can run with module-local parameters only if it was built with
        # them on; built so, the model runs in either of Pyro's parameter modes (the
        # per-image guides trace it with them on, whatever the user's setting).
        with pyro.settings.context(module_local_params=True):
            super().__init__()
        if config.kind != "rnp":
            raise ConfigError(f"RNP needs a model config of kind 'rnp', got {config.kind!r}")
        self.config = config
        self.materialize_weights = materialize_weights
        self.bf16_decoder = bf16_decoder
        self.compile_programs = compile_programs
        self.part_loss_lambda = config.part_loss_lambda  # set_epoch may ramp it up
        self._kept: KeptGrowth | None = None  # a guide's tree for the replay (grow_for_replay)
        outputs = program.patch_outputs(config.channels, config.patch_shape[-1],
                                        len(config.primitives))
        layouts = program.layouts(config.z_dim, config.program_encoder, config.patch_hidden,
                                  outputs, config.patch_input_dim, config.hypernetworks,
                                  config.three_layer_decoders)
        copies = 1 if config.shared_hypernetworks else len(config.taus)

        def hypernetworks(layers, layout):
            return nn.ModuleList(HyperNetwork(config.z_dim, config.hyper_width, layers, layout,
                                              config.hyper_output_std) for _ in range(copies))

        if config.hypernetworks == 2:
            self.hyper_state = hypernetworks(config.hyper_state_layers, layouts[0])
            self.hyper_policy = hypernetworks(config.hyper_policy_layers, layouts[1])
        else:  # the workshop's H, as deep as H_state
            self.hyper = hypernetworks(config.hyper_state_layers, layouts[0])
        self.likelihood = Likelihood(config.likelihood, config.image_shape, config.obs_scale)
        # the variant's parts (rnp_pyro.variants), chosen once
        self.reads = READERS[config.program_input, config.parent_input]()
        self.patch_maker = (FreePatches(config.patch_shape) if not config.primitives else
                            PrimitivePatches(config.primitives, config.channels,
                                             config.patch_shape[-1]))
        last = len(config.taus) - 1
        self.decodes = tuple(depth == last or config.decode_parts for depth in range(last + 1))
        # H_state and H_policy (PNAS), or the workshop's one H; the copy each depth uses.
        # Reached by name, so that Pyro's global param store sees them in its mode.
        self.hypernetwork_names = (("hyper_state", "hyper_policy") if config.hypernetworks == 2
                                   else ("hyper",))
        self.copy_at = tuple(0 if config.shared_hypernetworks else depth
                             for depth in range(last + 1))

    # ------------------------------------------------------------------ programs
    def program(self, z: torch.Tensor, depth: int, drawn: bool = True) -> program.Program:
        """The programs of nodes at tree depth ``depth`` with latents z (N, |z|), with the
        decoder of their children's patches where a step reads patches, or where the
        level decodes (:attr:`decodes`) and is ``drawn``."""
        made_by = [getattr(self, name)[self.copy_at[depth]] for name in self.hypernetwork_names]
        return program.generate(made_by, z,
                                patches=self.reads.patches or (drawn and self.decodes[depth]),
                                materialize=self.materialize_weights,
                                activation=self.config.patch_activation,
                                dtype=torch.bfloat16 if self.bf16_decoder else None)

    def patches(self, programs: program.Program, latents: torch.Tensor) -> torch.Tensor:
        """Patches (N, T, C, P, P) of latents (N, T, |z|), children of ``programs``."""
        return self.patch_maker(programs.patches(latents))

    def run_programs(self, programs: program.Program, tau: int, to_input: Callable | None,
                     feed: Callable | None):
        """``programs.run(tau, to_input, feed)``, torch.compile'd when
        ``compile_programs`` is on and nothing is read or fed in between."""
        if self.compile_programs and to_input is None and feed is None:
            return _compiled_run(programs, tau)
        return programs.run(tau, to_input, feed)

    # ------------------------------------------------------------------ the tree
    def grow(self, z: torch.Tensor, draws=None, depth: int = 0,
             drawn: bool = True) -> list[ProgramLevel]:
        """The tree's programs top-down, from N nodes of tree depth ``depth`` with
        latents z (N, |z|): the traversal the model and the guides that walk the tree
        share.

        Each level's nodes run their programs as one batch, reading what
        :attr:`reads` says; ``draws`` (default :class:`~rnp_pyro.variants.EmittedLatents`)
        turns each step's emitted children into their latents before the next step
        reads them (a sample of the prior, or of a guide's posterior). Pass ``drawn``
        False when only the latents are wanted: levels then generate no patch decoder
        they do not read with.
        """
        draws = draws or EmittedLatents()
        grown = []
        for depth in range(depth, len(self.config.taus)):
            programs = self.program(z, depth, drawn)
            reading = self.reads(self, programs, depth)
            latents, actions = self.run_programs(programs, self.config.taus[depth],
                                                 reading.to_input, draws.feed(depth))
            children, below = reading.drawn()
            grown.append(ProgramLevel(depth, programs, latents, actions, children, below))
            if children is not None:  # the subtrees were drawn as the programs ran
                break
            z = latents.reshape(-1, self.config.z_dim)
        return grown

    def draw(self, grown: list[ProgramLevel]) -> tuple[torch.Tensor, list[Level]]:
        """The grown tree drawn bottom-up: each level's children drawn (patches where
        the level :attr:`decodes`), placed in their parents' frames and summed. Returns
        the top nodes' canvases (N, C, H, W) and the levels below them, top first, each
        (nodes, children, ...)."""
        canvases, below = None, []
        for level in reversed(grown):
            leaf = level.depth == len(self.config.taus) - 1
            if level.drawn is not None:  # drawn child by child as the programs ran
                drawn, below = level.drawn, level.below
            elif leaf:
                drawn = self.patches(level.programs, level.latents)
            else:
                drawn = canvases.unflatten(0, (-1, level.latents.shape[1]))
            decoded = (drawn if leaf else
                       self.patches(level.programs, level.latents) if self.decodes[level.depth]
                       else None)
            placed = self.place(drawn, level.actions)
            canvases = placed.sum(1)
            below = [Level(level.latents, level.actions, drawn, placed, decoded), *below]
        return canvases, below

    def decode(self, z: torch.Tensor, stochastic: bool | None = None, depth: int = 0) -> Tree:
        """The parse tree of top latents z (*B, |z|).

        With stochastic per-level latents the lower levels are sampled unless
        ``stochastic=False``, which decodes their means. ``depth`` > 0 decodes z as
        latents of that tree depth (depth 1: the parts), each the root of its own
        subtree drawn in its own frame: a part's program is a program too.
        """
        config = self.config
        check_latents(z, config.z_dim)
        if not 0 <= depth < len(config.taus):
            raise ValueError(f"depth must be 0 (the top) to {len(config.taus) - 1} (the last "
                             f"level with programs) for taus {config.taus}; got {depth}")
        stochastic = config.stochastic_levels if stochastic is None else stochastic
        lead = z.shape[:-1]
        roots = z.reshape(-1, config.z_dim)
        kept, self._kept = self._kept, None
        grown, registered = [], {}
        if stochastic and depth == 0 and kept is not None and kept.top is z:
            # the hypernetworks are the model's to declare, as running the programs would:
            # Pyro's parameter handlers (the param store, JIT tracing) see them here
            for name in self.hypernetwork_names:
                getattr(self, name)
            grown, registered = kept.replayed(lead, config.level_scale)
        if not grown:
            draws = (Registered(registered, self.prior_latents(lead)) if stochastic
                     else EmittedLatents())
            grown = self.grow(roots, draws, depth)
        canvas, below = self.draw(grown)
        canvas = canvas.unsqueeze(1)
        root = Level(roots.unsqueeze(1), roots.new_zeros(roots.shape[0], 1, spatial.ACTION_DIM),
                     canvas, canvas)
        levels = [level.reshape(*lead, -1) for level in (root, *below)]
        return Tree(levels, config.taus[depth:])

    def sample_lower_levels(self, z: torch.Tensor) -> None:
        """Sample the per-level sites given z^K (*B, |z|) from the model's own conditional
        prior: guides that only infer z^K call this to complete the latent set (the
        tree is kept for the model's replay, :meth:`grow_for_replay`)."""
        self.grow_for_replay(z, self.prior_latents(z.shape[:-1]))

    def grow_for_replay(self, z: torch.Tensor, draws) -> list[ProgramLevel]:
        """The tree grown from z^K (*B, |z|) with ``draws`` (a guide's, drawing every level
        below the top), kept for this model's next :meth:`decode` of this very z^K: when
        that decode is the model's replay of the guide (as in an ELBO), the model scores
        its sites at the kept means and draws the kept programs instead of running them
        again. The loss and its gradient are the same either way."""
        kept = KeptGrowth(draws, len(self.config.taus))
        kept.grown = self.grow(z.reshape(-1, self.config.z_dim), kept)
        kept.top, self._kept = z, kept
        return kept.grown

    def prior_latents(self, lead: torch.Size) -> PriorLatents:
        """The latents of the levels below the top drawn from the model's conditional
        prior (``draws`` for :meth:`grow`), for trees of the batch shape ``lead``."""
        return PriorLatents(lead, self.config.level_scale, len(self.config.taus))

    def set_epoch(self, epoch: int, part_loss_ramp: int = 0) -> None:
        """Training's clock (epoch 0 first): the part loss's weight grows linearly to the
        configured ``part_loss_lambda`` over ``part_loss_ramp`` epochs (0: at once)."""
        ramp = min(1.0, (epoch + 1) / part_loss_ramp) if part_loss_ramp else 1.0
        self.part_loss_lambda = self.config.part_loss_lambda * ramp

    def subtree_state(self, depth: int) -> dict:
        """The weights of the tree below depth ``depth``, as a state dict for an RNP with
        ``taus[depth:]``: that model's ``decode(z)`` is this one's ``decode(z, depth=depth)``.

        Shared hypernetworks serve every depth, so they carry over whole; per-level
        ones from ``depth`` down are renumbered from 0.
        """
        return subtree_weights(self.state_dict(), self.config.shared_hypernetworks, depth)

    def place(self, drawn: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Canvases ``drawn`` (*, C, h, w) in their own frames (a tree level's ``drawn``:
        leaf patches, or image-sized canvases), placed in their parents' frames under
        ``actions`` (*, 6) with this model's geometry: the level's ``placed``."""
        return spatial.place(drawn, actions, self.config.scale_offset, self.config.rotation_range,
                             size=self.config.image_size)

    def crop(self, canvases: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The regions of parent canvases (*, C, H, W) that ``actions`` (*, 6) place
        children in, zoomed to full size, with this model's geometry."""
        return spatial.crop(canvases, actions, self.config.scale_offset,
                            self.config.rotation_range)

    # ------------------------------------------------------------------ the Pyro model
    def forward(self, x: torch.Tensor | None = None, indices: torch.Tensor | None = None,
                dataset_size: int | None = None, batch_size: int | None = None) -> torch.Tensor:
        """The Pyro model of a batch of images x (B, C, H, W); returns the root canvas.

        ``x=None`` generates ``batch_size`` images (default 1) at the site ``x``, Pyro's
        way to draw observations: ``Predictive(model, num_samples=S)(None, batch_size=B)``
        draws from the prior, and with ``posterior_samples`` from a guide's
        ``Predictive`` the posterior predictive. The part loss, a penalty on observed
        images, then has nothing to compare and is left out.
        ``indices`` and ``dataset_size`` subsample the ``data`` plate (see
        :func:`rnp_pyro.plates.data_plate`), for guides with parameters per image.
        """
        config = self.config
        if x is not None:
            check_batch_shape(x, config.image_shape, "the model")
        zeros = next(self.parameters()).new_zeros(config.z_dim)
        prior = dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)
        with data_plate(x, indices, dataset_size, batch_size):
            with poutine.scale(scale=config.kl_weight):
                z = pyro.sample(config.top_site, prior)
                tree = self.decode(z)
            self.likelihood.observe(tree.canvas, x)
            if self.part_loss_lambda > 0 and x is not None:
                pyro.factor("parts", -self.part_loss_lambda * config.nats_per_squared_error
                            * part_loss(tree, x, config.scale_offset, config.rotation_range,
                                        config.part_loss))
        if config.hyper_norm_lambda > 0:  # once per batch, as in the authors' loss
            pyro.factor("hyper_norm", -config.hyper_norm_lambda * config.nats_per_squared_error
                        * self.hypernetwork_norms())
        return tree.canvas

    def hypernetwork_norms(self) -> torch.Tensor:
        """The sum over hypernetworks (H_state and H_policy, each level's own copy when
        they are not shared; or the one H) of the Euclidean norm of its parameters."""
        norms = [torch.stack([p.norm() for p in network.parameters()]).norm()
                 for name in self.hypernetwork_names for network in getattr(self, name)]
        return torch.stack(norms).sum()

    def sample(self, n: int, device: torch.device | str | None = None) -> Tree:
        """Parse trees of n images drawn from the prior z^K ~ N(0, I)."""
        device = device or next(self.parameters()).device
        return self.decode(torch.randn(n, self.config.z_dim, device=device))


def check_latents(z: torch.Tensor, z_dim: int) -> None:
    """Raise a clear error unless ``z`` is a float tensor (*B, z_dim) of at least one
    latent."""
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise TypeError(f"latents must be a float torch.Tensor (*B, {z_dim}); got "
                        f"{type(z).__name__ if not isinstance(z, torch.Tensor) else z.dtype}")
    if z.dim() < 1 or z.shape[-1] != z_dim or z.numel() == 0:
        raise ValueError(f"latents must have shape (*B, {z_dim}) (|z| = {z_dim}) with B >= 1; "
                         f"got {tuple(z.shape)}")


@functools.cache
def _compiled():
    return torch.compile(program.Program.run, dynamic=True)


def _compiled_run(programs: program.Program, tau: int):
    return _compiled()(programs, tau)


def subtree_weights(weights: dict, shared_hypernetworks: bool, depth: int) -> dict:
    """:meth:`RNP.subtree_state` of an RNP's state dict ``weights`` (as a checkpoint holds
    it), without building the model."""
    if shared_hypernetworks:
        return dict(weights)
    state = {}
    for key, value in weights.items():
        stream, index, rest = (key.split(".", 2) + ["", ""])[:3]
        if stream in ("hyper_state", "hyper_policy", "hyper"):
            if int(index) < depth:
                continue
            key = f"{stream}.{int(index) - depth}.{rest}"
        state[key] = value
    return state


def part_loss(tree: Tree, x: torch.Tensor, scale_offset: float = 2.0,
              rotation_range: float = math.pi, form: str = "composite") -> torch.Tensor:
    """The papers' eq. 2, (1 / tau) * sum_t || part t - target t ||^2 per image (*B,),
    in one of the three forms of the authors' code, each at the image's size:

    - "composite": the part's composite of its sub-parts (its canvas) against the crop
      of x under its action a_t, crop(x, a_t);
    - "patch": the part's own decoded patch x̂_t (as PNAS writes it) against that crop;
    - "patch_vs_composite": its own decoded patch against its composite (both learn).

    A crop of x is a target, so it carries no gradient.
    """
    if form not in PART_LOSSES:
        raise ValueError(f"form must be one of {PART_LOSSES}, got {form!r}")
    parts = tree.levels[1]
    drawn = parts.canvases if form == "composite" else parts.decoded_canvases
    target = (parts.canvases if form == "patch_vs_composite" else
              part_crops(tree, x, scale_offset, rotation_range))
    return (drawn - target).pow(2).sum((-1, -2, -3)).mean(-1)


def part_crops(tree: Tree, x: torch.Tensor, scale_offset: float = 2.0,
               rotation_range: float = math.pi) -> torch.Tensor:
    """(*B, tau, C, H, W): the crop of x under each top-level part's action, the
    target of eq. 2 (no gradient)."""
    parts = tree.levels[1]
    with torch.no_grad():
        return spatial.crop(x.unsqueeze(-4).expand(*parts.placed.shape), parts.actions,
                            scale_offset, rotation_range)
