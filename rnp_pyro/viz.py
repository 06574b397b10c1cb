"""Figures of parse trees: what the model draws, and which part drew what; and the
papers' figures of a model and guide on given images (:func:`paper_figures`):
parses, samples, clusters of programs, interpolation and composition.

Parts are coloured in the papers' order (blue, red, green, orange, ...) and summed on
black, so that overlapping parts mix their colours and each stroke shows its author.
Canvases are sums of placed parts, so they are clamped to [0, 1] for display.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from . import guides, spatial
from .infer.fitting import guide_args
from .modes import evaluating, own_random_stream
from .tree import Level, Tree

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
LEVELS_MIN_IMAGES = 10  # images whose programs the levels map needs (5-fold scores)


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


def parse_figure(tree: Tree, images: torch.Tensor | None, path: str | Path,
                 max_images: int = 8, zoom: int = 2) -> Path:
    """The PNAS paper's Figure 2A: one row per image, saved as a PNG.

    Columns: the input, its reconstruction (or, with ``images`` None, the tree's
    canvas as a sample of the model), the parts coloured in the image's frame,
    then one box per part showing that part in its own frame with *its* sub-parts
    coloured, bordered in the part's colour; then, when parts were decoded too
    (``decode_parts``), each part's own patch in its frame. Trees without sub-parts
    stop after the parts column; a one-level tree (a baseline without parts) after
    the reconstruction.
    """
    canvas = tree.canvas
    if canvas.dim() != 4:
        raise ValueError(f"parse_figure needs a tree decoded from one batch of images, "
                         f"got canvases of shape {tuple(canvas.shape)}")
    m = min(len(canvas), max_images)
    if images is None:
        columns = {"sample": _framed(_rgb(canvas[:m]), zoom)}
    elif images.shape != canvas.shape:
        raise ValueError(f"images {tuple(images.shape)} do not match the tree's canvases "
                         f"{tuple(canvas.shape)}; pass the images the tree was decoded from")
    else:
        columns = {"input": _framed(_rgb(images[:m]), zoom),
                   "recon": _framed(_rgb(canvas[:m]), zoom)}
    if len(tree.levels) > 1:
        columns["parts"] = _framed(colour_parts(_display(tree.levels[1].placed[:m])), zoom)
    if len(tree.levels) > 2:
        boxes = colour_parts(_display(tree.children_placed(1)[:m]))  # (m, tau, 3, H, W)
        for t in range(boxes.shape[1]):
            colour = PART_COLOURS[t % len(PART_COLOURS)]
            columns[f"part {t + 1}"] = _framed(boxes[:, t], zoom, colour)
        if tree.levels[1].decoded is not None:
            own = tree.levels[1].decoded_canvases[:m]
            for t in range(own.shape[1]):
                colour = PART_COLOURS[t % len(PART_COLOURS)]
                columns[f"patch {t + 1}"] = _framed(_rgb(own[:, t]), zoom, colour)
    cells = torch.stack(list(columns.values()), 1).flatten(0, 1)  # row by row
    grid = _grid(cells, nrow=len(columns))
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
    grids = [_grid(_framed(block, zoom), nrow=nrow) for block in blocks]
    return _save(torch.cat(grids, -2), path)


def parse_trees(model, guide, images: torch.Tensor, batch_size: int = 500) -> Tree:
    """The parse trees of ``images`` at the guide's means, decoded in batches.

    The guide must be amortized (or fitted to exactly these images as its dataset).
    """
    trees = []
    with evaluating(model, guide):
        for start in range(0, len(images), batch_size):
            indices = torch.arange(start, min(start + batch_size, len(images)),
                                   device=images.device)
            trees.append(guides.reconstruct(model, guide, images[indices],
                                            *guide_args(guide, indices, len(images))))
    return Tree([Level.concat(levels, dim=0) for levels in zip(*(t.levels for t in trees))],
                trees[0].taus)


def cluster_programs(latents: torch.Tensor, clusters: int, seed: int = 0):
    """k-means clusters and a 2-D t-SNE map of programs' latents (N, |z|).

    Returns each latent's cluster (N,), the cluster centres (clusters, |z|) and the
    map (N, 2), all reproducible by ``seed``.
    """
    from sklearn.cluster import KMeans
    from sklearn.manifold import TSNE

    points = latents.detach().double().cpu().numpy()
    if len(points) < max(clusters, 5):
        raise ValueError(f"clustering into {clusters} needs at least {max(clusters, 5)} "
                         f"programs; got {len(points)}: use more images")
    kmeans = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit(points)
    tsne = TSNE(n_components=2, init="pca", random_state=seed,
                perplexity=min(30.0, (len(points) - 1) / 3))
    return (torch.from_numpy(kmeans.labels_).long(),
            torch.from_numpy(kmeans.cluster_centers_).to(latents),
            torch.from_numpy(tsne.fit_transform(points)))


def cluster_figure(embedding: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor,
                   path: str | Path, title: str) -> Path:
    """The PNAS paper's Figure 2B for one level: programs on their t-SNE map coloured by
    k-means cluster, and beside it each cluster's centre decoded (grey images, numbered)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    k = len(centres)
    columns = math.ceil(k / 5)
    figure = Figure(figsize=(6 + 1.3 * columns, 5.5))  # not pyplot's: no global state
    grid = figure.add_gridspec(5, 4 + columns)
    scatter = figure.add_subplot(grid[:, :4])
    colours = colormaps["tab10" if k <= 10 else "tab20"]
    points = embedding.numpy()
    for cluster in range(k):
        member = (labels == cluster).numpy()
        scatter.scatter(points[member, 0], points[member, 1], s=6, color=colours(cluster % 20))
        middle = points[member].mean(0)
        scatter.annotate(str(cluster), middle, fontsize=11, weight="bold", ha="center")
    scatter.set_title(title)
    scatter.set_xticks([])
    scatter.set_yticks([])
    for cluster, canvas in enumerate(_rgb(centres)):
        axis = figure.add_subplot(grid[cluster % 5, 4 + cluster // 5])
        axis.imshow(canvas.permute(1, 2, 0).numpy())
        axis.set_title(str(cluster), fontsize=9, color=colours(cluster % 20))
        axis.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def level_separation(top: torch.Tensor, parts: torch.Tensor, seed: int = 0):
    """How far apart the programs of two levels lie (PNAS Fig. 2B, workshop Fig. 4a: z^2
    and z^1 programs in one map).

    ``parts`` is subsampled to as many programs as ``top`` (N, |z|), so that chance is
    one half. Returns the scores, {"linear_accuracy": a linear classifier's 5-fold
    cross-validated accuracy at telling the levels apart from the latents alone,
    "silhouette": the two levels' silhouette on the joint t-SNE map (1 apart, 0
    mixed)}, the map (2N, 2) and each point's level (2N,: 0 top, 1 part).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import cross_val_score

    if len(top) < LEVELS_MIN_IMAGES or len(parts) < len(top):
        raise ValueError(f"separating two levels needs at least {LEVELS_MIN_IMAGES} top-level "
                         f"programs and as "
                         f"many parts; got {len(top)} and {len(parts)}: use more images")
    generator = torch.Generator().manual_seed(seed)
    chosen = parts[torch.randperm(len(parts), generator=generator)[:len(top)]]
    points = torch.cat([top, chosen]).detach().double().cpu().numpy()
    levels = torch.cat([torch.zeros(len(top)), torch.ones(len(chosen))]).long()
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), points, levels.numpy(),
                               cv=5).mean()
    embedding = TSNE(n_components=2, init="pca", random_state=seed,
                     perplexity=min(30.0, (len(points) - 1) / 3)).fit_transform(points)
    scores = {"linear_accuracy": float(accuracy),
              "silhouette": float(silhouette_score(embedding, levels.numpy())),
              "programs_per_level": len(top)}
    return scores, torch.from_numpy(embedding), levels


def levels_figure(embedding: torch.Tensor, levels: torch.Tensor, scores: dict,
                  path: str | Path) -> Path:
    """Top-level and part-level programs on one t-SNE map, coloured by level, with the
    separation scores of :func:`level_separation` in the title."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 5.5))
    axis = figure.add_subplot()
    points = embedding.numpy()
    for level, (name, colour) in enumerate((("top level (z^K)", PART_COLOURS[0]),
                                            ("parts (z^(K-1))", PART_COLOURS[1]))):
        member = (levels == level).numpy()
        axis.scatter(points[member, 0], points[member, 1], s=6, color=colour, label=name)
    axis.legend(loc="best")
    axis.set_title(f"programs of two levels: linear accuracy {scores['linear_accuracy']:.2f}, "
                   f"silhouette {scores['silhouette']:.2f}", fontsize=10)
    axis.set_xticks([])
    axis.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def cluster_samples_figure(model, latents: torch.Tensor, labels: torch.Tensor, path: str | Path,
                           depth: int = 0, samples: int = 8, zoom: int = 2) -> Path:
    """The PNAS paper's Figure 2C: one row per cluster of programs (latents (N, |z|) with
    their clusters), images decoded from latents drawn from a diagonal Normal fitted to
    the cluster's members; ``depth`` 1 decodes part-level programs as the roots of their
    own subtrees."""
    rows = []
    for cluster in labels.unique().tolist():
        members = latents[labels == cluster]
        scale = members.std(0) if len(members) > 1 else torch.zeros_like(members[0])
        rows.append(members.mean(0) + scale * torch.randn(samples, latents.shape[-1],
                                                          device=latents.device))
    with evaluating(model):
        canvases = model.decode(torch.cat(rows), depth=depth).canvas
    return _save(_grid(_framed(_rgb(canvases), zoom), nrow=samples), path)


def interpolation(model, starts: torch.Tensor, ends: torch.Tensor, steps: int = 8,
                  depth: int = 0) -> torch.Tensor:
    """(P, steps, C, H, W): for each pair of latents (P, |z|), the images decoded at
    tree depth ``depth`` along the straight line from start to end, both ends included."""
    weights = torch.linspace(0, 1, steps, dtype=starts.dtype, device=starts.device)[:, None, None]
    line = torch.lerp(starts, ends, weights).transpose(0, 1)  # (P, steps, |z|)
    with evaluating(model):
        return model.decode(line, depth=depth).canvas


def interpolation_figure(model, starts: torch.Tensor, ends: torch.Tensor, path: str | Path,
                         steps: int = 8, zoom: int = 2, depth: int = 0) -> Path:
    """The PNAS paper's Figure 2D: one row per pair of latents (P, |z|), the images
    decoded along the straight line from start to end (:func:`interpolation`); ``depth``
    1 decodes part-level programs as the roots of their own subtrees (2D right)."""
    canvases = interpolation(model, starts, ends, steps, depth).flatten(0, 1)
    grid = _grid(_framed(_rgb(canvases), zoom), nrow=steps)
    return _save(grid, path)


def compose(tree: Tree, a: int, b: int, scale_offset: float, rotation_range: float) -> dict:
    """New images from the programs of parsed images ``a`` and ``b`` of ``tree``.

    Returns {name: (C, H, W)}: "A" and "B" as decoded; "mix", A's first half of parts
    with B's second half, each where its own program put it; and for each part t,
    "B's part t", A's top program with B's part t drawn where A puts its part t.
    Combining an image with itself gives the image back.
    """
    if len(tree.levels) < 2:
        raise ValueError("composition needs parse trees with parts; this model has none")
    parts = tree.levels[1]
    half = parts.size // 2
    images = {"A": tree.canvas[a], "B": tree.canvas[b],
              "mix": parts.placed[a, :half].sum(0) + parts.placed[b, half:].sum(0)}
    moved = spatial.place(parts.canvases[b], parts.actions[a], scale_offset, rotation_range)
    for t in range(parts.size):
        kept = torch.cat([parts.placed[a, :t], parts.placed[a, t + 1:]]).sum(0)
        images[f"B's part {t + 1}"] = kept + moved[t]
    return images


def composition_figure(model, tree: Tree, pairs: list[tuple[int, int]], path: str | Path,
                       zoom: int = 2) -> Path:
    """The PNAS paper's Figure 2E: one row per pair (A, B) of indices into ``tree``: the
    image decoded from the mean of A's and B's top-level latents (2E left), then the
    combinations of their parts of :func:`compose`."""
    config = model.config
    rows = [compose(tree, a, b, config.scale_offset, config.rotation_range) for a, b in pairs]
    columns = {name: torch.stack([row[name] for row in rows]) for name in rows[0]}
    top = tree.levels[0].latents[:, 0]
    with evaluating(model):
        mixed = model.decode(torch.stack([(top[a] + top[b]) / 2 for a, b in pairs])).canvas
    columns = {"A": columns.pop("A"), "B": columns.pop("B"), "mean of z": mixed, **columns}
    return columns_figure(columns, path, zoom)


def columns_figure(columns: dict[str, torch.Tensor], path: str | Path, zoom: int = 2) -> Path:
    """Labelled columns of images, each (N, C, H, W): one row per image."""
    cells = torch.stack([_rgb(images) for images in columns.values()], 1).flatten(0, 1)
    cells = _framed(cells, zoom)
    grid = _grid(cells, nrow=len(columns))
    return _save(grid, path, labels=list(columns), cell_width=cells.shape[-1])


def paper_figures(model, guide, x: torch.Tensor, out: str | Path, *, clusters: int = 10,
                  seed: int = 0, tree: Tree | None = None) -> list[Path]:
    """The papers' figures of a model and guide on images x, as PNGs in ``out``; the
    same ``seed`` gives the same figures.

    parses.png (Fig. 2A), samples.png (prior samples, Fig. 3A), clusters_top.png and
    clusters_parts.png (t-SNE and k-means of top-level and part-level programs with
    each cluster's centre decoded, Fig. 2B), levels.png and levels.json (both levels'
    programs on one t-SNE map, with how well they separate: :func:`level_separation`;
    from LEVELS_MIN_IMAGES images on),
    cluster_samples_top.png and cluster_samples_parts.png (images sampled from each
    cluster, Fig. 2C), interpolation.png and interpolation_parts.png (between top-level
    and between part-level cluster centres, Fig. 2D), interpolation_levels.png (from
    top-level to part-level centres, decoded at the top, workshop Fig. 4c; for shared
    hypernetworks, which read both levels' programs) and composition.png (two images'
    top-level latents averaged, and their parts combined, Fig. 2E). A model without
    parts (the conv VAE) gets the figures that need none. The guide must be amortized,
    or fitted to x as its dataset. ``tree``: the parse of x at the guide's means
    (:func:`parse_trees`), when the caller has it already.
    """
    out, device, z_dim = Path(out), x.device, model.config.z_dim
    with own_random_stream(seed, device):
        tree = parse_trees(model, guide, x) if tree is None else tree
        with evaluating(model):
            sampled = model.decode(torch.randn(16, z_dim, device=device))
    paths = [parse_figure(tree, x, out / "parses.png"),
             samples_figure(sampled, out / "samples.png")]

    top = tree.levels[0].latents[:, 0]
    labels, centres, embedding = cluster_programs(top, clusters, seed)
    with evaluating(model):
        decoded = model.decode(centres).canvas
    paths.append(cluster_figure(embedding, labels, decoded, out / "clusters_top.png",
                                f"top-level programs of {len(x)} test images"))
    pairs = min(4, clusters // 2)
    paths.append(interpolation_figure(model, centres[0:2 * pairs:2], centres[1:2 * pairs:2],
                                      out / "interpolation.png"))
    with own_random_stream(seed, device):
        paths.append(cluster_samples_figure(model, top, labels, out / "cluster_samples_top.png"))
    if len(tree.levels) > 2:
        parts = tree.levels[1].latents.flatten(0, 1)
        labels, centres, embedding = cluster_programs(parts, clusters, seed)
        with evaluating(model):
            decoded = model.decode(centres, depth=1).canvas
        paths.append(cluster_figure(embedding, labels, decoded, out / "clusters_parts.png",
                                    f"part-level programs ({len(parts)} parts)"))
        paths.append(interpolation_figure(model, centres[0:2 * pairs:2], centres[1:2 * pairs:2],
                                          out / "interpolation_parts.png", depth=1))
        with own_random_stream(seed, device):
            paths.append(cluster_samples_figure(model, parts, labels,
                                                out / "cluster_samples_parts.png", depth=1))
        if model.config.shared_hypernetworks:
            # from top-level cluster centres to part-level ones (workshop Fig. 4c): one
            # hypernetwork reads both, so each mix is decoded as a whole image's program,
            # at the top, and a part's end shows what its program draws as an image
            top_centres = cluster_programs(top, clusters, seed)[1]
            paths.append(interpolation_figure(model, top_centres[:pairs], centres[:pairs],
                                              out / "interpolation_levels.png"))
        if len(top) >= LEVELS_MIN_IMAGES:
            scores, embedding, levels = level_separation(top, parts, seed)
            paths.append(levels_figure(embedding, levels, scores, out / "levels.png"))
            (out / "levels.json").write_text(json.dumps(scores, indent=2) + "\n")
            paths.append(out / "levels.json")
    if len(tree.levels) > 1:
        couples = [(i, i + 1) for i in range(0, min(8, len(x) - 1), 2)]
        paths.append(composition_figure(model, tree, couples, out / "composition.png"))
    return paths


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


def _grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """(N, 3, h, w) panels -> one (3, H, W) grid, GAP white pixels apart."""
    from torchvision.utils import make_grid  # imported when drawing: torchvision loads slowly

    return make_grid(images, nrow=nrow, padding=GAP, pad_value=1.0)


def _save(grid: torch.Tensor, path: str | Path, labels=(), cell_width: int = 0) -> Path:
    """Write a (3, H, W) grid as a PNG, with one label centred above each column if given."""
    from PIL import Image, ImageDraw, ImageFont

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
