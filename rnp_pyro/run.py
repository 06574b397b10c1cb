"""Runs: built, trained, loaded and judged. What the command line and the shipped
models are made of.

:func:`fit` sets a run up (its folder, images, model and guide, a start from another
run) and hands it to the training loop (:class:`rnp_pyro.train.Training`);
:func:`load_run` rebuilds a trained run from its folder; :func:`guide_for` readies a
guide for a run's images; :func:`evaluate_run`, :func:`ppc_run` and
:func:`figures_run` write what they find into the run's folder. The folder's files
themselves are :mod:`rnp_pyro.folder`'s; everything below this module works on
models, guides, tensors and trees.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch

from . import data, distributed, folder, guides
from .baselines import ConvVAE
from .config import RunConfig
from .errors import CheckpointError, ConfigError, check_count
from .infer.fitting import FIT_STEPS, guide_args, guide_for_images
from .metrics import check_iwae_samples, evaluate, explained_per_level, kl_per_level
from .model import RNP, subtree_weights
from .modes import evaluating, own_random_stream
from .train import CHECKPOINT_EVERY, Training, stream_seed

log = logging.getLogger("rnp_pyro")
FIGURE_IMAGES = 8  # test images in a run's end-of-training figures
PRETRAINED = "pretrained:"  # a run reference naming a shipped model: pretrained:fashion
WEIGHTS_DIR = Path(__file__).parent / "weights"  # the shipped models, NAME.pt and NAME.md


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


# ---------------------------------------------------------------------------- training
def fit(config: RunConfig, out: str | Path, *, epochs: int | None = None,
        max_steps: int | None = None, device: str = "auto", seed: int = 0,
        resume: bool = False, data_dir: str | Path | None = None, progress: bool = True,
        train_set: data.ImageSet | None = None, test_set: data.ImageSet | None = None,
        checkpoint_every: int | None = CHECKPOINT_EVERY, overwrite: bool = False,
        eval_limit: int | None = None) -> Run:
    """Train ``config``'s model and guide into the folder ``out`` and return the run.

    ``epochs`` (default ``config.train.epochs``) and ``max_steps`` bound the whole run,
    resumed parts included, so resuming with a larger budget trains on. Steps count
    batches; a step whose loss or gradient is not finite is skipped (the weights and
    the optimizer never see it) and counted in ``skipped_steps``. The datasets come
    from ``config.data`` unless ``train_set``/``test_set`` are given; either way only
    its classes are kept.

    Transfer: ``config.train.init_from`` (a run folder) gives a new run its starting
    weights, and the parts named in ``config.train.freeze`` are not trained.

    A checkpoint is written after every epoch and every ``checkpoint_every`` steps
    (None: only after epochs). SIGTERM or SIGINT (Ctrl-C) stops the run at the next
    step boundary with a checkpoint and raises :class:`rnp_pyro.errors.RunStopped`; so
    many non-finite steps in a row (MAX_SKIPPED_IN_A_ROW) stop it with a checkpoint
    and :class:`rnp_pyro.errors.TrainingDiverged`.

    After each epoch the model is evaluated on the test images (the metrics.csv row);
    ``eval_limit`` keeps the first N of them, and 0 skips the evaluation (the row's
    test columns are NaN; the end-of-training figures still show a few test images).

    ``out`` must be new, empty, or a run's folder; one fit writes it at a time, and
    files a user put there are never touched. ``overwrite`` replaces the run there;
    ``resume`` with no checkpoint there yet starts afresh.

    Started by torchrun in several processes, each trains on its share of every
    batch of ``batch_size`` per process (:mod:`rnp_pyro.distributed`); rank 0 writes
    the folder. A run resumes on any number of processes.
    """
    if not str(out).strip():
        raise ConfigError("the run folder (--out) must be named; got an empty path")
    out = Path(out).absolute()
    for name, value in (("epochs", epochs), ("max_steps", max_steps),
                        ("checkpoint_every", checkpoint_every)):
        if value is not None:
            check_count(name, value)
    if eval_limit not in (None, 0):
        check_count("eval_limit", eval_limit)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be a whole number from 0 to 2**32 - 1, got {seed!r}")
    place, device = distributed.join(distributed.resolve_device(device))
    state = folder.checkpoint_to_resume(out, resume=resume, overwrite=overwrite)
    config = config.for_fit(out, epochs=epochs, parallel=place.parallel, checkpoint=state,
                            seed=seed)
    main = place.is_main
    with folder.writing(out, overwrite=overwrite) if main else contextlib.nullcontext():
        train_images = run_images(config, train=True, data_dir=data_dir, given=train_set,
                                  device=device)
        test_images = run_images(config, train=False, data_dir=data_dir, given=test_set,
                                 limit=FIGURE_IMAGES if eval_limit == 0 else eval_limit,
                                 device=device)
        if main:
            folder.write_config(out, config)
        model, guide = _starting_weights(config, state, seed, place, train_images)
        training = Training(config, model.to(device), guide.to(device), train_images,
                            test_images, out, seed, place, checkpoint_every,
                            evaluates=eval_limit != 0)
        if state is not None:
            training.restore(state)
        with folder.logging_to(out) if main else contextlib.nullcontext():
            training.run(config.train.epochs, max_steps, progress and main)
            if main:
                save_figures(out, model, training.test_guide(), test_images)
        distributed.barrier(place)
        model.eval()
        guide.eval()
        return Run(model, guide, config, out, epoch=training.epoch, step=training.step,
                   metrics=folder.last_metrics(out))


def _starting_weights(config: RunConfig, state: dict | None, seed: int,
                      place: distributed.Place, train_images: torch.Tensor):
    """A new run's model and guide, seeded, from another run's weights where
    ``init_from`` says so (a resumed run's come from its checkpoint later); then each
    process's own random stream."""
    pyro.set_rng_seed(seed)
    model, guide = build(config, example=train_images, dataset_size=len(train_images))
    if state is None and config.train.init_from:
        _init_from(model, guide, config.train.init_from, config.train.truncate,
                   config.train.fresh)
    if place.parallel:  # the same weights everywhere, but each rank its own draws
        pyro.set_rng_seed(stream_seed(seed, place.rank))
    return model, guide


def fit_depthwise(config: RunConfig, out: str | Path, **options) -> Run:
    """Train the tree one depth at a time, as the PNAS paper suggests: first the tree
    cut below its first program level, then each deeper tree starting from the one
    before (its shared hypernetworks and encoder carry over whole), into
    ``out/depth-1``, ``out/depth-2``, ...; the deepest run is returned.

    ``options`` are :func:`fit`'s (each depth gets the same budget); a stopped schedule
    continues where it stopped when run again with ``resume=True``.
    """
    if not config.model.shared_hypernetworks:
        raise ConfigError("depth-wise training carries the hypernetworks from one depth to the "
                          "next, so they must be shared by every level "
                          "(shared_hypernetworks=True)")
    if config.train.init_from:
        raise ConfigError("depth-wise training starts each depth from the one before: leave "
                          "out init_from")
    taus, source, trained = config.model.taus, None, None
    for depth in range(1, len(taus) + 1):
        stage = config.replace(taus=taus[:depth], init_from=source)
        stage_dir = Path(out) / f"depth-{depth}"
        log.info(f"depth {depth} of {len(taus)}: taus {taus[:depth]}, into {stage_dir}")
        trained = fit(stage, stage_dir, **options)
        source = str(trained.path)
    return trained


def fit_in_processes(processes: int, config: RunConfig, out: str | Path, **options) -> Run:
    """:func:`fit` data-parallel in ``processes`` local processes (one per GPU on CUDA,
    gloo on CPUs), started through torchrun's launcher; the run as loaded from ``out``.

    ``options`` are :func:`fit`'s. One process is plain :func:`fit`.
    """
    if processes == 1:
        return fit(config, out, **options)
    if distributed.launched_world_size() > 1:
        raise ConfigError("this process is one of several torchrun started; torchrun's "
                          "--nproc-per-node sets the number of processes, so leave out --devices")
    device = distributed.resolve_device(options.get("device", "auto"))
    if device.type == "cuda" and processes > torch.cuda.device_count():
        raise ConfigError(f"{processes} processes need as many GPUs; this machine has "
                          f"{torch.cuda.device_count()}")
    out = Path(out).absolute()
    state = folder.checkpoint_to_resume(out, resume=options.get("resume", False),
                                        overwrite=options.get("overwrite", False))
    config = config.for_fit(out, parallel=True, checkpoint=state, seed=options.get("seed", 0))
    distributed.launch(processes, _fit_in_rank, config, out, options)
    return load_run(out, device=options.get("device", "auto"))


def _fit_in_rank(config: RunConfig, out: str | Path, options: dict) -> None:
    from torch.distributed.elastic.multiprocessing.errors import record  # reports the error

    record(fit)(config, out, **options)


def _init_from(model, guide, run_dir, truncate: int = 0, fresh: tuple[str, ...] = ()) -> None:
    """Start from the weights in the checkpoint of the run in ``run_dir`` (same
    architecture), but for the parts named in ``fresh``; or from those of its tree below
    depth ``truncate`` with the guide left fresh."""
    state = folder.read_checkpoint(run_dir)
    theirs, ours = RunConfig.from_checkpoint(state, run_dir), model.config
    grows = (len(theirs.model.taus) < len(ours.taus)
             and ours.taus[:len(theirs.model.taus)] == theirs.model.taus
             and ours.shared_hypernetworks and theirs.model == ours.replace(taus=theirs.model.taus))
    if grows:  # a shallower tree of the same networks: one depth more (depth-wise training)
        folder.load_weights(model, state["model"], "model", run_dir)
        folder.load_weights(guide, state["guide"], "guide", run_dir)
        return
    if not truncate and theirs.model != ours:
        mine, other = dataclasses.asdict(ours), dataclasses.asdict(theirs.model)
        changed = [f"{name} ({other[name]!r} there, {mine[name]!r} here)" for name in mine
                   if mine[name] != other[name]]
        raise ConfigError(f"--init-from {run_dir} holds another model: {', '.join(changed)}; "
                          f"start from a run of the same model settings")
    if truncate:
        wanted = theirs.model.taus[truncate:]
        if ours.taus != wanted:
            raise ConfigError(f"cutting {truncate} program level(s) off {run_dir} (taus "
                              f"{theirs.model.taus}) leaves taus {wanted}, but this run "
                              f"has {ours.taus}; build its settings with "
                              f"presets.truncation")
        below = subtree_weights(state["model"], theirs.model.shared_hypernetworks, truncate)
        folder.load_weights(model, below, "model", run_dir)
        return  # a new guide learns to drive the subtree
    weights = {key: value for key, value in state["model"].items()
               if key.split(".")[0] not in fresh}
    folder.load_weights(model, {**model.state_dict(), **weights}, "model", run_dir)
    theirs_per_image = guides.guide_class(theirs.guide.kind).per_image
    if guides.is_per_image(guide) or theirs_per_image or "encoder" in fresh:
        return  # per-image parameters belong to the other run's images
    folder.load_weights(guide, state["guide"], "guide", run_dir)


# ---------------------------------------------------------------------------- building and loading
def build(config: RunConfig, example: torch.Tensor | None = None,
          dataset_size: int | None = None):
    """A fresh (model, guide) pair for ``config``: the RNP or the matched ConvVAE baseline.

    Per-image guides lay out their parameters for ``dataset_size`` images from an
    ``example`` batch.
    """
    tree = config.model
    if tree.kind == "rnp":
        speed = config.speed
        model = RNP(tree, materialize_weights=speed.materialize_weights,
                    bf16_decoder=speed.bf16_decoder, compile_programs=speed.compile_programs)
    else:
        # the baseline gets as many parameters as the RNP it is compared with
        rnp_params = sum(p.numel() for p in RNP(tree.replace(kind="rnp")).parameters())
        model = ConvVAE(tree, target_params=rnp_params)
    guide = guides.build(config.guide, model, example=example, dataset_size=dataset_size,
                         bf16_encoder=config.speed.bf16_encoder)
    return model, guide


def read_config(run_dir: str | Path) -> RunConfig:
    """The config a run folder was started with."""
    return RunConfig.load(Path(run_dir) / folder.CONFIG_FILE)


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """The trained model and guide of a run folder, in eval mode on ``device``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no run folder at {path}")
    device = distributed.resolve_device(device)
    config = read_config(path)
    state = folder.read_checkpoint(path)
    changes = RunConfig.from_checkpoint(state, path).differences(config)
    if changes:
        raise CheckpointError(
            f"{path / folder.CHECKPOINT_FILE} was trained with another config than "
            f"{path / folder.CONFIG_FILE} (checkpoint vs config.json): {', '.join(changes)}; "
            f"restore config.json or train again")
    return trained_run(config, state, path, device,
                       metrics=folder.last_metrics(path, until=int(state["step"])))


def open_run(reference: str | Path, device: str | torch.device = "cpu") -> Run:
    """The run a command names: a run folder, or ``pretrained:NAME`` for a model shipped
    with the package (:func:`rnp_pyro.pretrained`), in eval mode on ``device``."""
    name = _pretrained_name(reference)
    return load_run(reference, device=device) if name is None else pretrained(name, device)


def output_folder(reference: str | Path, out: str | Path | None = None) -> Path:
    """Where a command on the run ``reference`` writes: ``out`` if given, else the run
    folder itself, or ``runs/pretrained-NAME`` for a shipped model."""
    if out is not None:
        return Path(out)
    name = _pretrained_name(reference)
    return Path(reference) if name is None else Path("runs") / f"pretrained-{name}"


def _pretrained_name(reference: str | Path) -> str | None:
    text = str(reference)
    return text.removeprefix(PRETRAINED) if text.startswith(PRETRAINED) else None


def names(folder: str | Path = WEIGHTS_DIR) -> list[str]:
    """The pretrained models this installation has."""
    return sorted(path.stem for path in Path(folder).glob("*.pt"))


def pretrained(name: str = "fashion", device: str = "cpu",
               folder: str | Path = WEIGHTS_DIR) -> Run:
    """The model ``name`` shipped with the package (its model, guide and config), in
    eval mode on ``device``: ``rnp_pyro.pretrained("fashion")``, or ``pretrained:NAME``
    wherever a command takes a run folder. Its model card is ``NAME.md`` beside it.

    ``run.metrics`` holds the run's last metrics row (test MSE and ELBO on the whole
    test set) and ``check_mse``: the MSE per pixel of its first ``check_images`` test
    images, which these weights reproduce to three significant figures.
    """
    path = Path(folder) / f"{name}.pt"
    if not path.is_file():
        raise ConfigError(f"no pretrained model {name!r}; this installation has "
                          f"{', '.join(names(folder)) or 'none'}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    weights = {part: full_precision(state[part]) for part in ("model", "guide")}
    return trained_run(RunConfig.from_dict(state["config"]), {**state, **weights}, path,
                       distributed.resolve_device(device), metrics=state["metrics"])


def trained_run(config: RunConfig, state: dict, path: Path, device: torch.device,
                metrics: dict) -> Run:
    """A Run built from ``config`` with the ``model`` and ``guide`` weights (and ``epoch``,
    ``step``, and ``train_size`` for per-image guides) of ``state``, in eval mode on
    ``device``; ``path`` is named in errors."""
    example = torch.zeros(1, *config.model.image_shape)
    model, guide = build(config, example=example, dataset_size=state.get("train_size"))
    folder.load_weights(model, state["model"], "model", path)
    folder.load_weights(guide, state["guide"], "guide", path)
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
    trained guide; and what fitting it took (see
    :func:`rnp_pyro.infer.fitting.guide_for_images`: per-image guides are fitted to
    ``images`` with the model frozen, amortized ones take the trained encoder)."""
    tree = run.config.model
    images = data.unit_images(images, channels=tree.channels, image_size=tree.image_size)
    return guide_for_images(run.model, run.guide, run.config.guide, images, name,
                            fit_steps=fit_steps, **fit_options)


def run_on_test_images(run_dir: str | Path, *, guide: str | None = None,
                       limit: int | None = None, fit_steps: int = FIT_STEPS,
                       data_dir: str | Path | None = None, device: str = "auto"):
    """A run (a folder or ``pretrained:NAME``, see :func:`open_run`) loaded on
    ``device``, its first ``limit`` test images, and the guide named ``guide``
    (default: the run's) made ready for them by :func:`guide_for`.

    Returns (run, images, ready guide, what fitting the guide took).
    """
    device = distributed.resolve_device(device)
    run = open_run(run_dir, device=device)
    images = test_images(run.config, limit=limit, data_dir=data_dir, device=device)
    chosen, fitted = guide_for(run, images, guide, fit_steps=fit_steps)
    return run, images, chosen, fitted


# ---------------------------------------------------------------------------- what a run writes
def save_figures(run_dir: str | Path, model, guide, images: torch.Tensor,
                 n: int = FIGURE_IMAGES) -> list[Path]:
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
    return [viz.parse_figure(parsed, shown, run_dir / folder.RECONSTRUCTIONS_FILE, max_images=n),
            viz.samples_figure(sampled, run_dir / folder.SAMPLES_FILE)]


def evaluate_run(run_dir: str | Path, *, guide: str | None = None, iwae_samples: int = 1,
                 fit_steps: int = FIT_STEPS, limit: int | None = None, levels: bool = False,
                 data_dir: str | Path | None = None, device: str = "auto",
                 out: str | Path | None = None) -> dict:
    """Evaluate a run (a folder or ``pretrained:NAME``) on its test set; also written to
    ``evaluation.json``, with each test image's ELBO and bound (nats) in
    ``evaluation_per_image.csv``, in ``out`` (default: :func:`output_folder`).

    ``guide`` (default: the run's own) may name another guide (see :func:`guide_for`):
    per-image guides are fitted to the test images first, ``fit_steps`` steps with
    the model frozen. ``limit`` keeps the first images of the test set only.
    ``levels`` adds, for each latent level k, ``kl_z{k}`` (nats per image,
    :func:`rnp_pyro.metrics.kl_per_level`), ``mse_down_to_z{k}`` and
    ``explained_by_z{k}`` (:func:`rnp_pyro.metrics.explained_per_level`).
    """
    check_iwae_samples(iwae_samples)
    run, images, chosen, fitted = run_on_test_images(
        run_dir, guide=guide, limit=limit, fit_steps=fit_steps, data_dir=data_dir, device=device)
    out = _made(output_folder(run_dir, out))
    log.info(f"evaluating on {len(images)} test images"
             + (f", {iwae_samples} samples each" if iwae_samples > 1 else ""))
    config = run.config
    metrics = {"dataset": config.data.dataset, "model": config.model.kind,
               "guide": guide or config.guide.kind, "epoch": run.epoch, "step": run.step,
               **fitted,
               **evaluate(run.model, chosen, images, iwae_samples=iwae_samples, per_image=True)}
    per_image = metrics.pop("per_image")
    if levels:
        kl = kl_per_level(run.model, chosen, images)
        shares = explained_per_level(run.model, chosen, images)
        for level in kl:
            metrics[f"kl_z{level}"] = kl[level]
            metrics[f"mse_down_to_z{level}"] = shares["mse"][level]
            metrics[f"explained_by_z{level}"] = shares["explained"][level]
    with open(out / folder.PER_IMAGE_FILE, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "elbo", "log_likelihood_bound"])
        writer.writerows(zip(range(len(images)), per_image["elbo"],
                             per_image["log_likelihood_bound"]))
    (out / folder.EVALUATION_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def ppc_run(run_dir: str | Path, *, guide: str | None = None, images: int = 64,
            samples: int = 100, seed: int = 0, fit_steps: int = FIT_STEPS,
            data_dir: str | Path | None = None, device: str = "auto",
            out: str | Path | None = None) -> dict:
    """Posterior predictive checks of a run (a folder or ``pretrained:NAME``) on its
    first ``images`` test images.

    Writes to OUT/ppc/ (OUT: ``out``, default :func:`output_folder`): ``statistics.png``
    (ArviZ's PPC plot per statistic), ``images.png`` (observed, mean canvas and
    replicated images), ``p_values.csv`` (per image and statistic) and
    ``summary.json`` (returned, see :func:`rnp_pyro.ppc.summarise`). ``guide`` and
    ``fit_steps`` are as in :func:`evaluate_run`.
    """
    from . import ppc

    run, x, chosen, _ = run_on_test_images(run_dir, guide=guide, limit=images,
                                           fit_steps=fit_steps, data_dir=data_dir, device=device)
    args = guide_args(chosen, torch.arange(len(x), device=x.device), len(x))
    log.info(f"drawing {samples} replicas of each of {len(x)} test images")
    check = ppc.posterior_predictive(run.model, chosen, x, *args, num_samples=samples, seed=seed)
    out = _made(output_folder(run_dir, out) / folder.PPC_DIR)
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
                device: str = "auto", out: str | Path | None = None) -> list[Path]:
    """The papers' figures of a trained run (a folder or ``pretrained:NAME``;
    :func:`rnp_pyro.viz.paper_figures`) from its first ``images`` test images, as PNGs
    in OUT/figures/ (OUT: ``out``, default :func:`output_folder`); the same ``seed``
    gives the same figures.

    ``transfer`` ({label: run folder} of runs adapted from this one to a held-out
    class) adds transfer.png (Fig. 3B): test images of that class and their
    reconstructions by this run (unadapted) and by each adapted run.
    """
    from . import viz

    _check_clusters(clusters, images)
    run, x, guide, _ = run_on_test_images(run_dir, limit=images, data_dir=data_dir,
                                          device=device)
    out = output_folder(run_dir, out) / folder.FIGURES_DIR
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


def sample_run(run_dir: str | Path, *, number: int = 16, seed: int = 0,
               device: str = "auto", out: str | Path | None = None) -> list[Path]:
    """``number`` images drawn from the prior of a run (a folder or ``pretrained:NAME``),
    into OUT/samples/ (OUT: ``out``, default :func:`output_folder`): ``samples.png``
    (the canvases, parts coloured), ``parses.png`` (each sample's parse tree) and
    ``samples.npz`` (:func:`write_tree`: the canvases, latents and actions). The same
    ``seed`` gives the same samples."""
    from . import viz

    check_count("number", number)
    run = open_run(run_dir, device=distributed.resolve_device(device))
    out = output_folder(run_dir, out) / folder.SAMPLES_DIR
    device = next(run.model.parameters()).device
    with own_random_stream(seed, device), torch.no_grad():
        tree = run.model.sample(number)
    log.info(f"drawing {number} prior samples into {out}")
    return [viz.samples_figure(tree, out / folder.SAMPLES_FILE),
            viz.parse_figure(tree, None, out / "parses.png", max_images=number),
            write_tree(tree, out / "samples.npz")]


def reconstruct_run(run_dir: str | Path, images: str | Path, *, clusters: int = 10,
                    seed: int = 0, fit_steps: int = FIT_STEPS, device: str = "auto",
                    out: str | Path | None = None) -> list[Path]:
    """Parse a folder of one's own images with a run (a folder or ``pretrained:NAME``):
    they are read as ``folder:`` data (resized, converted to the model's channels),
    and the papers' figures of them written as ``figures`` writes those of test
    images, with ``reconstructions.npz`` (:func:`write_tree`), into
    OUT/reconstructions/ (OUT: ``out``, default :func:`output_folder`). Per-image
    guides are fitted to the images first (``fit_steps``)."""
    from . import viz

    run = open_run(run_dir, device=distributed.resolve_device(device))
    tree_config = run.config.model
    x = data.load_images(f"folder:{Path(images).expanduser().resolve()}", train=False,
                         image_size=tree_config.image_size, channels=tree_config.channels).images
    _check_clusters(clusters, len(x), option="your images")
    x = x.to(next(run.model.parameters()).device)
    guide, _ = guide_for(run, x, fit_steps=fit_steps)
    out = output_folder(run_dir, out) / folder.RECONSTRUCTIONS_DIR
    log.info(f"parsing {len(x)} images of {images} and drawing the figures into {out}")
    tree = viz.parse_trees(run.model, guide, x)
    paths = viz.paper_figures(run.model, guide, x, out, clusters=clusters, seed=seed, tree=tree)
    return [*paths, write_tree(tree, out / "reconstructions.npz")]


def write_tree(tree, path: str | Path) -> Path:
    """A parse tree as a NumPy ``.npz`` file any tool reads: ``canvas`` (N, C, H, W) and,
    per level d (0 the top), ``level{d}_latents`` (N, n, |z|) and ``level{d}_actions``
    (N, n, 6)."""
    import numpy as np

    arrays = {"canvas": tree.canvas}
    for depth, level in enumerate(tree.levels):
        arrays[f"level{depth}_latents"] = level.latents
        arrays[f"level{depth}_actions"] = level.actions
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{name: value.detach().float().cpu().numpy()
                                 for name, value in arrays.items()})
    return path


def _check_clusters(clusters: int, images: int, option: str = "--images") -> None:
    if not 2 <= clusters <= images:
        raise ConfigError(f"{clusters} clusters of the programs of {images} images: ask for "
                          f"from 2 to as many clusters as images (--clusters, {option})")


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def half_precision(weights: dict) -> dict:
    """A state dict's floating-point tensors in half precision, as shipped models store
    them (:func:`rnp_pyro.hub.export`); :func:`full_precision` loads them back."""
    return {key: value.half() if value.is_floating_point() else value
            for key, value in weights.items()}


def full_precision(weights: dict) -> dict:
    """A state dict's floating-point tensors in single precision."""
    return {key: value.float() if value.is_floating_point() else value
            for key, value in weights.items()}
