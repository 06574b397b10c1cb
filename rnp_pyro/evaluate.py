"""Test metrics of a model and guide: reconstruction error and ELBO per image."""

from __future__ import annotations

import json
from pathlib import Path

import pyro
import torch

from . import data
from .modes import evaluating
from .run import load_run, resolve_device

EVALUATION_FILE = "evaluation.json"


def evaluate(model, guide, images: torch.Tensor, *, batch_size: int = 500,
             num_particles: int = 1, seed: int = 0) -> dict:
    """Metrics of ``images`` (on the model's device), in eval mode and without gradients.

    - ``mse_per_pixel``: mean squared error between each image and the canvas decoded
      from the guide's mean.
    - ``elbo_nats_per_image``: the ELBO as trained, averaged over images. The latent
      sites are scaled by ``kl_weight`` (reported too), so it is a bound on
      log p(x) only when ``kl_weight == 1``.

    The ELBO's samples come from a fixed ``seed``, so that evaluations of different
    epochs differ only by the model; the caller's random stream is left untouched,
    so evaluating in the middle of training does not change the training.
    """
    elbo = pyro.infer.Trace_ELBO(num_particles=num_particles)
    cuda = [images.device] if images.device.type == "cuda" else []
    with evaluating(model, guide), torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        squared_error = loss = images.new_zeros(())
        for x in images.split(batch_size):
            loc, _ = guide.encode(x)
            squared_error = squared_error + (model.decode(loc).canvas - x).square().sum()
            loss = loss + elbo.differentiable_loss(model, guide, x)
    return {
        "n_images": len(images),
        "mse_per_pixel": squared_error.item() / images.numel(),
        "elbo_nats_per_image": -loss.item() / len(images),
        "kl_weight": model.cfg.kl_weight,
    }


def evaluate_run(run_dir: str | Path, *, data_dir: str | Path | None = None,
                 device: str = "auto") -> dict:
    """Evaluate a run folder on its dataset's test set; also written to ``evaluation.json``."""
    run_dir = Path(run_dir)
    device = resolve_device(device)
    run = load_run(run_dir, device=device)
    cfg = run.config
    test = data.load_images(cfg.dataset, train=False, data_dir=data_dir,
                            image_size=cfg.image_size, channels=cfg.channels)
    data.check_images(test.images, channels=cfg.channels, image_size=cfg.image_size)
    metrics = {"dataset": cfg.dataset, "model": cfg.model, "epoch": run.epoch, "step": run.step,
               **evaluate(run.model, run.guide, test.to(device).images)}
    (run_dir / EVALUATION_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
