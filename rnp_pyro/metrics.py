"""Test metrics of a model and guide: reconstruction error, ELBO and log-likelihood bound
(:func:`evaluate`, also ``rnp_pyro.evaluate``)."""

from __future__ import annotations

import time

import pyro
import torch

from . import data, guides
from .errors import check_count
from .infer.bounds import log_likelihood_bounds, log_weights
from .infer.fitting import guide_args
from .modes import evaluating, own_random_stream

DECODES_PER_CHUNK = 4000  # images x samples decoded at once when bounding log p(x)


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

    uint8 images are read as pixels / 255. A model whose canvases are not finite (its
    training diverged) gets NaN metrics rather than an error.
    """
    tree = model.config
    images = data.unit_images(images, channels=tree.channels, image_size=tree.image_size)
    check_count("batch_size", batch_size)
    check_count("iwae_samples", iwae_samples)
    count = len(images)
    chunk = max(1, min(batch_size, DECODES_PER_CHUNK // iwae_samples))
    squared_error, elbos, bounds = images.new_zeros(()), [], []
    started = time.perf_counter()
    # Pyro's argument checks would raise on NaN canvases; the metrics say NaN instead
    with evaluating(model, guide), own_random_stream(seed, images.device), \
            pyro.validation_enabled(False):
        for indices in data.batch_indices(count, batch_size, shuffle=False, device=images.device):
            x, args = images[indices], guide_args(guide, indices, count)
            squared_error += (guides.reconstruct(model, guide, x, *args).canvas - x).square().sum()
        for indices in data.batch_indices(count, chunk, shuffle=False, device=images.device):
            x, args = images[indices], guide_args(guide, indices, count)
            elbo, bound = log_likelihood_bounds(
                _log_weights(model, guide, x, args, iwae_samples))
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


def _log_weights(model, guide, x, args, samples: int) -> torch.Tensor:
    """(samples, B) log-weights, drawn in groups of at most DECODES_PER_CHUNK decodes."""
    group = max(1, DECODES_PER_CHUNK // len(x))
    return torch.cat([log_weights(model, guide, x, *args, num_samples=min(group, samples - done))
                      for done in range(0, samples, group)])
