"""Images with known content for tests."""

import torch


def rectangles(n, size=28):
    """Images of one bright axis-aligned rectangle each, at random places and sizes."""
    images = torch.zeros(n, 1, size, size)
    corners = torch.randint(0, size - 8, (n, 2))
    sides = torch.randint(6, 9, (n, 2))
    for image, (top, left), (height, width) in zip(images, corners.tolist(), sides.tolist()):
        image[:, top:top + height, left:left + width] = 1.0
    return images
