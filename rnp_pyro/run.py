"""The one door to run folders: every file name in them, building and loading runs,
a run's images, guides for a run, and what is computed from a run folder.

A run folder holds ``config.json`` (written when training starts),
``checkpoint.pt`` (replaced atomically after every epoch), ``metrics.csv``,
``tensorboard/``, the end-of-training figures, and what the commands on a trained
run write: ``evaluation.json``, ``ppc/`` and ``figures/``. Whatever moment a run
stops at, the folder holds a complete, readable state. Everything else in the
package works on models, guides, tensors and trees.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import pickle
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from . import data, guides
from .baselines import ConvVAE
from .config import RunConfig
from .errors import CheckpointError, ConfigError, check_count
from .metrics import evaluate
from .infer.fitting import fit_guide, guide_args
from .model import RNP
from .modes import evaluating

log = logging.getLogger("rnp_pyro")

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
RECONSTRUCTIONS_FILE = "reconstructions.png"  # the end-of-training figures
SAMPLES_FILE = "samples.png"
EVALUATION_FILE = "evaluation.json"  # what ``evaluate_run`` writes
PER_IMAGE_FILE = "evaluation_per_image.csv"
PPC_DIR = "ppc"  # what ``ppc_run`` writes
FIGURES_DIR = "figures"  # what ``figures_run`` writes
LOCK_FILE = "fit.lock"  # held by the one fit writing the folder
PARTIAL_SUFFIX = ".partial"  # a checkpoint being written
RUN_FILES = (CONFIG_FILE, CHECKPOINT_FILE, CHECKPOINT_FILE + PARTIAL_SUFFIX, METRICS_FILE,
             TENSORBOARD_DIR, RECONSTRUCTIONS_FILE, SAMPLES_FILE, EVALUATION_FILE,
             PER_IMAGE_FILE, PPC_DIR, FIGURES_DIR, LOCK_FILE)

# the ELBO in nats per image, of the training steps since the last row and of the test set
METRICS_COLUMNS = ("epoch", "step", "train_elbo", "test_elbo", "test_mse", "lr", "skipped_steps",
                   "seconds")
_COUNT_COLUMNS = ("epoch", "step", "skipped_steps")
_CHECKPOINT_KEYS = ("model", "guide", "optimizer", "scheduler", "epoch", "step", "epoch_step",
                    "skipped_steps", "seconds", "seed", "rng", "config")
FIT_STEPS = 300  # steps that fit a per-image guide to test images
ENCODES_PER_CHUNK = 4000  # images encoded at once when starting per-image guides


@dataclass
class Run:
    """A trained model and guide with the config they were built from and their folder."""

    model: torch.nn.Module
    guide: torch.nn.Module
    config: RunConfig
    path: Path
    epoch: int = 0  # epochs completed
    step: int = 0  # optimisation steps taken (skipped ones included)
    metrics: dict = field(default_factory=dict)  # the last row of metrics.csv


# ---------------------------------------------------------------------------- building
def build(config: RunConfig, example: torch.Tensor | None = None,
          dataset_size: int | None = None):
    """A fresh (model, guide) pair for ``config``: the RNP or the matched ConvVAE baseline.

    Per-image guides lay out their parameters for ``dataset_size`` images from an
    ``example`` batch.
    """
    tree = config.model
    if tree.kind == "rnp":
        model = RNP(tree, **config.speed.model_options())
    else:
        # the baseline gets as many parameters as the RNP it is compared with
        rnp_params = sum(p.numel() for p in RNP(tree.replace(kind="rnp")).parameters())
        model = ConvVAE(tree, target_params=rnp_params)
    guide = guides.build(config.guide, model, example=example, dataset_size=dataset_size,
                         bf16_encoder=config.speed.bf16_encoder)
    return model, guide


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


# ---------------------------------------------------------------------------- files
def read_config(run_dir: str | Path) -> RunConfig:
    """The config a run folder was started with."""
    return RunConfig.load(Path(run_dir) / CONFIG_FILE)


def write_config(run_dir: Path, config: RunConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / CONFIG_FILE)


def save_checkpoint(run_dir: str | Path, state: dict) -> None:
    """Write to a temporary file beside the checkpoint, then rename: a reader never sees
    half a file."""
    path = Path(run_dir) / CHECKPOINT_FILE
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(partial, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


@contextlib.contextmanager
def writing(run_dir: str | Path, *, overwrite: bool = False):
    """Hold ``run_dir`` as the one fit that writes it, for the ``with`` block.

    The folder must be new, empty, or a run's (its config.json readable); a run's is
    emptied of the run's own files first when ``overwrite``. Files a user put there are
    never touched. A lock file refuses a second fit while this one lives; a lock left by
    a process that is gone is taken over. A checkpoint half written by a killed run is
    removed.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file, not a folder; choose a folder")
    names = {path.name for path in run_dir.iterdir()} if run_dir.is_dir() else set()
    names -= {LOCK_FILE, CHECKPOINT_FILE + PARTIAL_SUFFIX}  # what a stopped fit may leave
    if names and not _is_run(run_dir):
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        raise ConfigError(f"{run_dir} holds files that are not a run's ({shown}); a run is "
                          f"written into a new or empty folder: choose another --out")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = run_dir / LOCK_FILE
        descriptor = _take_lock(lock)
    except OSError as err:
        raise ConfigError(f"cannot write the run folder {run_dir}: {err.strerror or err}; "
                          f"choose another --out") from err
    try:
        if overwrite:
            for name in RUN_FILES:
                if name != LOCK_FILE:
                    _remove(run_dir / name)
        _remove(run_dir / (CHECKPOINT_FILE + PARTIAL_SUFFIX))
        yield run_dir
    finally:
        os.close(descriptor)
        lock.unlink(missing_ok=True)
        if created and not any(run_dir.iterdir()):  # a fit that failed before writing
            run_dir.rmdir()


def _is_run(run_dir: Path) -> bool:
    """Whether a folder holds a run: a config.json of rnp-pyro's."""
    try:
        read_config(run_dir)
    except ConfigError:
        return False
    return True


def _take_lock(lock: Path) -> int:
    """Create the lock file holding this process's id, or raise if a live process has it."""
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and _alive(holder):
                raise ConfigError(f"another fit (process {holder}) is writing {lock.parent}; wait "
                                  f"for it to end, or choose another --out") from None
            lock.unlink(missing_ok=True)  # left by a process that is gone
            continue
        os.write(descriptor, str(os.getpid()).encode())
        return descriptor
    raise ConfigError(f"cannot take the lock {lock}; remove it if no fit is running")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def has_checkpoint(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CHECKPOINT_FILE).exists()


def read_checkpoint(run_dir: str | Path) -> dict:
    """The contents of a run folder's checkpoint on the CPU, or a CheckpointError saying
    what is wrong."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train one with `rnp-pyro fit`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file, with long texts
        if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in str(err):
            raise CheckpointError(f"{path} holds objects other than tensors and numbers, which "
                                  f"could run code when loaded; rnp-pyro does not load it: use "
                                  f"a checkpoint that rnp-pyro wrote") from err
        raise CheckpointError(f"cannot read checkpoint {path}: the file is damaged "
                              f"({type(err).__name__}); delete it and train again") from err
    missing = [key for key in _CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{path} is not an rnp-pyro checkpoint "
                              f"(it lacks {', '.join(missing)})")
    return state


def checkpoint_config(state: dict, run_dir: str | Path) -> RunConfig:
    """The config a checkpoint was trained with."""
    try:
        return RunConfig.from_dict(state["config"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"the config stored in {Path(run_dir) / CHECKPOINT_FILE} is not "
                              f"valid here (written by rnp-pyro {state.get('version', '?')}): "
                              f"{err}") from err


def check_resumable(state: dict, config: RunConfig, seed: int, run_dir: str | Path) -> None:
    """A run resumes only with the settings it was started with (performance switches
    aside)."""
    changes = checkpoint_config(state, run_dir).differences(config)
    if state["seed"] != seed:
        changes.append(f"seed ({state['seed']!r} vs {seed!r})")
    if changes:
        raise CheckpointError(f"{Path(run_dir) / CHECKPOINT_FILE} was trained with other "
                              f"settings (saved vs asked): {', '.join(changes)}; resume with the "
                              f"same settings, or choose another --out for a new run")


def load_weights(module: torch.nn.Module, weights: dict, what: str, source: str | Path) -> None:
    """``module.load_state_dict`` with a clear error when the shapes or names do not fit."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"the {what} weights in {source} do not fit the {what} built from "
                              f"its config; was it written by another version of rnp-pyro?"
                              ) from err


def read_metrics(run_dir: str | Path, until: int | None = None) -> list[dict]:
    """The rows of a run's ``metrics.csv`` as numbers ([] when there is none), up to step
    ``until`` if given. A damaged row (a cut line, a stray edit) is reported and left out.
    Files written before the train ELBO had its sign give it the ELBO's."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as file:
        for number, row in enumerate(csv.DictReader(file), start=2):
            if "train_loss" in row:  # older files: the loss, -ELBO
                loss = row.pop("train_loss")
                row["train_elbo"] = str(-float(loss)) if _is_number(loss) else loss
            try:
                parsed = {key: int(row[key]) if key in _COUNT_COLUMNS else float(row[key])
                          for key in METRICS_COLUMNS}
            except (KeyError, TypeError, ValueError):
                log.warning(f"{path}, line {number}: a damaged row, left out")
                continue
            if until is None or parsed["step"] <= until:
                rows.append(parsed)
    return rows


def last_metrics(run_dir: str | Path, until: int | None = None) -> dict:
    """The last row of ``metrics.csv`` (up to step ``until``) as numbers ({} when none)."""
    rows = read_metrics(run_dir, until)
    return rows[-1] if rows else {}


def _is_number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def start_metrics(run_dir: Path, keep_until: int | None) -> None:
    """metrics.csv with its header and, when resuming, the rows up to the checkpoint's step.

    Rows written after the last checkpoint (a run stopped between the two writes)
    are dropped, as the resumed run writes them again.
    """
    path = run_dir / METRICS_FILE
    rows = read_metrics(run_dir, until=keep_until) if keep_until is not None else []
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, METRICS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def append_metrics(run_dir: Path, row: dict) -> None:
    """One row, on disk before the checkpoint it belongs to is written."""
    with open(run_dir / METRICS_FILE, "a", newline="") as file:
        csv.DictWriter(file, METRICS_COLUMNS).writerow(row)
        file.flush()
        os.fsync(file.fileno())


def tensorboard_dir(run_dir: Path) -> Path:
    return run_dir / TENSORBOARD_DIR


# ---------------------------------------------------------------------------- loading
def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """The trained model and guide of a run folder, in eval mode on ``device``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no run folder at {path}")
    device = resolve_device(device)
    config = read_config(path)
    state = read_checkpoint(path)
    changes = checkpoint_config(state, path).differences(config)
    if changes:
        raise CheckpointError(
            f"{path / CHECKPOINT_FILE} was trained with another config than {path / CONFIG_FILE} "
            f"(checkpoint vs config.json): {', '.join(changes)}; restore config.json or "
            f"train again")
    return trained_run(config, state, path, device,
                       metrics=last_metrics(path, until=int(state["step"])))


def trained_run(config: RunConfig, state: dict, path: Path, device: torch.device,
                metrics: dict) -> Run:
    """A Run built from ``config`` with the ``model`` and ``guide`` weights (and ``epoch``,
    ``step``, and ``train_size`` for per-image guides) of ``state``, in eval mode on
    ``device``; ``path`` is named in errors."""
    example = torch.zeros(1, *config.model.image_shape)
    model, guide = build(config, example=example, dataset_size=state.get("train_size"))
    load_weights(model, state["model"], "model", path)
    load_weights(guide, state["guide"], "guide", path)
    model.to(device).eval()
    guide.to(device).eval()
    return Run(model, guide, config, path, epoch=int(state["epoch"]), step=int(state["step"]),
               metrics=metrics)


# ---------------------------------------------------------------------------- a run's images
def run_images(config: RunConfig, *, train: bool, limit: int | None = None,
               data_dir: str | Path | None = None, device: str | torch.device = "cpu",
               given: data.ImageSet | None = None) -> torch.Tensor:
    """The images a run trains (``train``) or is judged on: its dataset's split (or the
    ``given`` set) under its class filters, the first ``limit`` of them, checked
    against its image size and channels, on ``device``."""
    tree = config.model
    if given is None:
        given = data.load_images(config.data.dataset, train=train, data_dir=data_dir,
                                 image_size=tree.image_size, channels=tree.channels)
    images = given.filter_classes(config.data.classes, config.data.exclude_classes)
    if limit is not None:
        images = images.subset(limit)
    data.check_images(images.images, channels=tree.channels, image_size=tree.image_size)
    return images.images.to(device)


def test_images(config: RunConfig, *, limit: int | None = None,
                data_dir: str | Path | None = None,
                device: str | torch.device = "cpu") -> torch.Tensor:
    """The test images a run is judged on (:func:`run_images` of the test split)."""
    return run_images(config, train=False, limit=limit, data_dir=data_dir, device=device)


# ---------------------------------------------------------------------------- guides for a run
def guide_for(run: Run, images: torch.Tensor, name: str | None = None, *,
              fit_steps: int = FIT_STEPS, **fit_options):
    """The guide ``name`` (default: the run's) ready for ``images``, beside the run's
    trained guide; and what fitting it took.

    The trained guide serves as it is when it is amortized and of that kind. A fresh
    amortized guide whose only networks are an encoder takes the trained guide's
    encoder. A per-image guide starts each image where the trained guide's encoder
    puts it (when there is one) and is fitted to ``images`` with the model frozen
    (``fit_options`` go to :func:`rnp_pyro.infer.fit_guide`).
    """
    trained = run.config.guide
    name = name or trained.kind
    check_count("fit_steps", fit_steps)
    tree = run.config.model
    images = data.unit_images(images, channels=tree.channels, image_size=tree.image_size)
    if name == trained.kind and not guides.is_per_image(run.guide):
        return run.guide, {}
    config = trained.replace(kind=name)
    if guides.guide_class(name).per_image:
        log.info(f"fitting a {name} guide to {len(images)} images ({fit_steps} steps)")
        fresh = guides.build(config, run.model, example=images, dataset_size=len(images))
        fresh.to(images.device)
        if hasattr(run.guide, "encode"):  # start each image where the trained encoder puts it
            with evaluating(run.guide):
                fresh.start_from(*(torch.cat(part) for part in zip(
                    *(run.guide.encode(x) for x in images.split(ENCODES_PER_CHUNK)))))
        started = time.perf_counter()
        losses = fit_guide(run.model, fresh, images, steps=fit_steps, **fit_options)
        return fresh, {"fit_steps": fit_steps, "fit_final_loss": losses[-1],
                       "fit_seconds": round(time.perf_counter() - started, 3)}
    fresh = guides.build(config, run.model)
    encoder = getattr(run.guide, "encoder", None)
    try:
        if encoder is None:
            raise RuntimeError
        fresh.load_state_dict({f"encoder.{key}": value
                               for key, value in encoder.state_dict().items()})
    except RuntimeError:
        raise ConfigError(f"a {name!r} guide cannot be taken from a run trained with the "
                          f"{trained.kind!r} guide: it has networks of its own to train; "
                          f"choose a per-image guide, or one whose only network is the "
                          f"trained encoder") from None
    return fresh.to(images.device), {}


def run_on_test_images(run_dir: str | Path, *, guide: str | None = None,
                       limit: int | None = None, fit_steps: int = FIT_STEPS,
                       data_dir: str | Path | None = None, device: str = "auto"):
    """A run folder loaded on ``device``, its first ``limit`` test images, and the guide
    named ``guide`` (default: the run's) made ready for them by :func:`guide_for`.

    Returns (run, images, ready guide, what fitting the guide took).
    """
    device = resolve_device(device)
    run = load_run(run_dir, device=device)
    images = test_images(run.config, limit=limit, data_dir=data_dir, device=device)
    chosen, fitted = guide_for(run, images, guide, fit_steps=fit_steps)
    return run, images, chosen, fitted


# ---------------------------------------------------------------------------- what a run writes
def save_figures(run_dir: str | Path, model, guide, images: torch.Tensor,
                 n: int = 8) -> list[Path]:
    """The end-of-training figures: the parse of the guide's means for the first ``n``
    images (``reconstructions.png``) and ``n`` prior samples (``samples.png``).

    ``images`` must be on the device of the model and guide; a per-image guide must
    have been fitted to them (as its dataset).
    """
    from . import viz

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    indices = torch.arange(min(n, len(images)), device=images.device)
    shown = images[indices]
    with evaluating(model, guide):
        parsed = guides.reconstruct(model, guide, shown, *guide_args(guide, indices, len(images)))
        sampled = model.sample(n)
    return [viz.parse_figure(parsed, shown, run_dir / RECONSTRUCTIONS_FILE, max_images=n),
            viz.samples_figure(sampled, run_dir / SAMPLES_FILE)]


def evaluate_run(run_dir: str | Path, *, guide: str | None = None, iwae_samples: int = 1,
                 fit_steps: int = FIT_STEPS, limit: int | None = None,
                 data_dir: str | Path | None = None, device: str = "auto") -> dict:
    """Evaluate a run folder on its test set; also written to ``evaluation.json``, with
    each test image's ELBO and bound (nats) in ``evaluation_per_image.csv``.

    ``guide`` (default: the run's own) may name another guide (see :func:`guide_for`):
    per-image guides are fitted to the test images first, ``fit_steps`` steps with
    the model frozen. ``limit`` keeps the first images of the test set only.
    """
    run_dir = Path(run_dir)
    run, images, chosen, fitted = run_on_test_images(
        run_dir, guide=guide, limit=limit, fit_steps=fit_steps, data_dir=data_dir, device=device)
    log.info(f"evaluating on {len(images)} test images"
             + (f", {iwae_samples} samples each" if iwae_samples > 1 else ""))
    config = run.config
    metrics = {"dataset": config.data.dataset, "model": config.model.kind,
               "guide": guide or config.guide.kind, "epoch": run.epoch, "step": run.step,
               **fitted,
               **evaluate(run.model, chosen, images, iwae_samples=iwae_samples, per_image=True)}
    per_image = metrics.pop("per_image")
    with open(run_dir / PER_IMAGE_FILE, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "elbo", "log_likelihood_bound"])
        writer.writerows(zip(range(len(images)), per_image["elbo"],
                             per_image["log_likelihood_bound"]))
    (run_dir / EVALUATION_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def ppc_run(run_dir: str | Path, *, guide: str | None = None, images: int = 64,
            samples: int = 100, seed: int = 0, fit_steps: int = FIT_STEPS,
            data_dir: str | Path | None = None, device: str = "auto") -> dict:
    """Posterior predictive checks of a run on its first ``images`` test images.

    Writes to RUN_DIR/ppc/: ``statistics.png`` (ArviZ's PPC plot per statistic),
    ``images.png`` (observed, mean canvas and replicated images), ``p_values.csv``
    (per image and statistic) and ``summary.json`` (returned, see
    :func:`rnp_pyro.ppc.summarise`). ``guide`` and ``fit_steps`` are as in
    :func:`evaluate_run`.
    """
    from . import ppc

    run_dir = Path(run_dir)
    run, x, chosen, _ = run_on_test_images(run_dir, guide=guide, limit=images,
                                           fit_steps=fit_steps, data_dir=data_dir, device=device)
    args = guide_args(chosen, torch.arange(len(x), device=x.device), len(x))
    log.info(f"drawing {samples} replicas of each of {len(x)} test images")
    check = ppc.posterior_predictive(run.model, chosen, x, *args, num_samples=samples, seed=seed)
    out = run_dir / PPC_DIR
    out.mkdir(exist_ok=True)
    check.plot_statistics(out / "statistics.png")
    check.plot_images(out / "images.png")
    check.write_p_values(out / "p_values.csv")
    summary = {"dataset": run.config.data.dataset, "guide": guide or run.config.guide.kind,
               "images": len(x), "samples": samples, "seed": seed,
               "statistics": check.summary()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def figures_run(run_dir: str | Path, *, images: int = 500, clusters: int = 10, seed: int = 0,
                transfer: dict | None = None, data_dir: str | Path | None = None,
                device: str = "auto") -> list[Path]:
    """The papers' figures of a trained run (:func:`rnp_pyro.viz.paper_figures`) from its
    first ``images`` test images, as PNGs in RUN_DIR/figures/; the same ``seed`` gives
    the same figures.

    ``transfer`` ({label: run folder} of runs adapted from this one to a held-out
    class) adds transfer.png (Fig. 3B): test images of that class and their
    reconstructions by this run (unadapted) and by each adapted run.
    """
    from . import viz

    if not 2 <= clusters <= images:
        raise ConfigError(f"{clusters} clusters of the programs of {images} images: ask for "
                          f"from 2 to as many clusters as images (--clusters, --images)")
    run_dir = Path(run_dir)
    run, x, guide, _ = run_on_test_images(run_dir, limit=images, data_dir=data_dir,
                                          device=device)
    out = run_dir / FIGURES_DIR
    log.info(f"parsing {len(x)} test images and drawing the figures into {out}")
    paths = viz.paper_figures(run.model, guide, x, out, clusters=clusters, seed=seed)
    if transfer:
        adapted = {label: load_run(folder, device=x.device) for label, folder in transfer.items()}
        shown = test_images(next(iter(adapted.values())).config, limit=8, data_dir=data_dir,
                            device=x.device)
        columns = {"input": shown}
        for label, each in {"unadapted": run, **adapted}.items():
            ready, _ = guide_for(each, shown)
            columns[label] = viz.parse_trees(each.model, ready, shown).canvas
        paths.append(viz.columns_figure(columns, out / "transfer.png", zoom=3))
    return paths
