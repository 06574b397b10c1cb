"""The configuration of a run: each setting with its owner, composed into one.

A :class:`RunConfig` holds the model's settings (:class:`~rnp_pyro.model.ModelConfig`:
image shape, tree, generated networks, likelihood), the guide's
(:class:`~rnp_pyro.guides.GuideConfig`), the data's, the training's, and the
performance switches, which say how a run computes rather than what. It is saved
with every run as one JSON object with one entry per part; ``config.json`` files
written before the parts existed (one flat object) load too.

Each part checks its own fields; the rules that span parts are in
:meth:`RunConfig.validate` and :meth:`RunConfig.check_data_parallel`.

A flat field name reaches its part: ``config.replace(z_dim=32, lr=1e-3)`` and
``presets.get("fashion", z_dim=32)`` change ``config.model.z_dim`` and
``config.train.lr``; the kinds of model and guide are called ``model`` and ``guide``
there (``replace(model="convvae", guide="ladder")``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CheckpointError, ConfigError, check_fields
from .guides.registry import GuideConfig, guide_for_model
from .infer.objectives import DATA_PARALLEL_OBJECTIVES, OBJECTIVES
from .model import ModelConfig

__all__ = ["ConfigError", "DataConfig", "GuideConfig", "ModelConfig", "RunConfig", "SpeedConfig",
           "TrainConfig", "FREEZABLE", "parse_switches"]

FREEZABLE = ("hyper_state", "hyper_policy", "hyper", "encoder", "likelihood")


@dataclass(frozen=True)
class DataConfig:
    """What a run trains and is tested on."""

    dataset: str = "fashion"  # a name rnp_pyro.data.load_images knows
    classes: tuple[int, ...] | None = None  # train and test only on these labels ...
    exclude_classes: tuple[int, ...] = ()  # ... and never on these

    def __post_init__(self):
        check_fields(self)
        if not self.dataset:
            raise ConfigError("dataset must be named, e.g. fashion, strokes or folder:PATH")
        if self.classes is not None:
            if set(self.classes) & set(self.exclude_classes):
                raise ConfigError(f"classes {self.classes} and exclude_classes "
                                  f"{self.exclude_classes} overlap")


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains: objective, optimiser, schedule, and where it starts from."""

    objective: str = "elbo"  # one of infer.objectives.OBJECTIVES
    num_particles: int = 1  # samples per image in the objective (vectorized)
    lr: float = 1e-4
    batch_size: int = 64
    epochs: int = 200
    lr_decay: float = 0.67  # multiply lr by this ...
    lr_decay_every: int = 50  # ... every this many epochs
    grad_clip: float | None = None  # max gradient norm; None for none
    weight_decay: float = 0.0
    init_from: str | None = None  # a run folder whose weights start this run
    # With init_from: cut this many program levels off the top of that run's tree and
    # start from the programs below it, with a fresh guide (the PNAS paper's Fig. 4C:
    # a 4-level model's 3-level subtree driven by a new encoder). taus must be the
    # source's less its first ``truncate``; presets.truncation builds such a config.
    truncate: int = 0
    freeze: tuple[str, ...] = ()  # parts kept as they are: names from FREEZABLE
    # With init_from: parts that start afresh instead of from that run (names from
    # FREEZABLE), e.g. a new encoder and H_policy for the PNAS paper's transfer
    fresh: tuple[str, ...] = ()
    # Epochs over which the part loss's weight grows linearly to the model's
    # part_loss_lambda, 1/ramp of it more each epoch (the authors raised it slowly); 0: none
    part_loss_ramp: int = 0

    def __post_init__(self):
        check_fields(self)

        def need(ok, what):
            if not ok:
                raise ConfigError(what)

        need(self.objective in OBJECTIVES,
             f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        need(self.num_particles >= 1, f"num_particles must be positive, got {self.num_particles}")
        need(self.objective != "iwae" or self.num_particles >= 2,
             f"the importance-weighted objective needs at least 2 particles per image (with 1 "
             f"it is the ELBO); got num_particles={self.num_particles}")
        need(self.lr > 0, f"lr must be positive, got {self.lr}")
        need(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        need(self.epochs >= 0, f"epochs must be 0 or more, got {self.epochs}")
        need(0 < self.lr_decay <= 1 and self.lr_decay_every >= 1,
             f"lr_decay must be in (0, 1] and lr_decay_every at least 1; got {self.lr_decay}, "
             f"{self.lr_decay_every}")
        need(self.grad_clip is None or self.grad_clip > 0,
             f"grad_clip must be positive (the largest gradient norm) or None; got "
             f"{self.grad_clip}")
        need(self.part_loss_ramp >= 0,
             f"part_loss_ramp must be 0 or more epochs, got {self.part_loss_ramp}")
        need(self.weight_decay >= 0, f"weight_decay must be 0 or more, got {self.weight_decay}")
        need(self.truncate >= 0, f"truncate must be 0 or more program levels, got {self.truncate}")
        need(not self.truncate or self.init_from,
             "truncate cuts levels off the tree of another run: give init_from too")
        unknown = sorted(set(self.freeze) - set(FREEZABLE))
        need(not unknown, f"cannot freeze {unknown}: choose from {FREEZABLE}")
        unknown = sorted(set(self.fresh) - set(FREEZABLE))
        need(not unknown, f"cannot start {unknown} afresh: choose from {FREEZABLE}")
        need(not self.fresh or self.init_from,
             "fresh names parts that do not start from another run: give init_from too")
        both = sorted(set(self.fresh) & set(self.freeze))
        need(not both, f"{both} would start afresh and never train: leave them out of freeze "
                       f"or of fresh")


@dataclass(frozen=True)
class SpeedConfig:
    """How a run computes, not what: a run may resume, or be loaded, with any of these
    switched (benchmarks/RESULTS.md says what each costs and saves)."""

    # Generate each node's patch-decoder output matrix (True), or apply it as one
    # dense product over (hidden x hypernetwork state) without generating it (False).
    materialize_weights: bool = False
    # Run that dense product in bfloat16 with float32 accumulation (only when not
    # materialising); several times faster on CPUs and GPUs with bf16 units.
    bf16_decoder: bool = True
    # torch.compile each level's program steps (fewer kernel launches on a GPU)
    compile_programs: bool = False
    # the encoder's convolutions under bfloat16 autocast (float32 from its dense layers)
    bf16_encoder: bool = False
    # training steps under bfloat16 autocast (matrix products and convolutions in bf16)
    bf16_autocast: bool = False
    # on CUDA, capture the training step as a CUDA graph and replay it (rnp_pyro.step)
    cuda_graphs: bool = False

    def __post_init__(self):
        check_fields(self)


_PARTS = {"model": ModelConfig, "guide": GuideConfig, "data": DataConfig, "train": TrainConfig,
          "speed": SpeedConfig}
# flat name -> (part, field); a part's ``kind`` is called by the part's name
_FLAT = {(part if f.name == "kind" else f.name): (part, f.name)
         for part, cls in _PARTS.items() for f in dataclasses.fields(cls)}
PERFORMANCE_FIELDS = tuple(f.name for f in dataclasses.fields(SpeedConfig))


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is made from, part by part; saved with every run and checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    guide: GuideConfig = field(default_factory=GuideConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    notes: dict = field(default_factory=dict)  # free-form, kept with the run

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """The rules that span parts."""
        model, guide, train = self.model, self.guide, self.train
        if model.image_size - 4 * guide.encoder_convs < 1:
            raise ConfigError(f"{guide.encoder_convs} valid 5x5 convolutions of the encoder do "
                              f"not fit a {model.image_size}px image: lower encoder_convs")
        guide_class = guide_for_model(guide.kind, model.stochastic_levels)
        if train.objective == "iwae" and guide_class.per_image:
            raise ConfigError("the importance-weighted objective needs unscaled per-image "
                              "weights, and the per-image guides subsample (and so scale) the "
                              "data plate: use --objective elbo")
        if train.truncate and model.kind != "rnp":
            raise ConfigError(f"truncate cuts levels off an RNP's tree; the {model.kind} model "
                              f"has none")

    def check_data_parallel(self) -> None:
        """Data-parallel training needs a differentiable loss and a guide whose parameters
        every process can share."""
        if self.train.objective not in DATA_PARALLEL_OBJECTIVES:
            raise ConfigError(f"data-parallel training needs an objective whose loss is a "
                              f"tensor ({', '.join(DATA_PARALLEL_OBJECTIVES)}); "
                              f"{self.train.objective!r} builds its own gradients: train it in "
                              f"one process")
        if not self.guide.guide_class.data_parallel:
            raise ConfigError(f"the {self.guide.kind!r} guide keeps parameters per image or "
                              f"refines each one, so data-parallel processes cannot share it: "
                              f"train it in one process")

    def for_fit(self, out: Path, *, epochs: int | None = None, parallel: bool = False,
                checkpoint: dict | None = None, seed: int = 0) -> "RunConfig":
        """The config a fit into the folder ``out`` trains: with the ``epochs`` budget
        asked for (what config.json records) and a ``folder:`` dataset's path made
        absolute (the run reads the same images from wherever it is resumed or judged).

        Refuses a run folder inside its own data folder (its figures would become
        data), data-parallel training (``parallel``) it cannot do, and a ``checkpoint``
        to resume that was trained with other settings or another ``seed``
        (performance switches and the epochs budget aside).
        """
        config = self if epochs is None else self.replace(epochs=epochs)
        dataset = config.data.dataset
        if dataset.startswith("folder:"):
            images = Path(dataset.removeprefix("folder:")).expanduser().absolute()
            if out == images or images in out.parents:
                raise ConfigError(f"the run folder {out} lies inside its data folder {images}, "
                                  f"whose images it would add to; choose an --out outside it")
            config = config.replace(dataset=f"folder:{images}")
        if parallel:
            config.check_data_parallel()
        if checkpoint is not None:
            changes = RunConfig.from_checkpoint(checkpoint, out).differences(config)
            if checkpoint["seed"] != seed:
                changes.append(f"seed ({checkpoint['seed']!r} vs {seed!r})")
            if changes:
                raise CheckpointError(f"the checkpoint in {out} was trained with other settings "
                                      f"(saved vs asked): {', '.join(changes)}; resume with the "
                                      f"same settings, or choose another --out for a new run")
        return config

    # ------------------------------------------------------------------ changes
    def replace(self, **changes) -> "RunConfig":
        """A copy with some settings changed (validated): whole parts by their names, or
        single fields by their flat names (see the module's docstring)."""
        parts = {name: getattr(self, name) for name in _PARTS}
        fields = {name: {} for name in _PARTS}
        notes = changes.pop("notes", self.notes)
        for name, value in changes.items():
            if name in _PARTS and isinstance(value, _PARTS[name]):
                parts[name] = value
            elif name in _FLAT:
                part, field_name = _FLAT[name]
                fields[part][field_name] = value
            else:
                raise ConfigError(f"unknown setting {name!r}; known are {sorted(_FLAT)}")
        try:
            built = {name: dataclasses.replace(parts[name], **fields[name]) if fields[name]
                     else parts[name] for name in _PARTS}
        except TypeError as err:
            raise ConfigError(f"bad setting: {err}") from err
        return RunConfig(**built, notes=notes)

    def differences(self, other: "RunConfig") -> list[str]:
        """``name (self's vs other's)`` for each setting that differs, leaving out the
        performance switches and the epochs budget: they are not part of what a run is
        (a run resumes with more epochs to train on)."""
        mine, theirs = self.flat(), other.flat()
        return [f"{name} ({mine[name]!r} vs {theirs[name]!r})" for name in mine
                if name not in (*PERFORMANCE_FIELDS, "epochs") and mine[name] != theirs[name]]

    def flat(self) -> dict:
        """Every setting by its flat name, and the notes."""
        values = {flat: getattr(getattr(self, part), name) for flat, (part, name) in _FLAT.items()}
        return {**values, "notes": self.notes}

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_checkpoint(cls, state: dict, source: str | Path) -> "RunConfig":
        """The config a checkpoint (of the run in ``source``, named in errors) was
        trained with."""
        try:
            return cls.from_dict(state["config"])
        except (ConfigError, TypeError) as err:
            raise CheckpointError(f"the config stored in the checkpoint of {source} is not "
                                  f"valid here (written by rnp-pyro {state.get('version', '?')}): "
                                  f"{err}") from err

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """From :meth:`to_dict`'s nested form, or the flat form of runs made before it."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config is a JSON object, got {type(data).__name__}")
        if not isinstance(data.get("model", {}), dict):  # flat: the model's kind was a string
            data = _with_crop_size(data, data.get("guide"), data.get("image_size"))
            return cls().replace(**_in_papers_units(data))
        unknown = sorted(set(data) - set(_PARTS) - {"notes"})
        if unknown:
            raise ConfigError(f"unknown config parts {unknown}; known are "
                              f"{sorted([*_PARTS, 'notes'])}")
        parts = {}
        for name, part in _PARTS.items():
            given = data.get(name, {})
            if name == "model":
                given = _in_papers_units(given)
            if name == "guide":
                given = _with_crop_size(given, given.get("kind"),
                                        data.get("model", {}).get("image_size"))
            known = {f.name for f in dataclasses.fields(part)}
            extra = sorted(set(given) - known)
            if extra:
                raise ConfigError(f"unknown {name} settings {extra}; known are {sorted(known)}")
            parts[name] = part(**given)
        return cls(**parts, notes=data.get("notes", {}))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
        return cls.from_dict(data)


def _with_crop_size(settings: dict, guide: str | None, image_size: int | None) -> dict:
    """Settings saved before the ladder guide's ``crop_size`` existed (the guide's part,
    or a flat config): a ladder guide's crops were then the image's size."""
    if guide != "ladder" or "crop_size" in settings:
        return settings
    return {**settings, "crop_size": image_size or ModelConfig().image_size}


def _in_papers_units(settings: dict) -> dict:
    """Model settings saved before the part loss's weight was given in the papers' units
    (``part_loss_weight`` w, which multiplied eq. 2 in nats), as ``part_loss_lambda``:
    the same loss, lambda = w * beta with beta = 2 obs_scale^2."""
    if "part_loss_weight" not in settings:
        return settings
    settings = dict(settings)
    weight = settings.pop("part_loss_weight")
    scale = settings.get("obs_scale", ModelConfig.obs_scale)
    if weight and (scale is None or settings.get("likelihood", "normal") != "normal"):
        raise ConfigError(f"this run weighs eq. 2 by part_loss_weight={weight} under a "
                          f"likelihood other than the normal with a fixed scale; the papers' "
                          f"part_loss_lambda has no equivalent there: retrain it")
    settings["part_loss_lambda"] = weight * 2 * scale ** 2 if weight else 0.0
    return settings


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
