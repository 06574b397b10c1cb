"""What a training run tells as it goes: the progress bar, the losses read back from
the device every few steps, skipped steps, TensorBoard, and a row of ``metrics.csv``
after every epoch."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed, folder

log = logging.getLogger("rnp_pyro")
LOSS_READ_EVERY = 50  # steps between reads of the loss from the device
MAX_SKIP_MESSAGES = 5  # skipped steps reported one by one; later ones are only counted


class Report:
    """The losses of a run's steps, kept on the device until they are read, and what is
    made of them. Only the main process writes; every process reads its losses."""

    def __init__(self, out: Path, place: distributed.Place, skipped_steps: int = 0):
        self.out, self.place = out, place
        self.pending = []  # (step, loss, taken) still on the device
        self.skipped_steps = skipped_steps
        self.skipped_in_a_row = 0  # as of the last read
        self.loss_sum, self.loss_count = 0.0, 0  # finite losses since the last metrics row
        self.bar = self.writer = None

    def open(self, total: int, step: int, resumed: bool, progress: bool, title: str) -> None:
        """Start metrics.csv (keeping the rows up to ``step`` when resumed), TensorBoard
        and the progress bar."""
        if self.place.is_main:
            folder.start_metrics(self.out, keep_until=step if resumed else None)
            from torch.utils.tensorboard import SummaryWriter  # slow to import: only when training

            self.writer = SummaryWriter(folder.tensorboard_dir(self.out),
                                        purge_step=step + 1 if resumed else 0)
        # a bar only on a terminal: elsewhere (a log file) each update would be a line
        self.bar = tqdm(total=total, initial=step, disable=not (progress and sys.stderr.isatty()),
                        unit="step", desc=title, dynamic_ncols=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def step_taken(self, step: int, loss: torch.Tensor, taken: torch.Tensor) -> None:
        """Note a step's loss and whether it was taken (both on the device)."""
        self.pending.append((step, loss, taken))
        self.bar.update()
        if step % LOSS_READ_EVERY == 0:
            self.read_losses()

    def read_losses(self) -> None:
        """Bring the pending losses to the host in one transfer; report skipped steps.

        Reading every LOSS_READ_EVERY steps rather than every step keeps the host from
        waiting on the device; a skipped step is reported (by number) at the next read.
        """
        if not self.pending:
            return
        steps = [step for step, _, _ in self.pending]
        losses = torch.stack([loss for _, loss, _ in self.pending])
        losses = distributed.mean_over_ranks(losses, self.place).cpu()
        taken = torch.stack([ok for _, _, ok in self.pending]).cpu()
        self.pending.clear()
        for step, ok in zip(steps, taken.tolist()):
            self.skipped_in_a_row = 0 if ok else self.skipped_in_a_row + 1
            if not ok:
                self.skipped_steps += 1
                if self.skipped_steps <= MAX_SKIP_MESSAGES:
                    tqdm.write(f"step {step}: the loss or its gradient is not finite; step skipped")
                if self.skipped_steps == MAX_SKIP_MESSAGES:
                    tqdm.write("further skipped steps are counted in metrics.csv (skipped_steps)")
        kept = losses[taken]
        if len(kept):
            for value in kept.tolist():  # one by one: the same sum however the reads fall
                self.loss_sum += value
            self.loss_count += len(kept)
            self.bar.set_postfix(train_elbo=f"{-kept.mean().item():.4g}")
            if self.writer:
                self.writer.add_scalar("train/elbo", -kept.mean().item(), steps[-1])

    def note(self, message: str) -> None:
        """What the run is doing, through logging (shown by the command line)."""
        log.info(message)

    def state(self) -> dict:
        """What a checkpoint keeps of the report: the losses since the last metrics row."""
        return {"loss_sum": self.loss_sum, "loss_count": self.loss_count}

    def restore(self, state: dict, skipped_steps: int) -> None:
        self.loss_sum, self.loss_count = state["loss_sum"], state["loss_count"]
        self.skipped_steps = skipped_steps

    def finish(self, step: int) -> None:
        """A closing line when steps were skipped (non-finite), which the metrics count."""
        if self.skipped_steps:
            tqdm.write(f"warning: {self.skipped_steps} of {step} steps were skipped because the "
                       f"loss or its gradient was not finite (metrics.csv: skipped_steps); a "
                       f"lower lr or a grad_clip may help")

    def epoch_row(self, epoch: int, step: int, lr: float, seconds: float, test: dict) -> dict:
        """Write the epoch's row of metrics.csv and TensorBoard (main process): the mean
        training loss since the last row and the test metrics ``test``."""
        row = {"epoch": epoch, "step": step,
               # the ELBO, as the test's: the steps' losses are -ELBO
               "train_elbo": -self.loss_sum / self.loss_count if self.loss_count else math.nan,
               "test_elbo": test["elbo_nats_per_image"], "test_mse": test["mse_per_pixel"],
               "lr": lr, "skipped_steps": self.skipped_steps, "seconds": round(seconds, 3)}
        self.loss_sum, self.loss_count = 0.0, 0
        folder.append_metrics(self.out, row)
        for name in ("train_elbo", "test_elbo", "test_mse", "lr", "skipped_steps"):
            self.writer.add_scalar(f"epoch/{name}", row[name], step)
        self.writer.flush()
        self.bar.set_postfix(train_elbo=f"{row['train_elbo']:.4g}",
                             test_elbo=f"{row['test_elbo']:.4g}")
        log.info(f"epoch {epoch}, step {step}: train ELBO {row['train_elbo']:.4g}, "
                 f"test ELBO {row['test_elbo']:.4g}, test MSE {row['test_mse']:.4g}, "
                 f"lr {lr:.3g}, {row['seconds']:.0f} s")
        return row
