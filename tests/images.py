"""Shared test helpers."""

import torch

from rnp_pyro import presets

TINY_SIZE = 16  # side of the images tiny_strokes is built for


def tiny_strokes(**overrides):
    """The strokes preset at 16 px with narrow networks: a step takes milliseconds."""
    base = dict(image_size=TINY_SIZE, z_dim=6, taus=(3, 2), hyper_width=16,
                program_encoder=(12, 8), patch_hidden=12, encoder_channels=8, encoder_convs=1,
                encoder_blocks=1, encoder_dense=(16,), batch_size=32)
    return presets.get("strokes", **{**base, **overrides})


def rectangles(n, size=28):
    """Images of one bright axis-aligned rectangle each, at random places and sizes."""
    images = torch.zeros(n, 1, size, size)
    corners = torch.randint(0, size - 8, (n, 2))
    sides = torch.randint(6, 9, (n, 2))
    for image, (top, left), (height, width) in zip(images, corners.tolist(), sides.tolist()):
        image[:, top:top + height, left:left + width] = 1.0
    return images
