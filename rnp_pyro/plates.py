"""What every model and guide shares about a batch of images: the ``data`` plate over
them, and the checks of their shape and values."""

from __future__ import annotations

import pyro
import pyro.distributions
import torch

from .errors import DataError

# pixel values a model or encoder accepts while Pyro's validation is on: [0, 1] with
# room for the likelihood's noise on the model's own draws (sd 0.22 in the presets)
PLAUSIBLE_PIXELS = (-2.0, 3.0)


def data_plate(x: torch.Tensor | None, indices: torch.Tensor | None = None,
               dataset_size: int | None = None, batch_size: int | None = None) -> pyro.plate:
    """The ``data`` plate (dim -1) over a batch of images x (*, B, C, H, W), or over
    ``batch_size`` images to generate when x is None (:func:`batch_size_of`).

    Given the batch's ``indices`` in a dataset of ``dataset_size`` images, the plate is
    subsampled: per-image guides (Pyro's autoguides) then keep one set of parameters
    per image of the dataset and use the batch's, and log-densities are scaled by
    dataset_size / B, so a loss estimates the whole dataset's.
    """
    batch = batch_size_of(x, batch_size)
    if indices is None:
        if dataset_size not in (None, batch):
            raise ValueError(f"dataset_size={dataset_size} needs the batch's indices in the "
                             f"dataset; pass indices=... (a tensor of {batch} positions)")
        return pyro.plate("data", batch, dim=-1)
    if indices.shape != (batch,):
        raise ValueError(f"indices must hold one position per image, shape ({batch},); "
                         f"got {tuple(indices.shape)}")
    return _IndexedPlate("data", dataset_size or batch, subsample=indices, dim=-1)


class _IndexedPlate(pyro.plate):
    """A subsampled ``pyro.plate`` whose per-item parameters are always the batch's rows.

    Pyro selects the rows of a parameter declared with ``event_dim`` only when the batch
    is smaller than the plate; a batch as large as the dataset in another order (a
    shuffled full batch) would get the rows in stored order, and image i would be
    fitted with image j's parameters. Here such a batch gets its own rows too.
    """

    def _postprocess_message(self, msg) -> None:
        super()._postprocess_message(msg)
        event_dim = msg["kwargs"].get("event_dim")
        if msg["type"] != "param" or event_dim is None or self.subsample_size < self.size:
            return  # not a per-item parameter, or Pyro has selected its rows
        value, dim = msg["value"], self.dim - event_dim
        if value.dim() < -dim or value.shape[dim] == 1:
            return  # broadcast along the plate: shared by every item
        msg["value"] = value.index_select(dim, self._indices.to(value.device))


def check_batch_shape(x: torch.Tensor, image_shape: tuple[int, int, int], user: str) -> None:
    """Raise unless ``x`` is a non-empty (*B, C, H, W) float tensor with ``image_shape``.

    ``user`` names what needs the images ("the model", "the encoder") in the message.
    The pixel values are checked too while Pyro's validation is on, as it is for a
    user's calls (training steps after the first turn it off, since reading values
    waits for the device): NaN, and values beyond PLAUSIBLE_PIXELS, such as 8-bit
    pixels. Images are in [0, 1], but the model's own draws, noise included, stray a
    little outside, and simulation-based checks feed those back in.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{user} needs images as a torch.Tensor (*B, C, H, W) of floats in "
                        f"[0, 1]; got {type(x).__name__}: convert with torch.as_tensor(x)")
    if not x.is_floating_point():
        raise TypeError(f"{user} needs images of floats in [0, 1]; got {x.dtype}: convert "
                        f"with x.float() / 255 for 8-bit pixels")
    if x.dim() < 4 or tuple(x.shape[-3:]) != tuple(image_shape):
        channels, height, width = image_shape
        raise ValueError(f"{user} needs images of shape (*B, {channels}, {height}, {width}), "
                         f"got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{user} got no images (shape {tuple(x.shape)}); pass at least one, "
                         f"or x=None with batch_size=N to generate N")
    if pyro.distributions.is_validation_enabled():
        check_pixel_values(x, user, PLAUSIBLE_PIXELS)


def check_pixel_values(x: torch.Tensor, user: str,
                       bounds: tuple[float, float] = (0.0, 1.0)) -> None:
    """Raise a DataError saying how to fix pixels of ``x`` that are not finite or lie
    outside ``bounds`` (8-bit values, [-1, 1], NaN)."""
    bad = (~torch.isfinite(x)).sum().item()
    if bad:
        raise DataError(f"{user} got {bad} NaN or infinite pixel values; replace or drop "
                        f"those images")
    low, high = x.min().item(), x.max().item()
    if low < bounds[0] or high > bounds[1]:
        if low >= 0 and high <= 255:
            fix = "divide by 255"
        elif low >= -1 and high <= 1:
            fix = "map [-1, 1] to [0, 1] with (x + 1) / 2"
        else:
            fix = "rescale them, e.g. (x - x.min()) / (x.max() - x.min())"
        raise DataError(f"{user} needs pixels in [0, 1]; found min {low:.3g} max {high:.3g}: "
                        f"{fix}")


def batch_size_of(x: torch.Tensor | None, batch_size: int | None) -> int:
    """The batch size of a model call: x's (*B, C, H, W), or ``batch_size`` images to
    generate when x is None (Pyro's way to draw the observations)."""
    if x is None:
        if batch_size is None:
            return 1
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number of images >= 1, got "
                             f"{batch_size!r}")
        return batch_size
    if batch_size is not None and batch_size != x.shape[-4]:
        raise ValueError(f"batch_size={batch_size} but x holds {x.shape[-4]} images; give "
                         f"one of them (batch_size is for x=None, to generate images)")
    return x.shape[-4]
