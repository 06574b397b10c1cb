"""Actions as affine maps: placing a child canvas in its parent's frame, and back.

An action ``a`` in [-1, 1]^6 is read as (scale_x, scale_y, rotation, shear, tx, ty):

    s = a[scale] + 1 + scale_offset            per axis, in [offset, offset + 2]
    A = R(rotation_range * a[rot]) @ Shear(a[shear]) @ diag(s),   b = s * a[trans]

``A p + b`` maps a point p of the parent's frame (coordinates in [-1, 1]) to the
child's frame. The grid is scaled *up* by s >= offset, so a child appears 1/s the
size of its parent: the scale offset is what makes parts smaller than their parent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ACTION_DIM = 6


def affine_matrices(action: torch.Tensor, scale_offset: float,
                    rotation_range: float) -> torch.Tensor:
    """(*, 6) actions -> (*, 2, 3) matrices [A | b] from parent to child coordinates."""
    if action.shape[-1] != ACTION_DIM:
        raise ValueError(f"actions need a last dimension of {ACTION_DIM}, got {tuple(action.shape)}")
    scale = action[..., 0:2] + 1.0 + scale_offset
    angle = rotation_range * action[..., 2]
    shear = action[..., 3]
    shift = scale * action[..., 4:6]
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = scale[..., 0], scale[..., 1]
    # R @ [[1, shear], [0, 1]] @ diag(sx, sy)
    a00 = cos * sx
    a01 = (cos * shear - sin) * sy
    a10 = sin * sx
    a11 = (sin * shear + cos) * sy
    rows = [torch.stack([a00, a01, shift[..., 0]], -1), torch.stack([a10, a11, shift[..., 1]], -1)]
    return torch.stack(rows, -2)


def invert(theta: torch.Tensor) -> torch.Tensor:
    """Inverse of (*, 2, 3) affine maps."""
    linear, shift = theta[..., :2], theta[..., 2:]
    inverse = torch.linalg.inv(linear)
    return torch.cat([inverse, -inverse @ shift], -1)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (N, C, height, width), align_corners=True)``, computed as one
    batched product on a shared pixel grid rather than a grid copied per map (about
    twice as fast on CPUs for the many small canvases of a tree)."""
    count = theta.shape[0]
    ys = torch.linspace(-1, 1, height, device=theta.device, dtype=theta.dtype)
    xs = torch.linspace(-1, 1, width, device=theta.device, dtype=theta.dtype)
    pixels = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width)], -1)
    grid = torch.baddbmm(theta[:, None, :, 2], pixels.view(1, -1, 2).expand(count, -1, 2),
                         theta[:, :, :2].transpose(1, 2))
    return grid.view(count, height, width, 2)


def warp(image: torch.Tensor, theta: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Bilinear sampling of ``image`` (*, C, h, w) at ``theta`` applied to the output grid.

    The output is ``size`` x ``size`` pixels (default: the input's size); coordinates
    are in [-1, 1] on both sides, so an image of any resolution fills the same frame.
    """
    lead = image.shape[:-3]
    flat = image.reshape(-1, *image.shape[-3:])
    height, width = (size, size) if size else flat.shape[-2:]
    theta = theta.expand(*lead, 2, 3).reshape(-1, 2, 3)
    grid = affine_grid(theta, height, width)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(*lead, *out.shape[-3:])


def place(child_canvas: torch.Tensor, action: torch.Tensor, scale_offset: float,
          rotation_range: float, size: int | None = None) -> torch.Tensor:
    """A child's canvas (*, C, h, w) drawn in its parent's frame under ``action`` (*, 6).

    The geometry (``scale_offset``, ``rotation_range``) is the model's, which has no
    default: ``RNP.place`` uses its own. The parent's frame is ``size`` pixels square
    (default: the child's size).
    """
    return warp(child_canvas, affine_matrices(action, scale_offset, rotation_range), size)


def crop(parent_canvas: torch.Tensor, action: torch.Tensor, scale_offset: float,
         rotation_range: float, size: int | None = None) -> torch.Tensor:
    """The region of a parent canvas that ``action`` places a child in, zoomed to the
    parent's size (or ``size`` pixels square).

    The inverse of :func:`place` (up to resampling and what falls outside the frame):
    the target of the papers' part-level loss.
    """
    return warp(parent_canvas, invert(affine_matrices(action, scale_offset, rotation_range)),
                size)
