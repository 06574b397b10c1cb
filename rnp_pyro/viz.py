"""Figures of parse trees: what the model draws, and which part drew what.

Parts are coloured in the papers' order (blue, red, green, orange, ...) and summed on
black, so that overlapping parts mix their colours and each stroke shows its author.
Canvases are sums of placed parts, so they are clamped to [0, 1] for display.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from . import guides
from .infer.fitting import guide_args
from .modes import evaluating
from .tree import Tree

PART_COLOURS = (
    (0.20, 0.40, 1.00),  # blue
    (1.00, 0.15, 0.15),  # red
    (0.15, 0.85, 0.15),  # green
    (1.00, 0.60, 0.00),  # orange
    (0.70, 0.30, 1.00),  # purple
    (0.00, 0.85, 0.85),  # cyan
    (1.00, 0.95, 0.20),  # yellow
    (1.00, 0.45, 0.75),  # pink
)

GAP = 2  # white pixels between panels
BORDER = 2  # pixels of a panel's frame (coloured around a part's box, black elsewhere)
HEADER = 16  # pixels of the column labels above a parse figure
BLACK = (0.0, 0.0, 0.0)


def colour_parts(placed: torch.Tensor, palette=PART_COLOURS) -> torch.Tensor:
    """(*B, n, C, H, W) parts in one frame -> (*B, 3, H, W): part t in palette[t], summed.

    Grey parts use their intensity, RGB parts their mean over channels: colour here
    says *which* part drew a pixel, not what colour it drew.
    """
    if placed.dim() < 4:
        raise ValueError(f"colour_parts needs parts of shape (*B, n, C, H, W), got {tuple(placed.shape)}")
    n = placed.shape[-4]
    colours = torch.tensor([palette[t % len(palette)] for t in range(n)],
                           dtype=placed.dtype, device=placed.device)
    intensity = placed.mean(-3)
    return torch.einsum("...nhw,nc->...chw", intensity, colours).clamp(0, 1)


def parse_figure(tree: Tree, images: torch.Tensor, path: str | Path, max_images: int = 8,
                 zoom: int = 2) -> Path:
    """The PNAS paper's Figure 2A: one row per image, saved as a PNG.

    Columns: the input, its reconstruction, the parts coloured in the image's frame,
    then one box per part showing that part in its own frame with *its* sub-parts
    coloured, bordered in the part's colour. Trees without sub-parts stop after the
    parts column; a one-level tree (a baseline without parts) after the reconstruction.
    """
    canvas = tree.canvas
    if canvas.dim() != 4:
        raise ValueError(f"parse_figure needs a tree decoded from one batch of images, "
                         f"got canvases of shape {tuple(canvas.shape)}")
    if images.shape != canvas.shape:
        raise ValueError(f"images {tuple(images.shape)} do not match the tree's canvases "
                         f"{tuple(canvas.shape)}; pass the images the tree was decoded from")
    m = min(len(images), max_images)
    columns = {"input": _framed(_rgb(images[:m]), zoom), "recon": _framed(_rgb(canvas[:m]), zoom)}
    if len(tree.levels) > 1:
        columns["parts"] = _framed(colour_parts(_display(tree.levels[1].placed[:m])), zoom)
    if len(tree.levels) > 2:
        boxes = colour_parts(_display(tree.children_placed(1)[:m]))  # (m, tau, 3, H, W)
        for t in range(boxes.shape[1]):
            colour = PART_COLOURS[t % len(PART_COLOURS)]
            columns[f"part {t + 1}"] = _framed(boxes[:, t], zoom, colour)
    cells = torch.stack(list(columns.values()), 1).flatten(0, 1)  # row by row
    grid = make_grid(cells, nrow=len(columns), padding=GAP, pad_value=1.0)
    return _save(grid, path, labels=list(columns), cell_width=cells.shape[-1])


def samples_figure(tree: Tree, path: str | Path, coloured: bool = True, nrow: int = 8,
                   zoom: int = 2) -> Path:
    """A grid of prior samples; below it, when the tree has parts, the same samples coloured by part."""
    if tree.canvas.dim() != 4:
        raise ValueError(f"samples_figure needs a tree with one batch dimension, "
                         f"got canvases of shape {tuple(tree.canvas.shape)}")
    blocks = [_rgb(tree.canvas)]
    if coloured and len(tree.levels) > 1:
        blocks.append(colour_parts(_display(tree.levels[1].placed)))
    grids = [make_grid(_framed(block, zoom), nrow=nrow, padding=GAP, pad_value=1.0) for block in blocks]
    return _save(torch.cat(grids, -2), path)


def save_run_figures(model, guide, images: torch.Tensor, out_dir: str | Path, n: int = 8) -> list[Path]:
    """Parse figure of the guide's mean for the first ``n`` images, and ``n`` prior samples.

    ``images`` must be on the device of the model and guide; a per-image guide must
    have been fitted to them (as its dataset). Writes ``reconstructions.png`` and
    ``samples.png`` into ``out_dir`` and returns their paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    indices = torch.arange(min(n, len(images)), device=images.device)
    shown = images[indices]
    with evaluating(model, guide):
        parsed = guides.reconstruct(model, guide, shown, *guide_args(guide, indices, len(images)))
        sampled = model.sample(n)
    return [parse_figure(parsed, shown, out_dir / "reconstructions.png", max_images=n),
            samples_figure(sampled, out_dir / "samples.png")]


def _display(canvases: torch.Tensor) -> torch.Tensor:
    return canvases.detach().float().cpu()


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) grey or RGB -> (N, 3, H, W) in [0, 1] on the CPU."""
    channels = images.shape[-3]
    if channels not in (1, 3):
        raise ValueError(f"images must have 1 (grey) or 3 (RGB) channels, got {channels}")
    return _display(images).expand(-1, 3, -1, -1).clamp(0, 1)


def _framed(images: torch.Tensor, zoom: int, colour=BLACK) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, zoom * H + 2 * BORDER, ...): enlarged, in a frame of ``colour``."""
    enlarged = F.interpolate(images, scale_factor=zoom, mode="nearest")
    n, _, h, w = enlarged.shape
    frame = torch.tensor(colour).view(1, 3, 1, 1).repeat(n, 1, h + 2 * BORDER, w + 2 * BORDER)
    frame[..., BORDER:BORDER + h, BORDER:BORDER + w] = enlarged
    return frame


def _save(grid: torch.Tensor, path: str | Path, labels=(), cell_width: int = 0) -> Path:
    """Write a (3, H, W) grid as a PNG, with one label centred above each column if given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = grid.mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels)
    if labels:
        page = Image.new("RGB", (image.width, image.height + HEADER), "white")
        page.paste(image, (0, HEADER))
        draw = ImageDraw.Draw(page)
        font = ImageFont.load_default(size=HEADER - 5)
        for column, label in enumerate(labels):
            centre = GAP + column * (cell_width + GAP) + cell_width / 2
            draw.text((centre, HEADER / 2 + 1), label, fill="black", font=font, anchor="mm")
        image = page
    image.save(path)
    return path
