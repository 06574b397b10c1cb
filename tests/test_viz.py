"""Figures: part colouring, figure layout, the run-figures helper's mode handling, and
the papers' figures (clusters of programs, interpolation, composition)."""

import functools
import json
import math
import unittest.mock

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from PIL import Image
from torch import nn

from rnp_pyro import RNP, data
from rnp_pyro.config import RunConfig
from rnp_pyro.run import figures_run, save_figures
from rnp_pyro.spatial import place
from rnp_pyro.run import fit
from rnp_pyro.tree import Level, Tree
from rnp_pyro.viz import (BORDER, GAP, HEADER, PART_COLOURS, cluster_programs,
                          cluster_samples_figure, colour_parts, compose, interpolation,
                          interpolation_figure, level_separation, parse_figure, samples_figure)

SIZE = 16
Z_DIM = 3


def strokes(n: int, channels: int, generator: torch.Generator) -> torch.Tensor:
    """(n, C, SIZE, SIZE) elongated blobs: leaf patches that look like pen strokes."""
    axis = torch.linspace(-1, 1, SIZE)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    angle = math.pi * torch.rand(n, 1, 1, generator=generator)
    along = x * torch.cos(angle) + y * torch.sin(angle)
    across = -x * torch.sin(angle) + y * torch.cos(angle)
    blob = torch.exp(-(along / 0.7) ** 2 - (across / 0.2) ** 2)
    tint = 0.5 + 0.5 * torch.rand(n, channels, 1, 1, generator=generator)
    return blob[:, None] * tint


def synthetic_tree(batch: int, channels: int = 1, taus=(4, 4), seed: int = 0) -> Tree:
    """A tree built bottom-up as decode would: each canvas is the sum of its children placed."""
    generator = torch.Generator().manual_seed(seed)
    counts = [1]
    for tau in taus:
        counts.append(counts[-1] * tau)
    canvases = strokes(batch * counts[-1], channels, generator).reshape(batch, counts[-1], channels, SIZE, SIZE)
    levels = []
    for depth in reversed(range(len(counts))):
        n = counts[depth]
        if depth == 0:
            actions = torch.zeros(batch, 1, 6)
            placed = canvases
        else:
            actions = 0.5 * (2 * torch.rand(batch, n, 6, generator=generator) - 1)
            placed = place(canvases, actions, scale_offset=0.5, rotation_range=math.pi)
        levels.insert(0, Level(torch.zeros(batch, n, Z_DIM), actions, canvases, placed))
        if depth > 0:
            parents = placed.reshape(batch, counts[depth - 1], taus[depth - 1], channels, SIZE, SIZE)
            canvases = parents.sum(2)
    return Tree(levels, tuple(taus))


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


# ---------------------------------------------------------------- colour_parts

def test_a_single_grey_part_is_its_colour_times_its_intensity():
    intensity = torch.rand(2, 1, 1, 5, 5)
    coloured = colour_parts(intensity)
    expected = torch.tensor(PART_COLOURS[0]).view(1, 3, 1, 1) * intensity[:, 0]
    torch.testing.assert_close(coloured, expected)


def test_an_rgb_part_is_coloured_by_its_mean_over_channels():
    part = torch.rand(2, 1, 3, 5, 5)
    expected = torch.tensor(PART_COLOURS[0]).view(1, 3, 1, 1) * part[:, 0].mean(1, keepdim=True)
    torch.testing.assert_close(colour_parts(part), expected)


def test_parts_are_summed_each_in_its_own_colour():
    parts = 0.3 * torch.rand(2, 3, 1, 5, 5)
    expected = sum(torch.tensor(PART_COLOURS[t]).view(1, 3, 1, 1) * parts[:, t] for t in range(3))
    torch.testing.assert_close(colour_parts(parts), expected)


def test_colours_follow_the_papers_order_and_cycle():
    blue, red, green, orange = (torch.tensor(c) for c in PART_COLOURS[:4])
    assert blue.argmax() == 2 and red.argmax() == 0 and green.argmax() == 1
    assert orange[0] > orange[1] > orange[2]
    n = len(PART_COLOURS) + 1
    only_last = torch.zeros(1, n, 1, 2, 2)
    only_last[:, -1] = 1.0
    torch.testing.assert_close(colour_parts(only_last)[0, :, 0, 0], torch.tensor(PART_COLOURS[0]))


def test_overlapping_bright_parts_are_clamped_to_one():
    coloured = colour_parts(torch.full((1, 4, 1, 3, 3), 5.0))
    assert coloured.max() == 1.0 and coloured.min() >= 0.0


def test_colour_parts_names_the_shape_it_needs():
    with pytest.raises(ValueError, match="n, C, H, W"):
        colour_parts(torch.rand(5, 5))


def test_synthetic_tree_root_is_the_sum_of_its_parts():
    tree = synthetic_tree(2)
    torch.testing.assert_close(tree.canvas, tree.levels[1].placed.sum(1))
    assert tree.children_placed(1).shape == (2, 4, 4, 1, SIZE, SIZE)


# ---------------------------------------------------------------- parse_figure

@pytest.mark.parametrize("channels", [1, 3])
def test_parse_figure_has_a_row_per_image_and_a_column_per_panel(tmp_path, channels):
    def size(batch, taus, max_images=8):
        tree = synthetic_tree(batch, channels, taus)
        path = parse_figure(tree, tree.canvas.clamp(0, 1), tmp_path / "parse.png", max_images=max_images)
        assert path.stat().st_size > 0
        return png_size(path)

    width, height = size(3, (4, 4))
    _, height_of_two = size(2, (4, 4))
    _, height_of_five = size(5, (4, 4))
    row = height - height_of_two
    assert row > 2 * SIZE and height_of_five - height_of_two == 3 * row
    assert size(9, (4, 4), max_images=3) == (width, height)

    width_with_parts, _ = size(3, (4,))
    width_baseline, _ = size(3, ())
    column = width_with_parts - width_baseline  # three panels against two
    assert column == row  # square panels
    assert width - width_with_parts == 4 * column  # one box per part


def test_parse_figure_borders_each_part_box_in_its_colour(tmp_path):
    tree = synthetic_tree(2, taus=(4, 4))
    path = parse_figure(tree, tree.canvas.clamp(0, 1), tmp_path / "parse.png")
    with Image.open(path) as image:
        pixels = torch.tensor(np.array(image.convert("RGB"))).long()
    for colour in PART_COLOURS[:4]:
        exact = torch.tensor([round(255 * c) for c in colour])
        matches = (pixels == exact).all(-1).sum()
        assert matches >= 2 * 4 * 2 * SIZE  # at least the frame's four sides, for each image


def test_parse_figure_adds_each_parts_own_patch_when_parts_were_decoded(tmp_path):
    tree = synthetic_tree(2, taus=(4, 4))
    plain = png_size(parse_figure(tree, tree.canvas.clamp(0, 1), tmp_path / "plain.png"))
    parts = tree.levels[1]
    parts.decoded = torch.rand(2, 4, 1, 5, 5)  # patches smaller than the image
    decoded = png_size(parse_figure(tree, tree.canvas.clamp(0, 1), tmp_path / "decoded.png"))
    column = (plain[0] - png_size(parse_figure(synthetic_tree(2, taus=(4,)), tree.canvas.clamp(
        0, 1), tmp_path / "parts.png"))[0]) // 4
    assert decoded == (plain[0] + 4 * column, plain[1])  # one more box per part


def test_parse_figure_rejects_images_that_do_not_match_the_tree(tmp_path):
    tree = synthetic_tree(2)
    with pytest.raises(ValueError, match="images the tree was decoded from"):
        parse_figure(tree, torch.rand(3, 1, SIZE, SIZE), tmp_path / "parse.png")


# ---------------------------------------------------------------- samples_figure

def test_samples_figure_adds_a_coloured_block_only_when_there_are_parts(tmp_path):
    tree = synthetic_tree(4, channels=3)
    plain = png_size(samples_figure(tree, tmp_path / "plain.png", coloured=False))
    coloured = png_size(samples_figure(tree, tmp_path / "coloured.png"))
    assert coloured[0] == plain[0] and coloured[1] == 2 * plain[1]

    baseline = synthetic_tree(4, taus=())
    assert png_size(samples_figure(baseline, tmp_path / "baseline.png")) == plain


# ---------------------------------------------------------------- save_figures

class FakeGuide(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(1, 1)
        self.seen = []

    def forward(self, images):
        self.seen.append((len(images), self.training, torch.is_grad_enabled()))
        loc = self.net.weight.sum() + images.flatten(1)[:, :Z_DIM]
        with pyro.plate("data", len(images)):
            return pyro.sample("z1", dist.Normal(loc, 1.0).to_event(1))


class FakeModel(nn.Module):
    config = RunConfig().replace(taus=(2,)).model  # one level below the top: the top site is z1

    def __init__(self):
        super().__init__()
        self.frozen = nn.BatchNorm1d(1).eval()
        self.seen = []

    def decode(self, z):
        self.seen.append(("decode", len(z), self.training, torch.is_grad_enabled()))
        return synthetic_tree(len(z))

    def sample(self, n):
        self.seen.append(("sample", n, self.training, torch.is_grad_enabled()))
        return synthetic_tree(n, seed=1)


def test_save_figures_writes_both_figures_in_eval_mode_and_restores_modes(tmp_path):
    model, guide = FakeModel().train(), FakeGuide().eval()
    model.frozen.eval()
    tree = synthetic_tree(10)
    paths = save_figures(tmp_path / "run", model, guide, tree.canvas, n=3)

    assert [p.name for p in paths] == ["reconstructions.png", "samples.png"]
    assert all(p.parent == tmp_path / "run" and p.stat().st_size > 0 for p in paths)
    assert guide.seen == [(3, False, False)]
    assert model.seen == [("decode", 3, False, False), ("sample", 3, False, False)]
    assert model.training and not model.frozen.training and not guide.training


# ---------------------------------------------------------------- the papers' figures

@pytest.fixture
def tiny_rnp(tiny_config):
    """An RNP of the tiny config in float64 (its decoder without bfloat16)."""
    return RNP(tiny_config().model, bf16_decoder=False).double()


def test_programs_cluster_as_they_lie_and_the_same_seed_gives_the_same_map():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[8.0, 0, 0, 0], [0, 8.0, 0, 0], [0, 0, 8.0, 0]])
    latents = (centres.repeat_interleave(20, 0) + torch.randn(60, 4, generator=gen))
    labels, found, embedding = cluster_programs(latents, 3, seed=1)
    assert embedding.shape == (60, 2) and found.shape == (3, 4)
    for blob in labels.view(3, 20):  # each blob is one cluster, and the clusters differ
        assert (blob == blob[0]).all()
    assert len(set(labels.view(3, 20)[:, 0].tolist())) == 3
    assert torch.cdist(found, centres).min(1).values.max() < 1.0
    again = cluster_programs(latents, 3, seed=1)
    assert torch.equal(labels, again[0]) and torch.allclose(embedding, again[2])
    with pytest.raises(ValueError, match="use more images"):
        cluster_programs(latents[:4], 3)


def test_an_image_composed_with_itself_is_itself(tiny_rnp):
    model, config = tiny_rnp, tiny_rnp.config
    with torch.no_grad():
        tree = model.decode(torch.randn(2, config.z_dim, dtype=torch.float64))
        same = compose(tree, 1, 1, config.scale_offset, config.rotation_range)
        mixed = compose(tree, 0, 1, config.scale_offset, config.rotation_range)
    assert list(same) == ["A", "B", "mix", "B's part 1", "B's part 2", "B's part 3"]
    for image in same.values():
        torch.testing.assert_close(image, tree.canvas[1])
    parts = tree.levels[1].placed
    torch.testing.assert_close(mixed["mix"], parts[0, :1].sum(0) + parts[1, 1:].sum(0))
    assert not torch.allclose(mixed["B's part 2"], tree.canvas[0])


def test_interpolation_rows_run_from_start_to_end(tmp_path, tiny_rnp):
    model = tiny_rnp
    starts, ends = torch.randn(2, 3, model.config.z_dim, dtype=torch.float64)
    path = interpolation_figure(model, starts, ends, tmp_path / "line.png", steps=5, zoom=1)
    cell = model.config.image_size + 2 * BORDER
    assert png_size(path) == (5 * cell + 6 * GAP, 3 * cell + 4 * GAP)


@pytest.mark.parametrize("depth", [0, 1])
def test_an_interpolation_decodes_the_line_between_its_ends_at_its_depth(tiny_rnp, depth):
    model = tiny_rnp
    starts, ends = torch.randn(2, 3, model.config.z_dim, dtype=torch.float64)
    canvases = interpolation(model, starts, ends, steps=5, depth=depth)
    assert canvases.shape == (3, 5, *model.config.image_shape)
    for step, weight in enumerate((0, 0.25, 0.5, 0.75, 1)):
        torch.testing.assert_close(
            canvases[:, step], model.decode(starts + weight * (ends - starts), depth=depth).canvas)


def test_figures_of_a_run(tmp_path, tiny_config):
    cfg = tiny_config()
    size = cfg.model.image_size
    fit(cfg, tmp_path, max_steps=2, device="cpu", progress=False,
        train_set=data.load_images("strokes", image_size=size, limit=32),
        test_set=data.load_images("strokes", train=False, image_size=size, limit=12))
    with unittest.mock.patch.object(data, "load_images", functools.partial(
            data.load_images, limit=40)):
        paths = figures_run(tmp_path, images=40, clusters=4, device="cpu",
                            transfer={"adapted": tmp_path})
    assert [p.name for p in paths] == [
        "parses.png", "samples.png", "clusters_top.png", "interpolation.png",
        "cluster_samples_top.png", "clusters_parts.png", "interpolation_parts.png",
        "cluster_samples_parts.png", "interpolation_levels.png", "levels.png", "levels.json",
        "composition.png", "transfer.png"]
    assert all(p.parent == tmp_path / "figures" and p.stat().st_size > 50 for p in paths)
    scores = json.loads((tmp_path / "figures" / "levels.json").read_text())
    assert 0 <= scores["linear_accuracy"] <= 1 and -1 <= scores["silhouette"] <= 1
    assert scores["programs_per_level"] == 40
    cell = 3 * size + 2 * BORDER  # input, unadapted and adapted, 8 rows
    assert png_size(paths[-1]) == (3 * cell + 4 * GAP, 8 * cell + 9 * GAP + HEADER)


def test_two_levels_of_programs_apart_are_told_apart_and_mixed_ones_are_not():
    generator = torch.Generator().manual_seed(0)
    top = torch.randn(60, 4, generator=generator)
    apart, _, _ = level_separation(top, torch.randn(200, 4, generator=generator) + 6.0)
    mixed, embedding, levels = level_separation(top, torch.randn(200, 4, generator=generator))
    assert apart["linear_accuracy"] > 0.95 and apart["silhouette"] > 0.5
    assert mixed["linear_accuracy"] < 0.75 and mixed["silhouette"] < 0.2
    assert embedding.shape == (120, 2) and levels.tolist() == [0] * 60 + [1] * 60


def test_samples_from_a_cluster_decode_near_its_members(tiny_rnp, tmp_path):
    latents = torch.cat([torch.randn(20, 6, dtype=torch.float64) * 0.01 + 2,
                         torch.randn(20, 6, dtype=torch.float64) * 0.01 - 2])
    labels = torch.tensor([0] * 20 + [1] * 20)
    path = cluster_samples_figure(tiny_rnp, latents, labels, tmp_path / "samples.png",
                                  samples=5, zoom=1)
    cell = tiny_rnp.config.image_size + 2 * BORDER
    assert png_size(path) == (5 * cell + 6 * GAP, 2 * cell + 3 * GAP)
