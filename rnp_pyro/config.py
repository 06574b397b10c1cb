"""Configuration of a run: one dataclass, saved with every run and checkpoint.

Names follow the papers: a model has ``levels`` levels of latents (``K = levels - 1``
at the top, 0 at the leaves) and ``levels - 1`` levels of programs; ``taus[i]`` is
the number of steps the programs of the i-th program level (top first) run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

LIKELIHOODS = ("normal", "laplace", "continuous_bernoulli", "bernoulli")
MODELS = ("rnp", "convvae")
# amortized encoder; Pyro's AutoNormal and AutoDelta per image; top-down per-level
# (ladder) guide; encoder + per-image gradient steps (semi-amortized)
GUIDES = ("encoder", "normal", "delta", "ladder", "refined")
# Trace_ELBO, TraceMeanField_ELBO, RenyiELBO(alpha=0) (importance weighted), TraceGraph_ELBO
OBJECTIVES = ("elbo", "meanfield", "iwae", "tracegraph")
FREEZABLE = ("hyper_state", "hyper_policy", "encoder", "likelihood")
PRIMITIVES = ("line", "curve")  # fixed strokes leaves may be limited to (primitives.py)
CONFIG_FILE = "config.json"  # a run folder's config
# How a model is computed, not what it is: a run may resume, or be loaded, with any
# of these switched (see benchmarks/RESULTS.md for what each costs and saves).
PERFORMANCE_FIELDS = ("materialize_weights", "bf16_decoder", "compile_programs",
                      "bf16_encoder", "bf16_autocast", "cuda_graphs")


class ConfigError(ValueError):
    """A configuration that cannot describe a model."""


@dataclass
class RNPConfig:
    # --- data ---
    dataset: str = "fashion"
    channels: int = 1
    image_size: int = 28

    # --- the tree ---
    model: str = "rnp"  # "rnp" or the "convvae" baseline
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
    # Fixed strokes the leaves may only combine, names from PRIMITIVES (the
    # papers' Fig. 4A); the conv VAE then stamps them as its last layer. () = free.
    primitives: tuple[str, ...] = ()
    # Generate each node's patch-decoder output matrix (True), or apply it as one
    # dense product over (hidden x hypernetwork state) without generating it (False,
    # faster: see benchmarks/RESULTS.md).
    materialize_weights: bool = False
    # Run that dense product in bfloat16 with float32 accumulation (only when not
    # materialising); several times faster on CPUs and GPUs with bf16 units.
    bf16_decoder: bool = True
    # torch.compile each level's program steps (many small operations: fused, they
    # cost far fewer kernel launches on a GPU); see benchmarks/RESULTS.md for when it pays
    compile_programs: bool = False

    # --- the guide (ResNet encoder) ---
    # Run the encoder's convolutions under bfloat16 autocast (float32 from its dense
    # layers on); its cost in quality is measured in benchmarks/RESULTS.md
    bf16_encoder: bool = False
    encoder_channels: int = 32
    encoder_convs: int = 4  # 5x5 valid convolutions
    encoder_blocks: int = 4  # ResNet BasicBlocks
    encoder_dense: tuple[int, ...] = (64, 64, 64)

    # --- likelihood and loss ---
    likelihood: str = "normal"
    # Normal/Laplace scale; None learns it. sqrt(0.1 / 2) makes -ELBO proportional to
    # the papers' loss: sum of squared errors + 0.1 * KL.
    obs_scale: float | None = math.sqrt(0.05)
    kl_weight: float = 1.0  # weight of the latent sites' log-density ratio (annealing)
    # The papers' eq. 2 as a factor: each top-level part's composite against the crop
    # of x under its action (variant (a) of the authors' code).
    part_loss_weight: float = 0.0

    # --- inference ---
    guide: str = "encoder"  # one of GUIDES
    objective: str = "elbo"  # one of OBJECTIVES
    num_particles: int = 1  # samples per image in the objective (vectorized)
    refine_steps: int = 20  # "refined" guide: Adam steps on each image's own ELBO ...
    refine_lr: float = 0.05  # ... with this step size, over (loc, log scale) of q(z^K | x)

    # --- optimisation ---
    # Run training steps under bfloat16 autocast (matrix products and convolutions in
    # bf16); its effect on the loss is measured in benchmarks/RESULTS.md
    bf16_autocast: bool = False
    # On CUDA, capture the training step as a CUDA graph and replay it (rnp_pyro.step):
    # one launch per step instead of one per operator. Off until measured on a GPU.
    cuda_graphs: bool = False
    lr: float = 1e-4
    batch_size: int = 64
    epochs: int = 200
    lr_decay: float = 0.67  # multiply lr by this ...
    lr_decay_every: int = 50  # ... every this many epochs
    grad_clip: float | None = None  # max gradient norm; None for none
    weight_decay: float = 0.0

    # --- transfer ---
    init_from: str | None = None  # a run folder whose weights start this run
    # With init_from: cut this many program levels off the top of that run's tree and
    # start from the programs below it, with a fresh guide (the PNAS paper's Fig. 4C:
    # a 4-level model's 3-level subtree driven by a new encoder). taus must be the
    # source's less its first ``truncate``; presets.truncation builds such a config.
    truncate: int = 0
    freeze: tuple[str, ...] = ()  # parts kept as they are: names from FREEZABLE
    classes: tuple[int, ...] | None = None  # train and test only on these labels ...
    exclude_classes: tuple[int, ...] = ()  # ... and never on these

    # --- free-form notes kept with the run ---
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.taus = tuple(int(t) for t in self.taus)
        self.program_encoder = tuple(int(w) for w in self.program_encoder)
        self.encoder_dense = tuple(int(w) for w in self.encoder_dense)
        self.freeze = tuple(self.freeze)
        self.primitives = tuple(self.primitives)
        self.exclude_classes = tuple(int(c) for c in self.exclude_classes)
        if self.classes is not None:
            self.classes = tuple(int(c) for c in self.classes)
        self.validate()

    # ------------------------------------------------------------------ derived
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
        counts = [1]
        for tau in self.taus:
            counts.append(counts[-1] * tau)
        return tuple(counts)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        def need(ok, what):
            if not ok:
                raise ConfigError(what)

        need(self.model in MODELS, f"model must be one of {MODELS}, got {self.model!r}")
        need(self.channels in (1, 3), f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        need(self.image_size >= 8, f"image_size must be at least 8, got {self.image_size}")
        need(self.z_dim >= 1, f"z_dim must be positive, got {self.z_dim}")
        need(len(self.taus) >= 1 and all(t >= 1 for t in self.taus),
             f"taus needs at least one positive step count, got {self.taus}")
        need(self.hyper_output_std > 0, f"hyper_output_std must be positive, got {self.hyper_output_std}")
        need(self.patch_size is None or self.patch_size >= 2,
             f"patch_size must be at least 2 (or None for the image size), got {self.patch_size}")
        need(self.scale_offset > 0, f"scale_offset must be positive, got {self.scale_offset}")
        need(self.likelihood in LIKELIHOODS,
             f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        need(self.obs_scale is None or self.obs_scale > 0,
             f"obs_scale must be positive or None (learned), got {self.obs_scale}")
        need(self.patch_activation in ("relu6", "sigmoid"),
             f"patch_activation must be 'relu6' or 'sigmoid', got {self.patch_activation!r}")
        need(self.kl_weight >= 0 and self.part_loss_weight >= 0, "loss weights must be >= 0")
        need(self.encoder_convs >= 0 and self.image_size - 4 * self.encoder_convs >= 1,
             f"{self.encoder_convs} valid 5x5 convolutions do not fit a {self.image_size}px image")
        need(self.lr > 0 and self.batch_size >= 1 and self.epochs >= 0, "lr, batch_size, epochs")
        need(self.guide in GUIDES, f"guide must be one of {GUIDES}, got {self.guide!r}")
        need(self.guide != "ladder" or self.stochastic_levels,
             "the ladder guide infers the per-level latents: it needs stochastic_levels=True")
        need(self.objective in OBJECTIVES,
             f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        need(self.num_particles >= 1, f"num_particles must be positive, got {self.num_particles}")
        need(self.objective != "iwae" or self.guide not in ("normal", "delta"),
             "the importance-weighted objective needs unscaled per-image weights, and the "
             "per-image guides subsample (and so scale) the data plate: use --objective elbo")
        need(self.refine_steps >= 0 and self.refine_lr > 0, "refine_steps >= 0 and refine_lr > 0")
        need(set(self.primitives) <= set(PRIMITIVES) and
             len(set(self.primitives)) == len(self.primitives),
             f"primitives must be distinct names from {PRIMITIVES}, got {self.primitives}")
        need(not self.primitives or self.model != "convvae" or self.patch_shape[-1] % 2 == 0,
             f"the conv VAE stamps primitives at stride 2: patch_size must be even, got "
             f"{self.patch_shape[-1]}")
        need(self.truncate >= 0, f"truncate must be 0 or more program levels, got {self.truncate}")
        need(not self.truncate or self.init_from,
             "truncate cuts levels off the tree of another run: give init_from too")
        need(not self.truncate or self.model == "rnp",
             f"truncate cuts levels off an RNP's tree; the {self.model} model has none")
        unknown = sorted(set(self.freeze) - set(FREEZABLE))
        need(not unknown, f"cannot freeze {unknown}: choose from {FREEZABLE}")
        need(self.classes is None or not set(self.classes) & set(self.exclude_classes),
             f"classes {self.classes} and exclude_classes {self.exclude_classes} overlap")

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RNPConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config fields {unknown}; known are {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "RNPConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
        return cls.from_dict(data)

    def replace(self, **changes) -> "RNPConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def site_name(level: int) -> str:
    """Name of the Pyro sample site of latent level ``level`` (K at the top, 0 at leaves)."""
    return f"z{level}"


def top_site(cfg: RNPConfig) -> str:
    """Name of the top latent site z^K, the one every guide must provide."""
    return site_name(cfg.levels - 1)


def latent_sites(cfg: RNPConfig) -> tuple[str, ...]:
    """Names of the model's latent sample sites, top first: z^K, then each lower
    level's when ``stochastic_levels`` is on."""
    levels = range(cfg.levels - 1, -1, -1) if cfg.stochastic_levels else [cfg.levels - 1]
    return tuple(site_name(level) for level in levels)


def parse_switches(text: str | None) -> dict[str, bool]:
    """``"NAME=on,NAME=off"`` (names from PERFORMANCE_FIELDS) as config overrides."""
    switches = {}
    for pair in filter(None, (part.strip() for part in (text or "").split(","))):
        name, _, state = pair.partition("=")
        if name not in PERFORMANCE_FIELDS or state not in ("on", "off"):
            raise ConfigError(f"--speed: {pair!r} is not NAME=on or NAME=off with NAME one of "
                              f"{', '.join(PERFORMANCE_FIELDS)}")
        switches[name] = state == "on"
    return switches
