"""Fitting a model and its guide to images by stochastic variational inference.

A run lives in one folder (:mod:`rnp_pyro.run`). A run stopped at any moment
resumes from its last checkpoint and goes on as if it had never stopped: the batch
order of an epoch depends only on (seed, epoch), the random state is saved with the
weights, and evaluation leaves the training's random stream alone.

The pieces, top to bottom: :func:`fit` sets a run up; :class:`_Training` is the
loop over epochs and batches and what a checkpoint holds to continue it; the step
itself is :class:`rnp_pyro.step.TrainStep`, the telling :class:`rnp_pyro.report.Report`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import signal
import threading
import time
from pathlib import Path

import pyro
import torch

from . import data, distributed, guides, run
from .config import ConfigError, RunConfig
from .errors import RunStopped, TrainingDiverged, check_count
from .metrics import evaluate
from .report import Report
from .step import TrainStep

__all__ = ["fit", "fit_depthwise", "fit_in_processes", "stream_seed"]

log = logging.getLogger("rnp_pyro")
CHECKPOINT_EVERY = 500  # steps between checkpoints inside an epoch, by default
MAX_SKIPPED_IN_A_ROW = 100  # non-finite steps in a row that stop a run


def fit(config: RunConfig, out: str | Path, *, epochs: int | None = None,
        max_steps: int | None = None, device: str = "auto", seed: int = 0,
        resume: bool = False, data_dir: str | Path | None = None, progress: bool = True,
        train_set: data.ImageSet | None = None, test_set: data.ImageSet | None = None,
        checkpoint_every: int | None = CHECKPOINT_EVERY, overwrite: bool = False) -> run.Run:
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
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be a whole number from 0 to 2**32 - 1, got {seed!r}")
    if epochs is not None:  # the budget asked for is what config.json records
        config = config.replace(epochs=epochs)
    config = _absolute_paths(config, out)
    place, device = distributed.join(run.resolve_device(device))
    if place.parallel:
        config.check_data_parallel()
    state = _state_to_resume(config, out, seed, resume, overwrite)
    with run.writing(out, overwrite=overwrite) if place.is_main else contextlib.nullcontext():
        return _fit(config, out, state, max_steps, device, seed, data_dir, progress,
                    train_set, test_set, checkpoint_every, place)


def _fit(config, out, state, max_steps, device, seed, data_dir, progress, train_set, test_set,
         checkpoint_every, place) -> run.Run:
    """:func:`fit` once the folder is this process's to write."""
    train_images = run.run_images(config, train=True, data_dir=data_dir, given=train_set,
                                  device=device)
    test_images = run.run_images(config, train=False, data_dir=data_dir, given=test_set,
                                 device=device)
    if place.is_main:
        run.write_config(out, config)

    pyro.set_rng_seed(seed)
    model, guide = run.build(config, example=train_images, dataset_size=len(train_images))
    if state is None and config.train.init_from:
        _init_from(model, guide, config.train.init_from, config.train.truncate,
                   config.train.fresh)
    if place.parallel:  # the same weights everywhere, but each rank its own draws
        pyro.set_rng_seed(stream_seed(seed, place.rank))
    training = _Training(config, model.to(device), guide.to(device), train_images, test_images,
                         out, seed, place, checkpoint_every)
    if state is not None:
        training.restore(state)
    training.run(config.train.epochs, max_steps, progress and place.is_main)

    if place.is_main:
        run.save_figures(out, model, training.test_guide(), test_images)
    distributed.barrier(place)
    model.eval()
    guide.eval()
    return run.Run(model, guide, config, out, epoch=training.epoch, step=training.step,
                   metrics=run.last_metrics(out))


def fit_depthwise(config: RunConfig, out: str | Path, **options) -> run.Run:
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


def fit_in_processes(processes: int, config: RunConfig, out: str | Path, **options) -> run.Run:
    """:func:`fit` data-parallel in ``processes`` local processes (one per GPU on CUDA,
    gloo on CPUs), started through torchrun's launcher; the run as loaded from ``out``.

    ``options`` are :func:`fit`'s. One process is plain :func:`fit`.
    """
    if processes == 1:
        return fit(config, out, **options)
    if distributed.launched_world_size() > 1:
        raise ConfigError("this process is one of several torchrun started; torchrun's "
                          "--nproc-per-node sets the number of processes, so leave out --devices")
    config.check_data_parallel()
    device = run.resolve_device(options.get("device", "auto"))
    if device.type == "cuda" and processes > torch.cuda.device_count():
        raise ConfigError(f"{processes} processes need as many GPUs; this machine has "
                          f"{torch.cuda.device_count()}")
    config = _absolute_paths(config, Path(out).absolute())
    _state_to_resume(config, Path(out), options.get("seed", 0), options.get("resume", False),
                     options.get("overwrite", False))
    distributed.launch(processes, _fit_in_rank, config, out, options)
    return run.load_run(out, device=options.get("device", "auto"))


def _fit_in_rank(config: RunConfig, out: str | Path, options: dict) -> None:
    from torch.distributed.elastic.multiprocessing.errors import record  # reports the error

    record(fit)(config, out, **options)


def part_loss_weight(config: RunConfig, epoch: int) -> float:
    """The part loss's weight in epoch ``epoch`` (0 first): the model's, reached
    linearly over ``part_loss_ramp`` epochs."""
    ramp = config.train.part_loss_ramp
    return config.model.part_loss_weight * (min(1.0, (epoch + 1) / ramp) if ramp else 1.0)


def stream_seed(seed: int, offset: int = 0) -> int:
    """The seed of one of a run's random streams (an epoch's order, a rank's draws):
    run seeds lie 1,000,003 apart, so the small offsets of nearby runs do not meet."""
    return seed * 1_000_003 + offset


def _state_to_resume(config: RunConfig, out: Path, seed: int, resume: bool,
                     overwrite: bool = False) -> dict | None:
    """The checkpoint to resume (None for a new run), refusing what cannot be resumed."""
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: "
                          "give one of them")
    if not resume:
        if run.has_checkpoint(out) and not overwrite:
            raise run.CheckpointError(f"{out} already holds a run ({run.CHECKPOINT_FILE}); pass "
                                      f"--resume to continue it, --overwrite to replace it, or "
                                      f"choose another --out")
        return None
    if not run.has_checkpoint(out):
        log.info(f"no checkpoint in {out} yet: starting the run afresh")
        return None
    state = run.read_checkpoint(out)
    run.check_resumable(state, config, seed, out)
    return state


def _absolute_paths(config: RunConfig, out: Path) -> RunConfig:
    """The config with a ``folder:`` dataset's path made absolute (so that the run reads
    the same images from wherever it is resumed or evaluated), refusing a run folder
    inside its own data folder (its figures would become data)."""
    dataset = config.data.dataset
    if not dataset.startswith("folder:"):
        return config
    folder = Path(dataset.removeprefix("folder:")).expanduser().absolute()
    if out == folder or folder in out.parents:
        raise ConfigError(f"the run folder {out} lies inside its data folder {folder}, whose "
                          f"images it would add to; choose an --out outside it")
    return config.replace(dataset=f"folder:{folder}")


def _init_from(model, guide, run_dir, truncate: int = 0, fresh: tuple[str, ...] = ()) -> None:
    """Start from the weights of the run in ``run_dir`` (same architecture), but for the
    parts named in ``fresh``; or from those of its tree below depth ``truncate`` with
    the guide left fresh."""
    source = run.load_run(run_dir)
    theirs_taus, ours_taus = source.config.model.taus, model.config.taus
    grows = (len(theirs_taus) < len(ours_taus) and ours_taus[:len(theirs_taus)] == theirs_taus
             and model.config.shared_hypernetworks
             and source.config.model == model.config.replace(taus=theirs_taus))
    if grows:  # a shallower tree of the same networks: one depth more (depth-wise training)
        run.load_weights(model, source.model.state_dict(), "model", run_dir)
        run.load_weights(guide, source.guide.state_dict(), "guide", run_dir)
        return
    if not truncate and source.config.model != model.config:
        ours, theirs = dataclasses.asdict(model.config), dataclasses.asdict(source.config.model)
        changed = [f"{name} ({theirs[name]!r} there, {ours[name]!r} here)" for name in ours
                   if ours[name] != theirs[name]]
        raise ConfigError(f"--init-from {run_dir} holds another model: {', '.join(changed)}; "
                          f"start from a run of the same model settings")
    if truncate:
        wanted = source.config.model.taus[truncate:]
        if model.config.taus != wanted:
            raise ConfigError(f"cutting {truncate} program level(s) off {run_dir} (taus "
                              f"{source.config.model.taus}) leaves taus {wanted}, but this run "
                              f"has {model.config.taus}; build its settings with "
                              f"presets.truncation")
        run.load_weights(model, source.model.subtree_state(truncate), "model", run_dir)
        return  # a new guide learns to drive the subtree
    weights = {key: value for key, value in source.model.state_dict().items()
               if key.split(".")[0] not in fresh}
    run.load_weights(model, {**model.state_dict(), **weights}, "model", run_dir)
    if guides.is_per_image(guide) or guides.is_per_image(source.guide) or "encoder" in fresh:
        return  # per-image parameters belong to the other run's images
    run.load_weights(guide, source.guide.state_dict(), "guide", run_dir)


def _frozen_parts(config: RunConfig, model, guide) -> list[torch.nn.Module]:
    """The modules named in ``config.train.freeze``: they take no gradient and stay in
    eval mode."""
    owners = {"hyper_state": model, "hyper_policy": model, "hyper": model, "likelihood": model,
              "encoder": guide}
    parts = []
    for name in config.train.freeze:
        part = getattr(owners[name], name, None)
        if part is None:
            raise ConfigError(f"cannot freeze {name}: this {config.model.kind} model with the "
                              f"{config.guide.kind} guide has no such part")
        parts.append(part)
    return parts


class _Training:
    """The SVI loop over epochs and batches, and everything a checkpoint must hold to
    continue it."""

    def __init__(self, config: RunConfig, model, guide, train_images, test_images, out: Path,
                 seed: int, place: distributed.Place = distributed.Place(),
                 checkpoint_every: int | None = None):
        self.config, self.model, self.guide = config, model, guide
        self.train_images, self.test_images = train_images, test_images
        self.out, self.seed, self.place = out, seed, place
        self.checkpoint_every = checkpoint_every
        self.frozen = _frozen_parts(config, model, guide)
        for part in self.frozen:
            part.requires_grad_(False)
        self.parameters = [p for module in (model, guide) for p in module.parameters()
                           if p.requires_grad]
        self.take_step = TrainStep(model, guide, self.parameters, len(train_images), config.train,
                                   place=place, bf16_autocast=config.speed.bf16_autocast,
                                   cuda_graphs=config.speed.cuda_graphs)
        self.optimizer = self.take_step.optimizer
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.train.lr_decay_every, gamma=config.train.lr_decay)
        per_rank = math.ceil(len(train_images) / place.world_size)
        self.steps_per_epoch = math.ceil(per_rank / config.train.batch_size)
        self.epoch = 0  # epochs completed
        self.step = 0  # steps taken, skipped ones included
        self.epoch_step = 0  # steps taken in the unfinished epoch
        self.seconds = 0.0
        self.report = Report(out, place)
        self.resumed = False

    # ------------------------------------------------------------------ the loop
    def run(self, epochs: int, max_steps: int | None, progress: bool) -> None:
        max_steps = math.inf if max_steps is None else max_steps
        started, seconds_before = time.monotonic(), self.seconds
        self.model.train()
        self.guide.train()
        for part in self.frozen:
            part.eval()  # e.g. a frozen encoder's BatchNorm statistics stay as they are
        title = f"{self.config.model.kind} on {self.config.data.dataset}"
        self.report.open(min(epochs * self.steps_per_epoch, max_steps), self.step, self.resumed,
                         progress, title)
        try:
            with _StopSignals(enabled=not self.place.parallel) as stop:
                while self.epoch < epochs and self.step < max_steps:
                    if hasattr(self.model, "part_loss_weight"):
                        self.model.part_loss_weight = part_loss_weight(self.config, self.epoch)
                    for indices in self._batches_left(max_steps):
                        loss, taken = self.take_step(self.train_images[indices], indices)
                        self.step += 1
                        self.epoch_step += 1
                        self.report.step_taken(self.step, loss, taken)
                        self.seconds = seconds_before + time.monotonic() - started
                        self._between_steps(stop)
                    lr = float(self.optimizer.param_groups[0]["lr"])
                    if self.epoch_step >= self.steps_per_epoch:
                        self.epoch, self.epoch_step = self.epoch + 1, 0
                        self.scheduler.step()
                    self.seconds = seconds_before + time.monotonic() - started
                    self._record(lr)
                    self._between_steps(stop, saved=True)
        finally:
            self.report.close()
        self.report.finish(self.step)

    def _between_steps(self, stop: "_StopSignals", saved: bool = False) -> None:
        """A checkpoint every ``checkpoint_every`` steps; a stop with one when a signal
        asked for it or the steps keep failing."""
        diverged = self.report.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW
        due = self.checkpoint_every and self.step % self.checkpoint_every == 0
        if not saved and (stop.requested or diverged or due):
            self.report.read_losses()
            self._save()
        where = f"{self.out / run.CHECKPOINT_FILE} (step {self.step})"
        if stop.requested:
            raise RunStopped(f"stopped by {stop.requested}; the checkpoint is {where}: run the "
                             f"same command with --resume to continue", stop.requested)
        if diverged:
            raise TrainingDiverged(
                f"the last {self.report.skipped_in_a_row} steps were all skipped: the loss or "
                f"its gradient is not finite (lr {self.config.train.lr} may be too large); the "
                f"checkpoint before them is {where}; start again with a lower --lr or a "
                f"--grad-clip")

    def _batches_left(self, max_steps):
        """The current epoch's batches not yet taken, no more than ``max_steps`` allows."""
        batches = distributed.epoch_batches(len(self.train_images), self.config.train.batch_size,
                                            stream_seed(self.seed), self.epoch, self.place)
        room = min(self.steps_per_epoch, max_steps - self.step)
        return (indices.to(self.train_images.device)
                for indices in batches[self.epoch_step:self.epoch_step + room])

    def test_guide(self):
        """The guide for the test images: the trained one, or per-image ones fitted anew.

        Fitted once per step count, so the figures reuse the last evaluation's.
        """
        if getattr(self, "_test_guide", (None, -1))[1] != self.step:
            now = run.Run(self.model, self.guide, self.config, self.out)
            self._test_guide = (run.guide_for(now, self.test_images)[0], self.step)
        return self._test_guide[0]

    def _record(self, lr: float) -> None:
        """Test metrics to metrics.csv and TensorBoard, then the checkpoint (on rank 0,
        while the other ranks wait)."""
        self.report.read_losses()
        distributed.check_in_step(self.parameters, self.place)
        rng_ranks = distributed.gather(_rng_state(), self.place)
        if self.place.is_main:
            self.report.note(f"evaluating on {len(self.test_images)} test images")
            test = evaluate(self.model, self.test_guide(), self.test_images)
            self.report.epoch_row(self.epoch, self.step, lr, self.seconds, test)
            run.save_checkpoint(self.out, self.state(rng_ranks))
        distributed.barrier(self.place)

    def _save(self) -> None:
        """A checkpoint now, between epochs' records (on rank 0, while the others wait)."""
        rng_ranks = distributed.gather(_rng_state(), self.place)
        if self.place.is_main:
            run.save_checkpoint(self.out, self.state(rng_ranks))
        distributed.barrier(self.place)

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
            "skipped_steps": self.report.skipped_steps,
            "report": self.report.state(),
            "seconds": self.seconds,
            "seed": self.seed,
            "train_size": len(self.train_images),
            "world_size": self.place.world_size,
            "rng": rng_ranks[0],
            "rng_ranks": rng_ranks,
            "config": self.config.to_dict(),
            "version": run.library_version(),
        }

    def restore(self, state: dict) -> None:
        run.load_weights(self.model, state["model"], "model", self.out)
        run.load_weights(self.guide, state["guide"], "guide", self.out)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.epoch_step = state["epoch_step"]
        self.report.restore(state.get("report", {"loss_sum": 0.0, "loss_count": 0}),
                            state["skipped_steps"])
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


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


class _StopSignals:
    """SIGTERM (what a cluster scheduler sends) and SIGINT (Ctrl-C) ask the loop to stop
    at the next step boundary, so that a checkpoint is written whole first; a second
    signal stops at once. Only in the main thread of a single process."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested: str | None = None
        self.previous = {}

    def __enter__(self) -> "_StopSignals":
        if self.enabled:
            for number in (signal.SIGTERM, signal.SIGINT):
                self.previous[number] = signal.signal(number, self._ask)
        return self

    def _ask(self, number, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(number).name

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
