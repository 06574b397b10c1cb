"""What every dataset shares: the image set, its errors, its checks and its minibatches.

Training slices minibatches out of one tensor kept whole on the device
(:func:`batches`) rather than running a DataLoader, whose per-item collation and
worker processes would cost more than the model step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import DataError
from ..plates import check_pixel_values


@dataclass
class ImageSet:
    """Images as one float32 tensor (N, C, H, W) in [0, 1], with optional labels.

    ``parts`` (N, P, C, H, W) holds the true parts of synthetic images, zeros where an
    image has fewer than P parts.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    parts: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def _apply(self, fn) -> "ImageSet":
        keep = lambda t: None if t is None else fn(t)  # noqa: E731
        return dataclasses.replace(self, images=fn(self.images), labels=keep(self.labels),
                                   parts=keep(self.parts))

    def to(self, device) -> "ImageSet":
        """A copy with every tensor on ``device``."""
        return self._apply(lambda t: t.to(device))

    def subset(self, n: int) -> "ImageSet":
        """The first ``n`` images."""
        return self._apply(lambda t: t[:n])

    def filter_classes(self, classes=None, exclude=()) -> "ImageSet":
        """Only the images whose label is in ``classes`` (None: any) and not in ``exclude``."""
        if classes is None and not exclude:
            return self
        if self.labels is None:
            raise DataError(f"{self.name} has no labels to filter by; use a labelled dataset")
        keep = ~torch.isin(self.labels, torch.as_tensor(list(exclude), dtype=self.labels.dtype,
                                                        device=self.labels.device))
        if classes is not None:
            keep &= torch.isin(self.labels, torch.as_tensor(list(classes), dtype=self.labels.dtype,
                                                            device=self.labels.device))
        if not keep.any():
            raise DataError(f"no image of {self.name} is left after keeping classes {classes} "
                            f"and excluding {list(exclude)}; its labels are "
                            f"{sorted(self.labels.unique().tolist())}")
        return self._apply(lambda t: t[keep])


def to_unit_images(pixels: torch.Tensor, image_size: int, full_scale: int = 255,
                   chunk: int = 4096) -> torch.Tensor:
    """Integer pixels (N, C, H, W) from 0 to ``full_scale`` (255 for 8 bits, 65535 for
    16) -> float32 in [0, 1] at ``image_size``, bilinear with antialiasing.

    Converted in chunks so that large sets never hold more than one float copy.
    """
    out = torch.empty(len(pixels), pixels.shape[1], image_size, image_size)
    for start in range(0, len(pixels), chunk):
        images = pixels[start:start + chunk].float().div_(full_scale)
        if images.shape[-2:] != (image_size, image_size):
            images = F.interpolate(images, size=(image_size, image_size), mode="bilinear",
                                   antialias=True, align_corners=False).clamp_(0, 1)
        out[start:start + chunk] = images
    return out


def unit_images(images, *, channels: int, image_size: int) -> torch.Tensor:
    """``images`` as float32 (N, C, H, W) in [0, 1], checked (:func:`check_images`): uint8
    pixels are divided by 255 and other float types cast, as a user giving them means."""
    if isinstance(images, torch.Tensor):
        if images.dtype == torch.uint8:
            images = images.float().div(255)
        elif images.is_floating_point() and images.dtype != torch.float32:
            images = images.float()
    check_images(images, channels=channels, image_size=image_size)
    return images


def check_images(images, *, channels: int, image_size: int) -> None:
    """Raise a DataError saying what is wrong unless ``images`` is (N, C, H, W) float in [0, 1]."""
    expected = f"(N, {channels}, {image_size}, {image_size})"
    if not isinstance(images, torch.Tensor):
        raise DataError(f"images must be a torch.Tensor, got {type(images).__name__}; "
                        f"convert with torch.as_tensor(images)")
    if images.ndim != 4:
        raise DataError(f"images must be 4-D {expected}, got shape {tuple(images.shape)}; reshape "
                        f"them, e.g. images.reshape(-1, {channels}, {image_size}, {image_size})")
    if not images.is_floating_point():
        raise DataError(f"images must be floating point in [0, 1], got {images.dtype}; "
                        f"convert with images.float() / 255")
    count, found_channels, height, width = images.shape
    if count == 0:
        raise DataError(f"no images: got shape {tuple(images.shape)}; pass at least one image")
    if found_channels != channels:
        raise DataError(f"images have {found_channels} channels, expected {channels}; convert "
                        f"them or set channels={found_channels}")
    if (height, width) != (image_size, image_size):
        raise DataError(f"images are {height}x{width}, expected {image_size}x{image_size}; "
                        f"resize them (e.g. torch.nn.functional.interpolate) or set image_size")
    check_pixel_values(images, "the images")


def batch_indices(count: int, batch_size: int, *, shuffle: bool,
                  generator: torch.Generator | None = None, device=None):
    """Index tensors of minibatches over ``count`` items, the last one possibly smaller.

    Shuffled order comes from ``generator`` (on any device) and covers every index once;
    the indices end up on ``device``.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    if shuffle:
        gen_device = generator.device if generator is not None else device
        order = torch.randperm(count, generator=generator, device=gen_device).to(device)
    else:
        order = torch.arange(count, device=device)
    yield from order.split(batch_size)


def batches(images: torch.Tensor, batch_size: int, *, shuffle: bool,
            generator: torch.Generator | None = None, labels: torch.Tensor | None = None):
    """Minibatches of a tensor kept whole on its device (see :func:`batch_indices`).

    Yields image batches, or (images, labels) pairs when ``labels`` (on the same device)
    is given.
    """
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{len(images)} images but {len(labels)} labels; pass one label per image")
    for index in batch_indices(len(images), batch_size, shuffle=shuffle, generator=generator,
                               device=images.device):
        yield images[index] if labels is None else (images[index], labels[index])
