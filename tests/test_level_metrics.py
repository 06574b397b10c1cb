"""What each latent level carries (rnp_pyro.metrics.kl_per_level, explained_per_level),
against closed forms and against the model's own traversal decoded by hand."""

import math

import pytest
import torch

from rnp_pyro.encoder import SCALE_FLOOR
from rnp_pyro.guides import EncoderGuide
from rnp_pyro.guides.ladder import LadderGuide
from rnp_pyro.metrics import explained_per_level, kl_per_level

SHIFT, SCALE = 0.3, 0.25  # the ladder posterior's mean shift and scale, set by hand


def shifted_ladder(model, cfg):
    """A ladder guide whose q of every lower site is Normal(prior mean + SHIFT, SCALE),
    whatever the crop: its head's output weights zero, its biases set."""
    guide = LadderGuide(model, cfg.guide)
    out, z_dim = guide.posterior.out, cfg.model.z_dim
    with torch.no_grad():
        out.bias[:z_dim] = SHIFT
        out.bias[z_dim:] = math.log(math.expm1(SCALE - SCALE_FLOOR))  # softplus^-1
    return guide


class Shifted:
    """``draws`` for RNP.grow: each child at its emitted mean, + SHIFT for the program
    depths listed."""

    def __init__(self, depths):
        self.depths = depths

    def feed(self, depth):
        return lambda t, means, actions: means + SHIFT if depth in self.depths else means


@pytest.fixture
def ladder(fashion_config, rnp):
    torch.manual_seed(0)
    cfg = fashion_config(stochastic_levels=True, level_scale=0.1)
    model = rnp(cfg).eval()
    return cfg, model, shifted_ladder(model, cfg).eval()  # as the metrics run them


def test_each_levels_kl_is_the_closed_form_of_its_sites(ladder):
    cfg, model, guide = ladder
    x = torch.rand(6, 1, 28, 28)
    kl = kl_per_level(model, guide, x)
    assert list(kl) == [2, 1, 0]
    loc, scale = guide.encode(x)
    top = 0.5 * (scale.square() + loc.square() - 1 - 2 * scale.log()).sum(-1).mean()
    assert kl[2] == pytest.approx(top.item(), rel=1e-4)
    sigma = cfg.model.level_scale
    per_dimension = math.log(sigma / SCALE) + (SCALE ** 2 + SHIFT ** 2) / (2 * sigma ** 2) - 0.5
    nodes = cfg.model.nodes_per_level  # (1, 4, 16)
    for level, count in ((1, nodes[1]), (0, nodes[2])):
        assert kl[level] == pytest.approx(count * cfg.model.z_dim * per_dimension, rel=1e-4)


def test_the_encoder_guide_infers_the_top_level_only(fashion_config, rnp):
    cfg = fashion_config(stochastic_levels=True)
    model = rnp(cfg).eval()
    kl = kl_per_level(model, EncoderGuide(model, cfg.guide).eval(), torch.rand(4, 1, 28, 28))
    assert kl[2] > 0 and kl[1] == pytest.approx(0, abs=1e-5) and kl[0] == pytest.approx(0, abs=1e-5)


def decoded_mse(model, z, x, depths):
    canvas, _ = model.draw(model.grow(z, Shifted(depths)))
    return (canvas - x).square().mean().item()


def test_each_cut_decodes_the_levels_above_it_at_the_guides_means(ladder):
    cfg, model, guide = ladder
    x = torch.rand(6, 1, 28, 28)
    got = explained_per_level(model, guide, x)
    z = guide.encode(x)[0].detach()
    with torch.no_grad():
        # level 2 alone: both lower levels at their emitted means; level 1 too: the
        # parts shifted (program depth 0 emits them); every level: the leaves too
        expected = {2: decoded_mse(model, z, x, ()), 1: decoded_mse(model, z, x, (0,)),
                    0: decoded_mse(model, z, x, (0, 1))}
    assert got["mse"] == pytest.approx(expected, rel=1e-4)
    black = x.square().mean().item()
    assert got["black"] == pytest.approx(black)
    assert got["explained"][2] == pytest.approx(1 - expected[2] / black, rel=1e-4)
    assert got["explained"][1] == pytest.approx((expected[2] - expected[1]) / black, rel=1e-4)
    assert sum(got["explained"].values()) == pytest.approx(1 - expected[0] / black, rel=1e-4)


def test_a_guide_equal_to_the_prior_below_the_top_explains_nothing_there(fashion_config, rnp):
    cfg = fashion_config(stochastic_levels=True)
    model = rnp(cfg).eval()
    guide = LadderGuide(model, cfg.guide).eval()  # at initialisation: q = p below the top
    got = explained_per_level(model, guide, torch.rand(5, 1, 28, 28))
    assert got["explained"][1] == pytest.approx(0, abs=1e-6)
    assert got["explained"][0] == pytest.approx(0, abs=1e-6)
    assert got["mse"][0] == pytest.approx(got["mse"][2], rel=1e-6)


def test_a_deterministic_tree_has_its_top_level_only(fashion_config, rnp):
    cfg = fashion_config()
    model = rnp(cfg).eval()
    guide = EncoderGuide(model, cfg.guide).eval()
    x = torch.rand(5, 1, 28, 28)
    got = explained_per_level(model, guide, x)
    with torch.no_grad():
        canvas = model.decode(guide.encode(x)[0]).canvas
    assert list(got["mse"]) == [2]
    assert got["mse"][2] == pytest.approx((canvas - x).square().mean().item(), rel=1e-5)
    assert list(kl_per_level(model, guide, x)) == [2]
