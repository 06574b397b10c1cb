"""Fitting a guide to given images with the model held fixed.

This is test-time inference for per-image guides (their parameters are per image,
so new images need their own), and the per-image optimum that the amortization gap
is measured against.
"""

from __future__ import annotations

import logging
import time

import torch

from .. import guides
from ..data import batch_indices
from ..errors import ConfigError, check_count
from ..eta import announce_if_long
from ..guides.registry import is_per_image, keeps_positions
from ..modes import evaluating, frozen, own_random_stream
from .objectives import make_objective

__all__ = ["fit_guide", "guide_args", "guide_for_images", "loss_divisor"]

log = logging.getLogger("rnp_pyro")
FIT_STEPS = 300  # steps that fit a per-image guide to new images, by default
ENCODES_PER_CHUNK = 4000  # images encoded at once when starting per-image guides


def guide_args(guide, indices: torch.Tensor, dataset_size: int) -> tuple:
    """The extra model/guide arguments of a batch: its indices for per-image guides."""
    return (indices, dataset_size) if is_per_image(guide) else ()


def loss_divisor(guide, batch_size: int, dataset_size: int) -> int:
    """What a batch's loss is divided by to be in nats per image: the dataset size for
    per-image guides (their subsampled plate scales the loss up to the whole dataset),
    else the batch size."""
    return dataset_size if is_per_image(guide) else batch_size


def fit_guide(model, guide, images: torch.Tensor, *, steps: int, batch_size: int = 500,
              lr: float = 0.05, objective: str = "elbo", num_particles: int = 1,
              seed: int = 0) -> list[float]:
    """Train only ``guide``'s parameters on ``images`` for ``steps`` steps; the losses.

    The model is frozen (no gradients, eval mode) throughout. Losses are in nats
    per image. The caller's random stream is left as it was. Batches are shuffled;
    per-image guides get each batch's indices, so every image is fitted with its own
    parameters. Pyro's other autoguides know images by position only and are fitted
    on all images at once (``batch_size`` at least the number of images).
    """
    check_count("steps", steps)
    check_count("batch_size", batch_size)
    if keeps_positions(guide) and batch_size < len(images):
        raise ValueError(f"{type(guide).__name__} knows images by their position in the batch, "
                         f"so a batch of {batch_size} of the {len(images)} images would be fitted "
                         f"with other images' parameters: pass batch_size={len(images)}, or use "
                         f"a per-image guide (rnp_pyro.guides.ImageNormal, ImageDelta)")
    elbo = make_objective(objective, num_particles)
    parameters = [p for p in guide.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    count, losses = len(images), []
    started = time.perf_counter()
    with frozen(model), own_random_stream(seed, images.device):
        while len(losses) < steps:
            for indices in batch_indices(count, batch_size, shuffle=True, generator=generator,
                                         device=images.device):
                x = images[indices]
                loss = elbo.loss_and_grads(model, guide, x, *guide_args(guide, indices, count))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss / loss_divisor(guide, len(x), count))
                if len(losses) == 1:
                    announce_if_long(f"fitting the guide to {count} images, {steps} steps",
                                     time.perf_counter() - started, 1, steps)
                if len(losses) == steps:
                    break
    return losses


def guide_for_images(model, trained, config: guides.GuideConfig, images: torch.Tensor,
                     name: str | None = None, *, fit_steps: int = FIT_STEPS, **fit_options):
    """The guide ``name`` (default: ``config.kind``, the trained guide's) ready for
    ``images``, beside the ``trained`` guide of ``model`` built from ``config``; and
    what fitting it took.

    The trained guide serves as it is when it is amortized and of that kind. A fresh
    amortized guide whose only networks are an encoder takes the trained guide's
    encoder. A per-image guide starts each image where the trained guide's encoder
    puts it (when there is one) and is fitted to ``images`` with the model frozen
    (``fit_options`` go to :func:`fit_guide`).
    """
    name = name or config.kind
    check_count("fit_steps", fit_steps)
    if name == config.kind and not is_per_image(trained):
        return trained, {}
    fresh_config = config.replace(kind=name)
    if guides.guide_class(name).per_image:
        log.info(f"fitting a {name} guide to {len(images)} images ({fit_steps} steps)")
        fresh = guides.build(fresh_config, model, example=images, dataset_size=len(images))
        fresh.to(images.device)
        if hasattr(trained, "encode"):  # start each image where the trained encoder puts it
            with evaluating(trained):
                fresh.start_from(*(torch.cat(part) for part in zip(
                    *(trained.encode(x) for x in images.split(ENCODES_PER_CHUNK)))))
        started = time.perf_counter()
        losses = fit_guide(model, fresh, images, steps=fit_steps, **fit_options)
        return fresh, {"fit_steps": fit_steps, "fit_final_loss": losses[-1],
                       "fit_seconds": round(time.perf_counter() - started, 3)}
    fresh = guides.build(fresh_config, model)
    encoder = getattr(trained, "encoder", None)
    try:
        if encoder is None:
            raise RuntimeError
        fresh.load_state_dict({f"encoder.{key}": value
                               for key, value in encoder.state_dict().items()})
    except RuntimeError:
        raise ConfigError(f"a {name!r} guide cannot be taken from a run trained with the "
                          f"{config.kind!r} guide: it has networks of its own to train; "
                          f"choose a per-image guide, or one whose only network is the "
                          f"trained encoder") from None
    return fresh.to(images.device), {}
