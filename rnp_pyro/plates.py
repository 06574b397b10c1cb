"""What every model and guide shares about a batch of images: the ``data`` plate over
them, and the check of their shape."""

from __future__ import annotations

import pyro
import torch


def data_plate(x: torch.Tensor, indices: torch.Tensor | None = None,
               dataset_size: int | None = None) -> pyro.plate:
    """The ``data`` plate (dim -1) over a batch of images x (*, B, C, H, W).

    Given the batch's ``indices`` in a dataset of ``dataset_size`` images, the plate is
    subsampled: per-image guides (Pyro's autoguides) then keep one set of parameters
    per image of the dataset and use the batch's, and log-densities are scaled by
    dataset_size / B, so a loss estimates the whole dataset's.
    """
    batch = x.shape[-4]
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
    """Raise a ValueError unless ``x`` is (*B, C, H, W) with ``image_shape``; cheap enough per step.

    ``user`` names what needs the images ("the model", "the encoder") in the message.
    Their values are not read here (that would wait for the device every step):
    ``rnp_pyro.data.unit_images`` checks and converts whole sets.
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
