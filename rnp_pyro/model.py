"""The RNP generative model as a Pyro program, and the settings that say what it is.

``RNP(config)(x)`` is the Pyro model: z^K ~ N(0, I) per image, the tree of programs
it generates, and the observation ``x`` given the root canvas. The tree is a
recursive sub-model, one call per level of nodes (:meth:`RNP.level`): all nodes of a
level run their programs as one batch with their own generated weights, so the
sequential work is sum(taus) steps, not their product. Depth d of the tree (0 =
root) holds latent level K - d; program depth d runs ``taus[d]`` steps.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

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
from .primitives import PRIMITIVES, combine, primitive_images
from .tree import Level, Tree

MODELS = ("rnp", "convvae")


def site_name(level: int) -> str:
    """Name of the Pyro sample site of latent level ``level`` (K at the top, 0 at leaves)."""
    return f"z{level}"


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
    hyper_state_layers: int = 4  # hidden layers of H_state (H_policy has one fewer)
    hyper_policy_layers: int = 3
    # Initial std of the hypernetworks' output weights; fixed gains divide it back out,
    # so each generated tensor changes by about lr / hyper_output_std of its size per
    # Adam step whatever its fan-in (docs/architecture.md, benchmarks/RESULTS.md).
    hyper_output_std: float = 0.25
    program_encoder: tuple[int, int] = (64, 32)  # [z; a] -> 64 -> 32
    patch_hidden: int = 64  # z -> 64 -> C*P*P
    # Side P of the leaf patches in pixels (None: the image size, as in the papers). A
    # leaf is drawn at 1/(s_1 s_2 ...) of the frame, so a full-size patch is mostly
    # skipped by bilinear placement; a smaller patch is used whole.
    patch_size: int | None = None
    patch_activation: str = "relu6"  # "relu6" (authors' code) or "sigmoid"
    # Fixed strokes the leaves may only combine, names from primitives.PRIMITIVES (the
    # papers' Fig. 4A); the conv VAE then stamps them as its last layer. () = free.
    primitives: tuple[str, ...] = ()

    # --- likelihood and loss ---
    likelihood: str = "normal"
    # Normal/Laplace scale; None learns it. sqrt(0.1 / 2) makes -ELBO proportional to
    # the papers' loss: sum of squared errors + 0.1 * KL.
    obs_scale: float | None = math.sqrt(0.05)
    kl_weight: float = 1.0  # weight of the latent sites' log-density ratio (annealing)
    # The papers' eq. 2 as a factor: each top-level part's composite against the crop
    # of x under its action (variant (a) of the authors' code).
    part_loss_weight: float = 0.0

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
        """Names of the latent sample sites, top first: z^K, then each lower level's
        when ``stochastic_levels`` is on."""
        levels = range(self.levels - 1, -1, -1) if self.stochastic_levels else [self.levels - 1]
        return tuple(site_name(level) for level in levels)

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        def need(ok, what):
            if not ok:
                raise ConfigError(what)

        need(self.kind in MODELS, f"model must be one of {MODELS}, got {self.kind!r}")
        need(self.channels in (1, 3), f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        need(self.image_size >= 8, f"image_size must be at least 8, got {self.image_size}")
        need(self.z_dim >= 1, f"z_dim must be positive, got {self.z_dim}")
        need(len(self.taus) >= 1 and all(t >= 1 for t in self.taus),
             f"taus needs at least one positive step count, got {self.taus}")
        need(min(self.hyper_width, self.hyper_state_layers, self.patch_hidden,
                 *self.program_encoder) >= 1 and self.hyper_policy_layers >= 0,
             "hyper_width, hyper_state_layers, patch_hidden and program_encoder's widths must "
             "be at least 1, hyper_policy_layers at least 0")
        need(len(self.program_encoder) == 2,
             f"program_encoder is two widths, got {self.program_encoder}")
        need(self.rotation_range >= 0 and self.level_scale > 0,
             f"rotation_range must be 0 or more and level_scale positive; got "
             f"{self.rotation_range}, {self.level_scale}")
        need(self.hyper_output_std > 0,
             f"hyper_output_std must be positive, got {self.hyper_output_std}")
        need(self.patch_size is None or self.patch_size >= 2,
             f"patch_size must be at least 2 (or None for the image size), got {self.patch_size}")
        need(self.scale_offset > 0, f"scale_offset must be positive, got {self.scale_offset}")
        need(self.likelihood in LIKELIHOODS,
             f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        need(self.obs_scale is None or self.obs_scale > 0,
             f"obs_scale must be positive or None (learned), got {self.obs_scale}")
        need(self.patch_activation in ("relu6", "sigmoid"),
             f"patch_activation must be 'relu6' or 'sigmoid', got {self.patch_activation!r}")
        need(self.kl_weight >= 0 and self.part_loss_weight >= 0,
             f"kl_weight and part_loss_weight must be 0 or more; got {self.kl_weight}, "
             f"{self.part_loss_weight}")
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
        outputs = program.patch_outputs(config.channels, config.patch_shape[-1],
                                        len(config.primitives))
        state = program.state_layout(config.z_dim, config.program_encoder, config.patch_hidden,
                                     outputs)
        policy = program.policy_layout(config.z_dim, config.program_encoder)
        copies = 1 if config.shared_hypernetworks else len(config.taus)
        self.hyper_state = nn.ModuleList(
            HyperNetwork(config.z_dim, config.hyper_width, config.hyper_state_layers, state,
                         config.hyper_output_std) for _ in range(copies))
        self.hyper_policy = nn.ModuleList(
            HyperNetwork(config.z_dim, config.hyper_width, config.hyper_policy_layers, policy,
                         config.hyper_output_std) for _ in range(copies))
        self.likelihood = Likelihood(config.likelihood, config.image_shape, config.obs_scale)
        if config.primitives:
            self.register_buffer("primitive_images", primitive_images(
                config.primitives, config.patch_shape[-1]), persistent=False)  # from the config

    # ------------------------------------------------------------------ programs
    def program(self, z: torch.Tensor, depth: int, patches: bool = False) -> program.Program:
        """The programs of nodes at tree depth ``depth`` with latents z (N, |z|);
        with ``patches``, the decoder of their (leaf) children's patches too."""
        i = 0 if self.config.shared_hypernetworks else depth
        return program.generate(self.hyper_state[i], self.hyper_policy[i], z, patches=patches,
                                materialize=self.materialize_weights,
                                activation=self.config.patch_activation,
                                dtype=torch.bfloat16 if self.bf16_decoder else None)

    def patches(self, programs: program.Program, latents: torch.Tensor) -> torch.Tensor:
        """Leaf patches (N, T, C, P, P) of latents (N, T, |z|), children of ``programs``."""
        pixels = programs.patches(latents)
        if self.config.primitives:  # coefficients of the fixed primitives, per channel
            coefficients = pixels.unflatten(-1, (self.config.channels, -1))
            return combine(coefficients, self.primitive_images)
        return pixels.reshape(*latents.shape[:2], *self.config.patch_shape)

    def run_programs(self, programs: program.Program, tau: int):
        """``programs.run(tau)``, torch.compile'd when ``compile_programs`` is on."""
        return (_compiled_run if self.compile_programs else program.Program.run)(programs, tau)

    # ------------------------------------------------------------------ the tree
    def level(self, z: torch.Tensor, depth: int, lead: torch.Size, stochastic: bool,
              draw: bool = True) -> tuple[torch.Tensor | None, list[Level]]:
        """The nodes at tree depth ``depth``, latents z (N, n, |z|) for N trees: the
        recursive sub-model of the tree.

        Runs the nodes' programs as one batch, samples their children's level (site
        ``z{K - depth - 1}``) when ``stochastic``, calls itself for the children (or
        decodes them to patches when they are leaves), and places and sums the
        children's canvases. Returns the nodes' canvases (N, n, C, H, W) in their own
        frames and the levels below them, top first (latents and actions only, and
        no canvases, when not ``draw``). ``lead`` is the shape of the trees' batch.
        """
        config = self.config
        count, nodes = z.shape[:2]
        tau = config.taus[depth]
        leaves_next = depth == len(config.taus) - 1
        programs = self.program(z.reshape(-1, config.z_dim), depth, patches=leaves_next and draw)
        children, actions = self.run_programs(programs, tau)  # (N n, tau, .)
        if stochastic:
            children = self._sample_level(children, lead, depth + 1)
        if leaves_next:
            drawn = self.patches(programs, children) if draw else None
            below = []
        else:
            drawn, below = self.level(children.reshape(count, nodes * tau, config.z_dim),
                                      depth + 1, lead, stochastic, draw)
        children = children.reshape(count, nodes * tau, config.z_dim)
        actions = actions.reshape(count, nodes * tau, spatial.ACTION_DIM)
        if not draw:
            return None, [Level(children, actions, None, None), *below]
        drawn = drawn.reshape(count, nodes * tau, *drawn.shape[-3:])
        placed = self.place(drawn, actions)
        canvases = placed.reshape(count, nodes, tau, *config.image_shape).sum(2)
        return canvases, [Level(children, actions, drawn, placed), *below]

    def _sample_level(self, means: torch.Tensor, lead: torch.Size, depth: int) -> torch.Tensor:
        """Sample one whole tree level, site z{K - depth}, event (nodes, |z|)."""
        shaped = means.reshape(*lead, -1, self.config.z_dim)
        node = dist.Normal(shaped, self.config.level_scale).to_event(2)
        sample = pyro.sample(site_name(len(self.config.taus) - depth), node)
        return sample.reshape(means.shape)

    def decode(self, z: torch.Tensor, stochastic: bool | None = None, depth: int = 0) -> Tree:
        """The parse tree of top latents z (*B, |z|).

        With stochastic per-level latents the lower levels are sampled unless
        ``stochastic=False``, which decodes their means. ``depth`` > 0 decodes z as
        latents of that tree depth (depth 1: the parts), each the root of its own
        subtree drawn in its own frame: a part's program is a program too.
        """
        config = self.config
        if not 0 <= depth < len(config.taus):
            raise ValueError(f"depth must be 0 (the top) to {len(config.taus) - 1} (the last "
                             f"level with programs) for taus {config.taus}; got {depth}")
        stochastic = config.stochastic_levels if stochastic is None else stochastic
        lead = z.shape[:-1]
        roots = z.reshape(-1, 1, config.z_dim)
        canvas, below = self.level(roots, depth, lead, stochastic)
        root = Level(roots, roots.new_zeros(*roots.shape[:2], spatial.ACTION_DIM), canvas, canvas)
        levels = [Level(*(t.reshape(*lead, *t.shape[1:]) for t in (level.latents, level.actions,
                                                                     level.drawn, level.placed)))
                  for level in (root, *below)]
        return Tree(levels, config.taus[depth:])

    def sample_lower_levels(self, z: torch.Tensor) -> None:
        """Sample the per-level sites given z^K (*B, |z|) from the model's own conditional
        prior, without drawing: guides that only infer z^K call this to complete the
        latent set."""
        self.level(z.reshape(-1, 1, self.config.z_dim), 0, z.shape[:-1], stochastic=True,
                   draw=False)

    def subtree_state(self, depth: int) -> dict:
        """The weights of the tree below depth ``depth``, as a state dict for an RNP with
        ``taus[depth:]``: that model's ``decode(z)`` is this one's ``decode(z, depth=depth)``.

        Shared hypernetworks serve every depth, so they carry over whole; per-level
        ones from ``depth`` down are renumbered from 0.
        """
        if self.config.shared_hypernetworks:
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
    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None,
                dataset_size: int | None = None) -> torch.Tensor:
        """The Pyro model of a batch of images x (B, C, H, W); returns the root canvas.

        ``indices`` and ``dataset_size`` subsample the ``data`` plate (see
        :func:`rnp_pyro.plates.data_plate`), for guides with parameters per image.
        """
        config = self.config
        check_batch_shape(x, config.image_shape, "the model")
        prior = dist.Normal(x.new_zeros(config.z_dim), x.new_ones(config.z_dim)).to_event(1)
        with data_plate(x, indices, dataset_size):
            with poutine.scale(scale=config.kl_weight):
                z = pyro.sample(config.top_site, prior)
                tree = self.decode(z)
            self.likelihood.observe(tree.canvas, x)
            if config.part_loss_weight > 0:
                pyro.factor("parts", -config.part_loss_weight * part_loss(
                    tree, x, config.scale_offset, config.rotation_range))
        return tree.canvas

    def sample(self, n: int, device: torch.device | str | None = None) -> Tree:
        """Parse trees of n images drawn from the prior z^K ~ N(0, I)."""
        device = device or next(self.parameters()).device
        return self.decode(torch.randn(n, self.config.z_dim, device=device))


@functools.cache
def _compiled():
    return torch.compile(program.Program.run, dynamic=True)


def _compiled_run(programs: program.Program, tau: int):
    return _compiled()(programs, tau)


def part_loss(tree: Tree, x: torch.Tensor, scale_offset: float = 2.0,
              rotation_range: float = math.pi) -> torch.Tensor:
    """The papers' eq. 2: each top-level part's composite against the crop of x it covers.

    (1 / tau) * sum_t || canvas of part t - crop(x, a_t) ||^2, per image (*B,).
    The crop is a target, so it carries no gradient.
    """
    parts = tree.levels[1]
    target = x.unsqueeze(-4).expand(*parts.canvases.shape)
    with torch.no_grad():
        crops = spatial.crop(target, parts.actions, scale_offset, rotation_range)
    return (parts.canvases - crops).pow(2).sum((-1, -2, -3)).mean(-1)
