"""A run: a model and guide trained from one config, kept in one folder.

The folder holds ``config.json`` (written when training starts) and
``checkpoint.pt`` (replaced atomically after every epoch), so whatever moment a
run stops at, the folder holds a complete, readable state.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from .baselines import ConvVAE
from .config import CONFIG_FILE, PERFORMANCE_FIELDS, ConfigError, RNPConfig
from . import guides
from .model import RNP

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = ("epoch", "step", "train_loss", "test_elbo", "test_mse", "lr", "skipped_steps",
                   "seconds")
_COUNT_COLUMNS = ("epoch", "step", "skipped_steps")
_CHECKPOINT_KEYS = ("model", "guide", "optimizer", "scheduler", "epoch", "step", "epoch_step",
                    "skipped_steps", "seconds", "seed", "rng", "config")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged, or belongs to another configuration."""


@dataclass
class Run:
    """A trained model and guide with the config they were built from and their folder."""

    model: torch.nn.Module
    guide: torch.nn.Module
    config: RNPConfig
    path: Path
    epoch: int = 0  # epochs completed
    step: int = 0  # optimisation steps taken (skipped ones included)
    metrics: dict = field(default_factory=dict)  # the last row of metrics.csv


def build(cfg: RNPConfig, example: torch.Tensor | None = None, dataset_size: int | None = None):
    """A fresh (model, guide) pair for ``cfg``: the RNP or the matched ConvVAE baseline.

    Per-image guides lay out their parameters for ``dataset_size`` images from an
    ``example`` batch.
    """
    if cfg.model == "rnp":
        model = RNP(cfg)
    else:
        # the baseline gets as many parameters as the RNP it is compared with
        rnp_params = sum(p.numel() for p in RNP(cfg.replace(model="rnp", guide="encoder"))
                         .parameters())
        model = ConvVAE(cfg, target_params=rnp_params)
    return model, guides.make(cfg.guide, cfg, model, example=example, dataset_size=dataset_size)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when there is one, else the CPU; asking for a missing CUDA is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"unknown device {str(device)!r}; use auto, cpu or cuda") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available here; "
                          "use --device cpu (or auto)")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {str(device)!r}; use auto, cpu or cuda")
    return device


def library_version() -> str:
    try:
        return metadata.version("rnp-pyro")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write to a temporary file beside ``path``, then rename: a reader never sees half a file."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents on the CPU, or a CheckpointError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train one with `rnp-pyro fit`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file, with long texts
        raise CheckpointError(f"cannot read checkpoint {path}: the file is damaged "
                              f"({type(err).__name__}); delete it and train again") from err
    missing = [key for key in _CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{path} is not an rnp-pyro checkpoint "
                              f"(it lacks {', '.join(missing)})")
    return state


def checkpoint_config(state: dict, path: str | Path) -> RNPConfig:
    """The config a checkpoint was trained with."""
    try:
        return RNPConfig.from_dict(state["config"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"the config stored in {path} is not valid here "
                              f"(written by rnp-pyro {state.get('version', '?')}): {err}") from err


def config_changes(saved: RNPConfig, asked: RNPConfig) -> list[str]:
    """``field (saved vs asked)`` for each field in which two configs differ, leaving out
    the performance switches (PERFORMANCE_FIELDS): they are not part of a run's identity."""
    return [f"{f.name} ({getattr(saved, f.name)!r} vs {getattr(asked, f.name)!r})"
            for f in dataclasses.fields(saved)
            if f.name not in PERFORMANCE_FIELDS and getattr(saved, f.name) != getattr(asked, f.name)]


def load_weights(module: torch.nn.Module, weights: dict, what: str, path: Path) -> None:
    """``module.load_state_dict`` with a clear error when the shapes or names do not fit."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"the {what} weights in {path} do not fit the {what} built from its "
                              f"config; was it written by another version of rnp-pyro?") from err


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every row of a run's ``metrics.csv`` as numbers ([] when there is none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        return [{key: int(value) if key in _COUNT_COLUMNS else float(value)
                 for key, value in row.items()} for row in csv.DictReader(file)]


def last_metrics(run_dir: str | Path) -> dict:
    """The last row of ``metrics.csv`` as numbers ({} when there is none)."""
    rows = read_metrics(run_dir)
    return rows[-1] if rows else {}


# ---------------------------------------------------------------------------- loading
def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """The trained model and guide of a run folder, in eval mode on ``device``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no run folder at {path}")
    device = resolve_device(device)
    cfg = RNPConfig.load(path / CONFIG_FILE)
    state = read_checkpoint(path / CHECKPOINT_FILE)
    saved = checkpoint_config(state, path / CHECKPOINT_FILE)
    changes = config_changes(saved, cfg)
    if changes:
        raise CheckpointError(
            f"{path / CHECKPOINT_FILE} was trained with another config than {path / CONFIG_FILE} "
            f"(checkpoint vs config.json): {', '.join(changes)}; restore config.json or "
            f"train again")
    return trained_run(cfg, state, path, device, metrics=last_metrics(path))


def trained_run(cfg: RNPConfig, state: dict, path: Path, device: torch.device,
                metrics: dict) -> Run:
    """A Run built from ``cfg`` with the ``model`` and ``guide`` weights (and ``epoch``,
    ``step``, and ``train_size`` for per-image guides) of ``state``, in eval mode on
    ``device``; ``path`` is named in errors."""
    example = torch.zeros(1, *cfg.image_shape)
    model, guide = build(cfg, example=example, dataset_size=state.get("train_size"))
    load_weights(model, state["model"], "model", path)
    load_weights(guide, state["guide"], "guide", path)
    model.to(device).eval()
    guide.to(device).eval()
    return Run(model, guide, cfg, path, epoch=int(state["epoch"]), step=int(state["step"]),
               metrics=metrics)
