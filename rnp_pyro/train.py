"""Fitting a model and its guide to images by stochastic variational inference.

A run lives in one folder: ``config.json``, ``checkpoint.pt`` (replaced atomically
after every epoch), ``metrics.csv``, ``tensorboard/`` and, at the end,
``reconstructions.png`` and ``samples.png``. A run stopped at any moment resumes
from its last checkpoint and goes on as if it had never stopped: the batch order
of an epoch depends only on (seed, epoch), the random state is saved with the
weights, and evaluation leaves the training's random stream alone.
"""

from __future__ import annotations

import csv
import math
import random
import time
from pathlib import Path

import pyro
import torch
from torch.distributed.elastic.multiprocessing.errors import record
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from . import data, distributed, viz
from .config import ConfigError, RNPConfig
from .evaluate import evaluate, guide_for
from .run import (CHECKPOINT_FILE, CONFIG_FILE, METRICS_COLUMNS, METRICS_FILE, CheckpointError,
                  Run, build, checkpoint_config, config_changes, last_metrics, library_version,
                  load_run, load_weights, read_checkpoint, resolve_device, save_checkpoint)
from .step import TrainStep

__all__ = ["build", "fit"]

LOSS_READ_EVERY = 50  # steps between reads of the loss from the device
MAX_SKIP_MESSAGES = 5  # skipped steps reported one by one; later ones are only counted


def fit(cfg: RNPConfig, out: str | Path, *, epochs: int | None = None,
        max_steps: int | None = None, device: str = "auto", seed: int = 0,
        resume: bool = False, data_dir: str | Path | None = None, progress: bool = True,
        train_set: data.ImageSet | None = None, test_set: data.ImageSet | None = None) -> Run:
    """Train ``cfg``'s model and guide into the folder ``out`` and return the run.

    ``epochs`` (default ``cfg.epochs``) and ``max_steps`` bound the whole run, resumed
    parts included, so resuming with a larger budget trains on. Steps count batches;
    a step whose loss or gradient is not finite is skipped (the weights and the
    optimizer never see it) and counted in ``skipped_steps``. The datasets come from
    ``cfg.dataset`` unless ``train_set``/``test_set`` are given; either way only
    ``cfg.classes`` (less ``cfg.exclude_classes``) are kept.

    Transfer: ``cfg.init_from`` (a run folder) gives a new run its starting weights,
    and the parts named in ``cfg.freeze`` are not trained.

    Started by torchrun in several processes, each trains on its share of every
    batch of ``cfg.batch_size`` per process (:mod:`rnp_pyro.distributed`); rank 0
    writes the folder. A run resumes on any number of processes.
    """
    out = Path(out)
    place, device = distributed.join(resolve_device(device))
    if place.parallel:
        distributed.check_config(cfg)
    state = _state_to_resume(cfg, out, seed, resume)

    train_images = _images(train_set, cfg, train=True, data_dir=data_dir).to(device)
    test_images = _images(test_set, cfg, train=False, data_dir=data_dir).to(device)
    if place.is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / CONFIG_FILE)

    pyro.set_rng_seed(seed)
    model, guide = build(cfg, example=train_images, dataset_size=len(train_images))
    if state is None and cfg.init_from:
        _init_from(model, guide, cfg.init_from, cfg.truncate)
    if place.parallel:  # the same weights everywhere, but each rank its own draws
        pyro.set_rng_seed(stream_seed(seed, place.rank))
    training = _Training(cfg, model.to(device), guide.to(device), train_images, test_images,
                         out, seed, place)
    if state is not None:
        training.restore(state)
    training.run(cfg.epochs if epochs is None else epochs, max_steps, progress and place.is_main)

    if place.is_main:
        viz.save_run_figures(model, training.test_guide(), test_images, out)
    distributed.barrier(place)
    model.eval()
    guide.eval()
    return Run(model, guide, cfg, out, epoch=training.epoch, step=training.step,
               metrics=last_metrics(out))


def _state_to_resume(cfg: RNPConfig, out: Path, seed: int, resume: bool) -> dict | None:
    """The checkpoint to resume (None for a new run), refusing what cannot be resumed."""
    checkpoint_path = out / CHECKPOINT_FILE
    if not resume:
        if checkpoint_path.exists():
            raise CheckpointError(f"{out} already holds a run ({CHECKPOINT_FILE}); pass --resume "
                                  f"to continue it, or choose another --out")
        return None
    if not checkpoint_path.exists():
        raise CheckpointError(f"nothing to resume: {checkpoint_path} does not exist; "
                              f"start a new run without --resume")
    state = read_checkpoint(checkpoint_path)
    _check_same_settings(state, cfg, seed, checkpoint_path)
    return state


def fit_in_processes(processes: int, cfg: RNPConfig, out: str | Path, **options) -> Run:
    """:func:`fit` data-parallel in ``processes`` local processes (one per GPU on CUDA,
    gloo on CPUs), started through torchrun's launcher; the run as loaded from ``out``.

    ``options`` are :func:`fit`'s. One process is plain :func:`fit`.
    """
    if processes == 1:
        return fit(cfg, out, **options)
    if distributed.launched_world_size() > 1:
        raise ConfigError("this process is one of several torchrun started; torchrun's "
                          "--nproc-per-node sets the number of processes, so leave out --devices")
    distributed.check_config(cfg)
    device = resolve_device(options.get("device", "auto"))
    if device.type == "cuda" and processes > torch.cuda.device_count():
        raise ConfigError(f"{processes} processes need as many GPUs; this machine has "
                          f"{torch.cuda.device_count()}")
    _state_to_resume(cfg, Path(out), options.get("seed", 0), options.get("resume", False))
    distributed.launch(processes, _fit_in_rank, cfg, out, options)
    return load_run(out, device=options.get("device", "auto"))


@record
def _fit_in_rank(cfg: RNPConfig, out: str | Path, options: dict) -> None:
    fit(cfg, out, **options)


def _images(given: data.ImageSet | None, cfg: RNPConfig, *, train: bool, data_dir) -> torch.Tensor:
    if given is None:
        given = data.load_images(cfg.dataset, train=train, data_dir=data_dir,
                                 image_size=cfg.image_size, channels=cfg.channels)
    given = given.filter_classes(cfg.classes, cfg.exclude_classes)
    data.check_images(given.images, channels=cfg.channels, image_size=cfg.image_size)
    return given.images


def _init_from(model, guide, run_dir, truncate: int = 0) -> None:
    """Start from the weights of the run in ``run_dir`` (same architecture), or from
    those of its tree below depth ``truncate`` with the guide left fresh."""
    source = load_run(run_dir)
    if truncate:
        wanted = source.config.taus[truncate:]
        if model.cfg.taus != wanted:
            raise ConfigError(f"cutting {truncate} program level(s) off {run_dir} (taus "
                              f"{source.config.taus}) leaves taus {wanted}, but this run has "
                              f"{model.cfg.taus}; build its settings with presets.truncation")
        load_weights(model, source.model.subtree_state(truncate), "model", Path(run_dir))
        return  # a new guide learns to drive the subtree
    load_weights(model, source.model.state_dict(), "model", Path(run_dir))
    if getattr(guide, "per_image", False) or getattr(source.guide, "per_image", False):
        return  # per-image parameters belong to the other run's images
    load_weights(guide, source.guide.state_dict(), "guide", Path(run_dir))


def _frozen_parts(cfg: RNPConfig, model, guide) -> list[torch.nn.Module]:
    """The modules named in ``cfg.freeze``: they take no gradient and stay in eval mode."""
    owners = {"hyper_state": model, "hyper_policy": model, "likelihood": model, "encoder": guide}
    parts = []
    for name in cfg.freeze:
        part = getattr(owners[name], name, None)
        if part is None:
            raise ConfigError(f"cannot freeze {name}: this {cfg.model} model with the "
                                  f"{cfg.guide} guide has no such part")
        parts.append(part)
    return parts


def _check_same_settings(state: dict, cfg: RNPConfig, seed: int, path: Path) -> None:
    """A run resumes only with the settings it was started with."""
    changes = config_changes(checkpoint_config(state, path), cfg)
    if state["seed"] != seed:
        changes.append(f"seed ({state['seed']!r} vs {seed!r})")
    if changes:
        raise CheckpointError(f"{path} was trained with other settings (saved vs asked): "
                              f"{', '.join(changes)}; resume with the same settings, or choose "
                              f"another --out for a new run")


class _Training:
    """The SVI loop and everything a checkpoint must hold to continue it."""

    def __init__(self, cfg, model, guide, train_images, test_images, out: Path, seed: int,
                 place: distributed.Place = distributed.Place()):
        self.cfg, self.model, self.guide = cfg, model, guide
        self.train_images, self.test_images = train_images, test_images
        self.out, self.seed, self.place = out, seed, place
        self.frozen = _frozen_parts(cfg, model, guide)
        for part in self.frozen:
            part.requires_grad_(False)
        self.parameters = [p for module in (model, guide) for p in module.parameters()
                           if p.requires_grad]
        self.take_step = TrainStep(cfg, model, guide, self.parameters, len(train_images), place,
                                   cuda_graphs=cfg.cuda_graphs)
        self.optimizer = self.take_step.optimizer
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
        per_rank = math.ceil(len(train_images) / place.world_size)
        self.steps_per_epoch = math.ceil(per_rank / cfg.batch_size)
        self.epoch = 0  # epochs completed
        self.step = 0  # steps taken, skipped ones included
        self.epoch_step = 0  # steps taken in the unfinished epoch
        self.skipped_steps = 0
        self.seconds = 0.0
        self.pending = []  # (step, loss, finite) still on the device
        self.loss_sum, self.loss_count = 0.0, 0  # finite losses since the last metrics row
        self.resumed = False

    # ------------------------------------------------------------------ checkpoints
    def state(self, rng_ranks: list) -> dict:
        """What a checkpoint holds; ``rng_ranks`` is every rank's random state."""
        return {
            "model": self.model.state_dict(),
            "guide": self.guide.state_dict(),
            "optimizer": self.take_step.optimizer_state(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
            "skipped_steps": self.skipped_steps,
            "seconds": self.seconds,
            "seed": self.seed,
            "train_size": len(self.train_images),
            "world_size": self.place.world_size,
            "rng": rng_ranks[0],
            "rng_ranks": rng_ranks,
            "config": self.cfg.to_dict(),
            "version": library_version(),
        }

    def restore(self, state: dict) -> None:
        load_weights(self.model, state["model"], "model", self.out)
        load_weights(self.guide, state["guide"], "guide", self.out)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.epoch_step, self.skipped_steps = state["epoch_step"], state["skipped_steps"]
        self.seconds = state["seconds"]
        saved_world = state.get("world_size", 1)
        ranks = state.get("rng_ranks", [state["rng"]])
        if saved_world == self.place.world_size:
            _set_rng_state(ranks[self.place.rank])
        else:
            # the images of this epoch already seen, in whole steps of the new world
            self.epoch_step = math.ceil(self.epoch_step * saved_world / self.place.world_size)
            pyro.set_rng_seed(stream_seed(self.seed, self.step * 1_009 + self.place.rank))
        self.resumed = True

    # ------------------------------------------------------------------ the loop
    def run(self, epochs: int, max_steps: int | None, progress: bool) -> None:
        max_steps = math.inf if max_steps is None else max_steps
        metrics_path = self.out / METRICS_FILE
        if self.place.is_main:
            _start_metrics(metrics_path, keep_until=self.step if self.resumed else None)
        started, seconds_before = time.monotonic(), self.seconds
        total = min(epochs * self.steps_per_epoch, max_steps)
        self.model.train()
        self.guide.train()
        for part in self.frozen:
            part.eval()  # e.g. a frozen encoder's BatchNorm statistics stay as they are
        self.writer = SummaryWriter(self.out / "tensorboard",
                                    purge_step=self.step + 1 if self.resumed else 0) \
            if self.place.is_main else None
        self.bar = tqdm(total=total, initial=self.step, disable=not progress, unit="step",
                        desc=f"{self.cfg.model} on {self.cfg.dataset}", dynamic_ncols=True)
        try:
            while self.epoch < epochs and self.step < max_steps:
                for indices in self._batches_left(max_steps):
                    self._step(indices)
                    self.bar.update()
                    if self.step % LOSS_READ_EVERY == 0:
                        self._read_losses()
                lr = float(self.optimizer.param_groups[0]["lr"])
                if self.epoch_step >= self.steps_per_epoch:
                    self.epoch, self.epoch_step = self.epoch + 1, 0
                    self.scheduler.step()
                self.seconds = seconds_before + time.monotonic() - started
                self._record(metrics_path, lr)
        finally:
            self.bar.close()
            if self.writer:
                self.writer.close()

    def _batches_left(self, max_steps):
        """The current epoch's batches not yet taken, no more than ``max_steps`` allows."""
        batches = distributed.epoch_batches(len(self.train_images), self.cfg.batch_size,
                                            stream_seed(self.seed), self.epoch, self.place)
        room = min(self.steps_per_epoch, max_steps - self.step)
        return (indices.to(self.train_images.device)
                for indices in batches[self.epoch_step:self.epoch_step + room])

    def _step(self, indices: torch.Tensor) -> None:
        loss, finite = self.take_step(self.train_images[indices], indices)
        self.step += 1
        self.epoch_step += 1
        self.pending.append((self.step, loss, finite))

    def _read_losses(self) -> None:
        """Bring the pending losses to the host in one transfer; report skipped steps.

        Reading every LOSS_READ_EVERY steps rather than every step keeps the host from
        waiting on the device; a skipped step is reported (by number) at the next read.
        """
        if not self.pending:
            return
        steps = [step for step, _, _ in self.pending]
        losses = torch.stack([loss for _, loss, _ in self.pending])
        losses = distributed.mean_over_ranks(losses, self.place).cpu()
        finite = torch.stack([ok for _, _, ok in self.pending]).cpu()
        self.pending.clear()
        for step, ok in zip(steps, finite.tolist()):
            if not ok:
                self.skipped_steps += 1
                if self.skipped_steps <= MAX_SKIP_MESSAGES:
                    tqdm.write(f"step {step}: the loss or its gradient is not finite; step skipped")
                if self.skipped_steps == MAX_SKIP_MESSAGES:
                    tqdm.write("further skipped steps are counted in metrics.csv (skipped_steps)")
        kept = losses[finite]
        if len(kept):
            self.loss_sum += kept.sum().item()
            self.loss_count += len(kept)
            self.bar.set_postfix(loss=f"{kept.mean().item():.4g}")
            if self.writer:
                self.writer.add_scalar("train/loss", kept.mean().item(), self.step)

    def test_guide(self):
        """The guide for the test images: the trained one, or per-image ones fitted anew.

        Fitted once per step count, so the figures reuse the last evaluation's.
        """
        if getattr(self, "_test_guide", (None, -1))[1] != self.step:
            guide, _ = guide_for(self.model, self.guide, self.cfg, self.cfg.guide,
                                 self.test_images)
            self._test_guide = (guide, self.step)
        return self._test_guide[0]

    def _record(self, metrics_path: Path, lr: float) -> None:
        """Test metrics to metrics.csv and TensorBoard, then the checkpoint (on rank 0,
        while the other ranks wait)."""
        self._read_losses()
        distributed.check_in_step(self.parameters, self.place)
        rng_ranks = distributed.gather(_rng_state(), self.place)
        if self.place.is_main:
            self._write_record(metrics_path, lr, rng_ranks)
        distributed.barrier(self.place)

    def _write_record(self, metrics_path: Path, lr: float, rng_ranks: list) -> None:
        test = evaluate(self.model, self.test_guide(), self.test_images)
        row = {"epoch": self.epoch, "step": self.step,
               "train_loss": self.loss_sum / self.loss_count if self.loss_count else math.nan,
               "test_elbo": test["elbo_nats_per_image"], "test_mse": test["mse_per_pixel"],
               "lr": lr, "skipped_steps": self.skipped_steps, "seconds": round(self.seconds, 3)}
        self.loss_sum, self.loss_count = 0.0, 0
        with open(metrics_path, "a", newline="") as file:
            csv.DictWriter(file, METRICS_COLUMNS).writerow(row)
        for name in ("train_loss", "test_elbo", "test_mse", "lr", "skipped_steps"):
            self.writer.add_scalar(f"epoch/{name}", row[name], self.step)
        self.writer.flush()
        self.bar.set_postfix(loss=f"{row['train_loss']:.4g}", test_elbo=f"{row['test_elbo']:.4g}")
        save_checkpoint(self.out / CHECKPOINT_FILE, self.state(rng_ranks))


def stream_seed(seed: int, offset: int = 0) -> int:
    """The seed of one of a run's random streams (an epoch's order, a rank's draws):
    run seeds lie 1,000,003 apart, so the small offsets of nearby runs do not meet."""
    return seed * 1_000_003 + offset


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _start_metrics(path: Path, keep_until: int | None) -> None:
    """metrics.csv with its header and, when resuming, the rows up to the checkpoint's step.

    Rows written after the last checkpoint (a run stopped between the two writes)
    are dropped, as the resumed run writes them again.
    """
    rows = []
    if keep_until is not None and path.is_file():
        with open(path, newline="") as file:
            rows = [row for row in csv.DictReader(file) if int(row["step"]) <= keep_until]
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, METRICS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
