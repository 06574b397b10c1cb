"""Test metrics of a model and guide: reconstruction error, ELBO and log-likelihood bound."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import torch

from . import data, guides
from .infer.bounds import log_likelihood_bounds, log_weights
from .infer.fitting import fit_guide, guide_args
from .modes import evaluating
from .run import load_run, resolve_device

EVALUATION_FILE = "evaluation.json"
PER_IMAGE_FILE = "evaluation_per_image.csv"
DECODES_PER_CHUNK = 4000  # images x samples decoded at once when bounding log p(x)
FIT_STEPS = 300  # steps that fit a per-image guide to test images


def evaluate(model, guide, images: torch.Tensor, *, batch_size: int = 500,
             iwae_samples: int = 1, seed: int = 0, per_image: bool = False) -> dict:
    """Metrics of ``images`` (on the model's device), in eval mode and without gradients.

    - ``mse_per_pixel``: mean squared error between each image and the canvas decoded
      from the guide's means (:func:`rnp_pyro.guides.reconstruct`).
    - ``elbo_nats_per_image``: the ELBO of the model's own log p(x) (training weights
      such as ``kl_weight`` left out), from ``iwae_samples`` draws per image.
    - ``log_likelihood_bound_nats_per_image`` (with ``iwae_samples`` > 1): the
      importance-weighted bound per image (log-mean-exp of its weights), averaged.
      It is at least the ELBO of the same draws.

    Per-image guides are evaluated on the images as their dataset (indices 0..N-1).
    Draws come from a fixed ``seed`` and the caller's random stream is left alone, so
    evaluating in the middle of training does not change the training. With
    ``per_image`` the per-image ELBO and bound are returned too, as lists.
    """
    count = len(images)
    chunk = max(1, min(batch_size, DECODES_PER_CHUNK // iwae_samples))
    cuda = [images.device] if images.device.type == "cuda" else []
    squared_error, elbos, bounds = images.new_zeros(()), [], []
    started = time.perf_counter()
    with evaluating(model, guide), torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for indices in data.batch_indices(count, batch_size, shuffle=False, device=images.device):
            x, args = images[indices], guide_args(guide, indices, count)
            squared_error += (guides.reconstruct(model, guide, x, *args).canvas - x).square().sum()
        for indices in data.batch_indices(count, chunk, shuffle=False, device=images.device):
            x, args = images[indices], guide_args(guide, indices, count)
            elbo, bound = log_likelihood_bounds(
                log_weights(model, guide, x, *args, num_samples=iwae_samples))
            elbos.append(elbo)
            bounds.append(bound)
    elbos, bounds = torch.cat(elbos), torch.cat(bounds)
    metrics = {"n_images": count, "mse_per_pixel": squared_error.item() / images.numel(),
               "elbo_nats_per_image": elbos.mean().item()}
    if iwae_samples > 1:
        metrics["log_likelihood_bound_nats_per_image"] = bounds.mean().item()
        metrics["iwae_samples"] = iwae_samples
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    if per_image:
        metrics["per_image"] = {"elbo": elbos.tolist(), "log_likelihood_bound": bounds.tolist()}
    return metrics


def evaluate_run(run_dir: str | Path, *, guide: str | None = None, iwae_samples: int = 1,
                 fit_steps: int = FIT_STEPS, limit: int | None = None,
                 data_dir: str | Path | None = None, device: str = "auto") -> dict:
    """Evaluate a run folder on its test set; also written to ``evaluation.json``, with
    each test image's ELBO and bound (nats) in ``evaluation_per_image.csv``.

    ``guide`` (default: the run's own) may name another guide: "encoder" and
    "refined" share the run's trained encoder; per-image guides ("normal", "delta")
    are fitted to the test images first, ``fit_steps`` steps with the model frozen.
    ``limit`` keeps the first images of the test set only.
    """
    run_dir = Path(run_dir)
    run, images, chosen, fitted = run_on_test_images(
        run_dir, guide=guide, limit=limit, fit_steps=fit_steps, data_dir=data_dir, device=device)
    cfg = run.config
    name = guide or cfg.guide
    metrics = {"dataset": cfg.dataset, "model": cfg.model, "guide": name, "epoch": run.epoch,
               "step": run.step, **fitted,
               **evaluate(run.model, chosen, images, iwae_samples=iwae_samples, per_image=True)}
    per_image = metrics.pop("per_image")
    with open(run_dir / PER_IMAGE_FILE, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "elbo", "log_likelihood_bound"])
        writer.writerows(zip(range(len(images)), per_image["elbo"],
                             per_image["log_likelihood_bound"]))
    (run_dir / EVALUATION_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


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
    chosen, fitted = guide_for(run.model, run.guide, run.config, guide or run.config.guide,
                               images, fit_steps=fit_steps)
    return run, images, chosen, fitted


def test_images(cfg, *, limit: int | None = None, data_dir: str | Path | None = None,
                device: str | torch.device = "cpu") -> torch.Tensor:
    """The test images a run is judged on: its dataset's test split under its class
    filters, the first ``limit`` of them, checked against its image size and channels."""
    test = data.load_images(cfg.dataset, train=False, data_dir=data_dir,
                            image_size=cfg.image_size, channels=cfg.channels)
    test = test.filter_classes(cfg.classes, cfg.exclude_classes).subset(limit)
    data.check_images(test.images, channels=cfg.channels, image_size=cfg.image_size)
    return test.to(device).images


def guide_for(model, guide, cfg, name: str, images: torch.Tensor, *,
              fit_steps: int = FIT_STEPS, **fit_options):
    """The guide ``name`` ready for ``images``, beside a trained ``guide``; and what fitting took.

    The trained guide serves as it is when it is amortized and of that kind; "encoder"
    and "refined" share a trained encoder; per-image guides start where the trained
    encoder puts each image (when there is one) and are fitted to ``images``
    (``fit_options`` go to :func:`rnp_pyro.infer.fit_guide`).
    """
    if name == cfg.guide and not getattr(guide, "per_image", False):
        return guide, {}
    cfg = cfg.replace(guide=name)
    if name in ("normal", "delta"):
        fresh = guides.make(name, cfg, model, example=images, dataset_size=len(images))
        fresh.to(images.device)
        if hasattr(guide, "encode"):  # start each image where the trained encoder puts it
            with evaluating(guide):
                fresh.start_from(*(torch.cat(part) for part in zip(
                    *(guide.encode(x) for x in images.split(DECODES_PER_CHUNK)))))
        started = time.perf_counter()
        losses = fit_guide(model, fresh, images, steps=fit_steps, **fit_options)
        return fresh, {"fit_steps": fit_steps, "fit_final_loss": losses[-1],
                       "fit_seconds": round(time.perf_counter() - started, 3)}
    if name in ("encoder", "refined") and hasattr(guide, "encoder"):
        fresh = guides.make(name, cfg, model)
        fresh.encoder.load_state_dict(guide.encoder.state_dict())
        return fresh.to(images.device), {}
    raise ValueError(f"a {name!r} guide cannot be taken from a run trained with the "
                     f"{cfg.guide!r} guide: choose encoder, refined, normal or delta")
