"""The training loop: epochs of SVI steps over a run's images, checkpoints, and
stopping safely.

:class:`Training` trains a built model and guide on given images into a run folder
(:mod:`rnp_pyro.folder`); :func:`rnp_pyro.run.fit` sets a run up and hands it here.
A run stopped at any moment resumes from its last checkpoint and goes on as if it
had never stopped: the batch order of an epoch depends only on (seed, epoch), the
random state is saved with the weights, and evaluation leaves the training's random
stream alone. The step itself is :class:`rnp_pyro.step.TrainStep`, the telling
:class:`rnp_pyro.report.Report`.
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from pathlib import Path

import pyro
import torch

from . import distributed, folder
from .config import ConfigError, RunConfig
from .errors import RunStopped, TrainingDiverged
from .infer.fitting import guide_for_images
from .metrics import evaluate
from .report import Report
from .step import TrainStep

__all__ = ["Training", "stream_seed"]

CHECKPOINT_EVERY = 500  # steps between checkpoints inside an epoch, by default
MAX_SKIPPED_IN_A_ROW = 100  # non-finite steps in a row that stop a run


def stream_seed(seed: int, offset: int = 0) -> int:
    """The seed of one of a run's random streams (an epoch's order, a rank's draws):
    run seeds lie 1,000,003 apart, so the small offsets of nearby runs do not meet."""
    return seed * 1_000_003 + offset


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


class Training:
    """The SVI loop over epochs and batches, and everything a checkpoint must hold to
    continue it."""

    def __init__(self, config: RunConfig, model, guide, train_images, test_images, out: Path,
                 seed: int, place: distributed.Place = distributed.Place(),
                 checkpoint_every: int | None = None, evaluates: bool = True):
        self.config, self.model, self.guide = config, model, guide
        self.evaluates = evaluates  # test metrics after each epoch
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
                    self.model.set_epoch(self.epoch, self.config.train.part_loss_ramp)
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
                    self._between_steps(stop, epoch_lr=lr)
        finally:
            self.take_step.close()
            self.report.close()
        self.report.finish(self.step)

    def _between_steps(self, stop: "_StopSignals", epoch_lr: float | None = None) -> None:
        """A checkpoint at the end of an epoch (``epoch_lr``: its learning rate) and every
        ``checkpoint_every`` steps; a stop with one when a signal asked for it or the
        steps keep failing."""
        diverged = self.report.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW
        due = self.checkpoint_every and self.step % self.checkpoint_every == 0
        if epoch_lr is not None or stop.requested or diverged or due:
            self._checkpoint(epoch_lr)
        where = f"{self.out / folder.CHECKPOINT_FILE} (step {self.step})"
        if stop.requested:
            raise RunStopped(f"stopped by {stop.requested}; the checkpoint is {where}: run the "
                             f"same command with --resume to continue", stop.requested)
        if diverged:
            raise TrainingDiverged(
                f"the last {self.report.skipped_in_a_row} steps were all skipped: the loss or "
                f"its gradient is not finite (lr {self.config.train.lr} may be too large); the "
                f"checkpoint before them is {where}; start again with a lower --lr or a "
                f"gradient clip (--set grad_clip=1)")

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
            ready, _ = guide_for_images(self.model, self.guide, self.config.guide, self.test_images)
            self._test_guide = (ready, self.step)
        return self._test_guide[0]

    def _checkpoint(self, epoch_lr: float | None = None) -> None:
        """A checkpoint now (on rank 0, while the other ranks wait); at the end of an
        epoch (``epoch_lr``: its learning rate) first its row of metrics.csv and
        TensorBoard, with the test metrics."""
        self.report.read_losses()
        if epoch_lr is not None:
            distributed.check_in_step(self.parameters, self.place)
        rng_ranks = distributed.gather(_rng_state(), self.place)
        if self.place.is_main:
            if epoch_lr is not None:
                self.report.epoch_row(self.epoch, self.step, epoch_lr, self.seconds,
                                      self._test_metrics())
            folder.save_checkpoint(self.out, self.state(rng_ranks))
        distributed.barrier(self.place)

    def _test_metrics(self) -> dict:
        """The test images' metrics for the epoch's row; NaN when evaluation is off."""
        if not self.evaluates:
            return {"elbo_nats_per_image": math.nan, "mse_per_pixel": math.nan}
        self.report.note(f"evaluating on {len(self.test_images)} test images")
        return evaluate(self.model, self.test_guide(), self.test_images)

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
            "version": folder.library_version(),
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])  # the run's own: for_fit checked its settings
        self.guide.load_state_dict(state["guide"])
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
