"""Fitting a guide to given images with the model held fixed.

This is test-time inference for per-image guides (their parameters are per image,
so new images need their own), and the per-image optimum that the amortization gap
is measured against.
"""

from __future__ import annotations

import torch

from ..data import batch_indices
from ..errors import check_count
from ..guides.registry import is_per_image, keeps_positions
from ..modes import frozen, own_random_stream
from .objectives import make_objective

__all__ = ["fit_guide", "guide_args", "loss_divisor"]


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
    with frozen(model), own_random_stream(seed, images.device):
        while len(losses) < steps:
            for indices in batch_indices(count, batch_size, shuffle=True, generator=generator,
                                         device=images.device):
                x = images[indices]
                loss = elbo.loss_and_grads(model, guide, x, *guide_args(guide, indices, count))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss / loss_divisor(guide, len(x), count))
                if len(losses) == steps:
                    break
    return losses
