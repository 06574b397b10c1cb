"""Test metrics of a model and guide: reconstruction error, ELBO and log-likelihood bound
(:func:`evaluate`, also ``rnp_pyro.evaluate``)."""

from __future__ import annotations

import time

import pyro
import torch

from . import data, guides
from .errors import ConfigError, check_count
from .eta import announce_if_long
from .infer.bounds import log_likelihood_bounds, log_weights, shared_latents
from .infer.fitting import guide_args
from .modes import evaluating, own_random_stream

DECODES_PER_CHUNK = 4000  # images x samples decoded at once when bounding log p(x)
MAX_IWAE_SAMPLES = 100_000  # draws per image; bounds in the literature use 5,000 or fewer


def evaluate(model, guide, images: torch.Tensor, *, batch_size: int = 500,
             iwae_samples: int = 1, seed: int = 0, per_image: bool = False) -> dict:
    """Metrics of ``images`` (on the model's device), in eval mode and without gradients.

    - ``mse_per_pixel``: mean squared error between each image and the canvas decoded
      from the guide's means (:func:`rnp_pyro.guides.reconstruct`).
    - ``elbo_nats_per_image``: the ELBO of the model's own log p(x) (training weights
      such as ``kl_weight`` left out), from ``iwae_samples`` draws per image, averaged
      over the images.
    - ``log_likelihood_bound_nats_per_image`` (with ``iwae_samples`` > 1): the
      importance-weighted bound per image (log-mean-exp of its weights), averaged.
      It is at least the ELBO of the same draws and tends to the mean log p(x_i).
    - ``guide_factorises``: whether the guide draws each image's latents apart (every
      latent in the ``data`` plate). When it does not (Pyro's AutoDiagonalNormal and
      other guides of one joint latent), the weights exist for the whole set only: the
      ELBO is the set's divided by its size (the same average), and the bound is
      ``batch_log_likelihood_bound_nats_per_image``, the set's bound divided by its
      size, a looser bound than the per-image one at the same K.

    Per-image guides are evaluated on the images as their dataset (indices 0..N-1);
    Pyro's other autoguides, which know images by their position, and guides of a
    joint latent get all images in one batch (``batch_size`` then only sets how many
    draws are decoded at once). Draws come from a fixed ``seed`` and the caller's
    random stream is left alone, so evaluating in the middle of training does not
    change the training. With ``per_image`` the per-image ELBO and bound are returned
    too, as lists (a ValueError for a guide that does not factorise).

    uint8 images are read as pixels / 255. A model whose canvases are not finite (its
    training diverged) gets NaN metrics rather than an error.
    """
    tree = model.config
    images = data.unit_images(images, channels=tree.channels, image_size=tree.image_size)
    check_count("batch_size", batch_size)
    check_iwae_samples(iwae_samples)
    count = len(images)
    started = time.perf_counter()
    # Pyro's argument checks would raise on NaN canvases; the metrics say NaN instead
    with evaluating(model, guide), own_random_stream(seed, images.device), \
            pyro.validation_enabled(False):
        positional = guides.keeps_positions(guide)
        batch = count if positional else min(batch_size, count)
        probe = torch.arange(count if positional else 1, device=images.device)
        shared = shared_latents(guide, images[probe], *guide_args(guide, probe, count))
        if shared:
            if per_image:
                raise ValueError(f"per-image metrics were asked for, but the guide draws "
                                 f"{', '.join(shared)} once for all images: it has an ELBO and "
                                 f"bound for the whole set only; call with per_image=False")
            batch = count
        squared_error, begun = images.new_zeros(()), time.perf_counter()
        for number, (x, args) in enumerate(_batches(images, batch, guide)):
            squared_error += (guides.reconstruct(model, guide, x, *args).canvas - x).square().sum()
            if number == 0:
                announce_if_long(f"reconstructing {count} images", time.perf_counter() - begun,
                                 len(x), count)
        if shared:
            x, args = next(_batches(images, count, guide))
            elbos, bounds = log_likelihood_bounds(
                _log_weights(model, guide, x, args, iwae_samples, per_image=False))
            elbos, bounds = elbos / count, bounds / count
        else:
            chunk = max(1, min(batch, DECODES_PER_CHUNK // iwae_samples))
            per_chunk, begun = [], time.perf_counter()
            for x, args in _batches(images, chunk, guide):
                per_chunk.append(log_likelihood_bounds(
                    _log_weights(model, guide, x, args, iwae_samples)))
                if len(per_chunk) == 1:
                    announce_if_long(f"the ELBO from {iwae_samples} draws for each of {count} "
                                     f"images",
                                     time.perf_counter() - begun, len(x), count)
            elbos, bounds = map(torch.cat, zip(*per_chunk))
    metrics = {"n_images": count, "mse_per_pixel": squared_error.item() / images.numel(),
               "elbo_nats_per_image": elbos.mean().item(), "guide_factorises": not shared}
    if iwae_samples > 1:
        key = "log_likelihood_bound_nats_per_image"
        metrics[key if not shared else f"batch_{key}"] = bounds.mean().item()
        metrics["iwae_samples"] = iwae_samples
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    if per_image:
        metrics["per_image"] = {"elbo": elbos.tolist(), "log_likelihood_bound": bounds.tolist()}
    return metrics


def check_iwae_samples(iwae_samples: int) -> None:
    """Raise a ConfigError unless ``iwae_samples`` is a count of draws per image that can
    be afforded: from 1 to MAX_IWAE_SAMPLES."""
    check_count("iwae_samples", iwae_samples)
    if iwae_samples > MAX_IWAE_SAMPLES:
        raise ConfigError(f"iwae_samples={iwae_samples:,} draws per image is more than the "
                          f"{MAX_IWAE_SAMPLES:,} allowed (each draw decodes the image once; "
                          f"bounds are usually taken with 100 to 5,000): ask for fewer")


def _batches(images: torch.Tensor, batch_size: int, guide):
    """(images, guide arguments) of consecutive batches, the images' order kept."""
    count = len(images)
    for indices in data.batch_indices(count, batch_size, shuffle=False, device=images.device):
        yield images[indices], guide_args(guide, indices, count)


def _log_weights(model, guide, x, args, samples: int, per_image: bool = True) -> torch.Tensor:
    """(samples, B) log-weights, or (samples,) of the batch, drawn in groups of at most
    DECODES_PER_CHUNK decodes."""
    group = max(1, DECODES_PER_CHUNK // len(x))
    return torch.cat([log_weights(model, guide, x, *args, num_samples=min(group, samples - done),
                                  per_image=per_image)
                      for done in range(0, samples, group)])


def log_likelihood_elpd(model, guide, images: torch.Tensor, *, iwae_samples: int = 100,
                        **options):
    """Each image's importance-weighted bound on log p(x_i) as ArviZ ELPD data, which
    ``arviz.compare`` ranks, with standard errors of each total and of each difference.

    For images the networks were not trained on (a test set) log p(x_i) is itself
    the expected log predictive density of a new image, which is what leave-one-out
    cross-validation approximates for training data: no leaving out is needed, and
    LOO over draws of an image's own latents would not apply. ArviZ labels the column
    ``elpd_loo`` (0.x) or ``elpd`` (1.x); here it is the sum over images of the
    bound with ``iwae_samples`` draws (a lower bound, tighter as the draws grow: compare
    guides or runs at the same K, on the same images). ``p`` (effective parameters)
    is 0: nothing is fitted to the images being scored. ``options`` go to
    :func:`evaluate`; the guide must factorise over the images.
    """
    import arviz
    import numpy as np
    import xarray

    metrics = evaluate(model, guide, images, iwae_samples=iwae_samples, per_image=True,
                       **options)
    pointwise = np.asarray(metrics["per_image"]["log_likelihood_bound"])
    elpd_i = xarray.DataArray(pointwise, dims=["image"])
    total, count = float(pointwise.sum()), len(pointwise)
    se = float(np.sqrt(count * pointwise.var()))
    if int(arviz.__version__.split(".")[0]) >= 1:
        from arviz_stats.utils import ELPDData

        return ELPDData(elpd=total, se=se, p=0.0, n_samples=iwae_samples, n_data_points=count,
                        scale="log", warning=False, good_k=None, elpd_i=elpd_i)
    from arviz.stats.stats_utils import ELPDData

    return ELPDData(data=[total, se, 0.0, iwae_samples, count, False, elpd_i, "log"],
                    index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning",
                           "loo_i", "scale"])
