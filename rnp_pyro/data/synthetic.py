"""Synthetic datasets whose true parts are known: procedural strokes and scenes of objects.

They are the datasets on which a parse can be checked against the parts that made
each image.
"""

from __future__ import annotations

import math

import torch

from ..spatial import warp
from ..errors import DataError
from .images import ImageSet

MAX_STROKES = 4


def draw_strokes(n: int, *, image_size: int = 28, seed: int = 0) -> ImageSet:
    """``n`` grey images of 2 to 4 pen strokes, with each stroke's own image as ``parts``.

    A stroke is a straight line or a circular arc drawn under a random affine map
    (scale, rotation, shear, translation), antialiased through its distance field;
    an image is the sum of its strokes clipped to [0, 1]. The true parts make this the
    dataset on which a parse can be checked. Labels are the number of strokes. The same
    seed gives the same images, and a smaller ``n`` gives a prefix of a larger one.
    """
    if n < 1:
        raise DataError(f"draw_strokes needs a positive number of images, got {n}")
    generator = torch.Generator().manual_seed(seed)
    # one row of uniforms per image, drawn in one call so that rows do not depend on n
    uniforms = torch.rand(n, 1 + MAX_STROKES * 9, generator=generator)
    counts = 2 + (uniforms[:, 0] * (MAX_STROKES - 1)).long().clamp(max=MAX_STROKES - 2)
    strokes = uniforms[:, 1:].reshape(n, MAX_STROKES, 9)

    line = torch.linspace(-1, 1, image_size)
    grid = torch.stack(torch.meshgrid(line, line, indexing="xy"), -1).reshape(-1, 2)  # (HW, 2) x, y
    parts = torch.cat([_draw_stroke_chunk(chunk, grid, image_size)
                       for chunk in strokes.split(1000)])
    present = torch.arange(MAX_STROKES) < counts[:, None]
    parts = parts * present[:, :, None].float()
    parts = parts.reshape(n, MAX_STROKES, 1, image_size, image_size)
    images = parts.sum(1).clamp(max=1)
    return ImageSet(images, counts, "strokes", parts=parts)


def _draw_stroke_chunk(u: torch.Tensor, grid: torch.Tensor, image_size: int) -> torch.Tensor:
    """(n, P, 9) uniforms -> (n, P, HW) ink of each stroke."""
    is_line = u[..., 0] < 0.5
    half_span = math.pi / 4 + u[..., 1] * (3 * math.pi / 4)  # an arc spans 90 to 360 degrees
    scale = 0.25 + 0.35 * u[..., 2]  # half the stroke's length, in image units [-1, 1]
    aspect = torch.exp(0.5 * (u[..., 3] - 0.5))
    angle = math.pi * (2 * u[..., 4] - 1)
    shear = 0.6 * (u[..., 5] - 0.5)
    shift = 0.8 * (u[..., 6:8] - 0.5)
    width = (1.5 + u[..., 8]) * image_size / 28  # pen width in pixels

    # stroke frame -> image: A = R(angle) @ Shear(shear) @ diag(sx, sy), then + shift
    sx, sy = scale * aspect, scale / aspect
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b, c, d = cos * sx, (cos * shear - sin) * sy, sin * sx, (sin * shear + cos) * sy
    det = a * d - b * c
    inverse = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    inverse = inverse / det[..., None, None]
    local = (grid - shift[:, :, None, :]) @ inverse.transpose(-1, -2)  # (n, P, HW, 2) stroke frame
    x, y = local.unbind(-1)

    line_distance = torch.hypot((x.abs() - 1).clamp(min=0), y)
    # a unit-circle arc over angles [-half_span, half_span], its extent centred on the origin;
    # a point is beside the arc when its angle is within the span, else nearest an end
    end_x, end_y = torch.cos(half_span)[..., None], torch.sin(half_span)[..., None]
    ax = x + (1 + end_x) / 2
    radius = torch.hypot(ax, y)
    beside = ax >= radius * end_x
    arc_distance = torch.where(beside, (radius - 1).abs(), torch.hypot(ax - end_x, y.abs() - end_y))

    distance = torch.where(is_line[..., None], line_distance, arc_distance)
    # back to pixels: the map's mean stretch, times pixels per image unit
    pixels = distance * det.abs().sqrt()[..., None] * (image_size - 1) / 2
    return (width[..., None] / 2 + 0.5 - pixels).clamp(0, 1)


def compose_scenes(objects: ImageSet, *, image_size: int = 48, per_scene: int = 2,
                   seed: int = 0, chunk: int = 2048) -> ImageSet:
    """Scenes of ``per_scene`` randomly transformed objects on an ``image_size`` canvas
    (the PNAS paper's pairs of digits, Fig. 4B), with each placed object as ``parts``.

    Scene i holds object i and ``per_scene - 1`` others chosen at random. Each is
    drawn 1/s of the canvas across, s uniform in [1.8, 2.4], turned by up to 30
    degrees either way, and centred anywhere its unturned box stays on the canvas;
    a scene is the sum of its objects clipped to [0, 1]. Labels are those of object i.
    The same seed and objects give the same scenes.
    """
    count = len(objects)
    if per_scene < 1 or (per_scene > 1 and count < 2):
        raise DataError(f"scenes of {per_scene} objects need at least 2 objects and "
                        f"per_scene >= 1; got {count} objects")
    generator = torch.Generator().manual_seed(seed)
    uniforms = torch.rand(count, per_scene, 5, generator=generator)
    others = (torch.arange(count)[:, None] + 1 +
              (uniforms[:, 1:, 0] * (count - 1)).long().clamp(max=count - 2)) % count
    which = torch.cat([torch.arange(count)[:, None], others], 1)  # (N, per_scene)

    scale = 1.8 + 0.6 * uniforms[..., 1]
    angle = (math.pi / 6) * (2 * uniforms[..., 2] - 1)
    centre = (1 - 1 / scale)[..., None] * (2 * uniforms[..., 3:5] - 1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    linear = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    # canvas point p -> object frame: s R (p - centre)
    shift = -(linear @ centre[..., None])
    theta = torch.cat([linear, shift], -1)  # (N, per_scene, 2, 3)

    channels = objects.images.shape[1]
    parts = torch.empty(count, per_scene, channels, image_size, image_size)
    for start in range(0, count, chunk):
        rows = slice(start, start + chunk)
        drawn = warp(objects.images[which[rows]], theta[rows], image_size)
        parts[rows] = drawn.clamp_(0, 1)
    labels = None if objects.labels is None else objects.labels.clone()
    return ImageSet(parts.sum(1).clamp(max=1), labels, f"scenes of {objects.name}", parts=parts)


def tint(grey: ImageSet, *, seed: int = 0) -> ImageSet:
    """Grey images (N, 1, H, W) as RGB, each in a colour of its own: the pixel times a
    colour whose channels are uniform in [0.25, 1] (the PNAS paper's tinted
    Fashion-MNIST, a transfer target for a model of coloured objects). The same seed
    gives the same colours, and a smaller set a prefix of a larger one's."""
    colours = 0.25 + 0.75 * torch.rand(len(grey), 3, generator=torch.Generator().manual_seed(seed))
    return ImageSet(grey.images * colours[:, :, None, None], grey.labels,
                    f"tinted {grey.name}")
