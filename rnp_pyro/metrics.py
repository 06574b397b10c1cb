"""Test metrics of a model and guide: reconstruction error, ELBO and log-likelihood bound
(:func:`evaluate`, also ``rnp_pyro.evaluate``), and what each latent level carries
(:func:`kl_per_level`, :func:`explained_per_level`)."""

from __future__ import annotations

import time

import pyro
import torch
from pyro import poutine
from torch.distributions import kl_divergence

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


def kl_per_level(model, guide, images: torch.Tensor, *, batch_size: int = 500,
                 seed: int = 0) -> dict[int, float]:
    """The KL term of the ELBO split by latent level, in nats per image: {K: ..., ...,
    0: ...}, top first (the top level alone for a deterministic tree).

    Level k's term is E_q[KL(q(z^k_t | its parents, x) || p(z^k_t | its parents))] summed
    over its sites (one per program step): each site's KL in closed form given the
    parents the guide drew (one draw per image), or, for a pair of distributions without
    one, its log-ratio at the draw. The levels add up to the ELBO's whole KL term,
    E_q[log q(z | x) - log p(z)]. A guide that draws a level from the model's own
    conditional prior (the encoder guide with stochastic levels) has 0 there.
    """
    tree = model.config
    images = data.unit_images(images, channels=tree.channels, image_size=tree.image_size)
    level_of = {site: level for level, sites in tree.sites_by_level.items() for site in sites}
    totals = dict.fromkeys(tree.sites_by_level, 0.0)
    with evaluating(model, guide), own_random_stream(seed, images.device), \
            pyro.validation_enabled(False):
        for x, args in _batches(images, min(batch_size, len(images)), guide):
            guide_trace = poutine.trace(guide).get_trace(x, *args)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
                x, *args)
            for site, level in level_of.items():
                q, p = guide_trace.nodes[site], model_trace.nodes[site]
                try:
                    kl = kl_divergence(q["fn"], p["fn"])
                except NotImplementedError:
                    kl = q["fn"].log_prob(q["value"]) - p["fn"].log_prob(q["value"])
                totals[level] += kl.sum().item()
    return {level: total / len(images) for level, total in totals.items()}


def explained_per_level(model, guide, images: torch.Tensor, *,
                        batch_size: int = 500) -> dict:
    """How much of the images each latent level explains, from the guide's means.

    For each level k (top first), ``mse[k]`` is the squared error per pixel of the
    canvas decoded with the latents of levels K..k at the guide's means and those
    below at the model's conditional means given them (what their programs emit):
    ``mse[K]`` is the top-level program's drawing alone, ``mse[0]`` the
    reconstruction. ``explained[k]`` is the share of the images' energy (the black
    canvas's error, ``black``) that level k removes: (mse[k + 1] - mse[k]) / black,
    with mse[K + 1] = black. A deterministic tree has the top level only.
    """
    tree = model.config
    images = data.unit_images(images, channels=tree.channels, image_size=tree.image_size)
    squared = dict.fromkeys(tree.sites_by_level, 0.0)
    with evaluating(model, guide), pyro.validation_enabled(False):
        for x, args in _batches(images, min(batch_size, len(images)), guide):
            means = guides.posterior_means(guide, x, *args)
            for cut in squared:
                given = {site: means[site] for level, sites in tree.sites_by_level.items()
                         if level >= cut for site in sites}
                with guides.AtMeans():
                    canvas = guides.decode_latents(model, given).canvas
                squared[cut] += (canvas - x).square().sum().item()
    black = images.square().mean().item()
    mse = {level: total / images.numel() for level, total in squared.items()}
    above, explained = black, {}
    for level, error in mse.items():
        explained[level] = (above - error) / black
        above = error
    return {"black": black, "mse": mse, "explained": explained}


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
