"""Simulation-based calibration's ranks and test, on a model whose posterior is known:
z ~ N(0, 1), x ~ N(z, 1), so p(z | x) = N(x / 2, 1 / 2)."""

import math

import pytest
import torch

from rnp_pyro.infer.calibration import rank_uniformity, sbc_ranks

DRAWS = 99


def simulate(sd_factor: float, sims: int = 2000, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(sims, generator=generator)
    x = z + torch.randn(sims, generator=generator)
    draws = x / 2 + sd_factor * math.sqrt(0.5) * torch.randn(DRAWS, sims, generator=generator)
    return sbc_ranks(z, draws, generator=generator)


def test_exact_posterior_draws_give_uniform_ranks():
    test = rank_uniformity(simulate(1.0), DRAWS)
    assert test.p_value > 0.01
    assert test.outer == pytest.approx(0.1, abs=0.02)
    assert test.mean == pytest.approx(0.5, abs=0.02)


def test_too_narrow_and_too_wide_posteriors_are_caught():
    narrow, wide = rank_uniformity(simulate(0.5), DRAWS), rank_uniformity(simulate(2.0), DRAWS)
    assert narrow.p_value < 1e-6 and narrow.outer > 0.2  # a U shape
    assert wide.p_value < 1e-6 and wide.outer < 0.05  # a hump


def test_ranks_count_draws_below_and_place_ties_at_random():
    truth = torch.tensor([0.0, 1.0])
    draws = torch.tensor([[-1.0, 1.0], [1.0, 1.0], [2.0, 1.0]])  # second: all tied
    ranks = torch.stack([sbc_ranks(truth, draws, generator=torch.Generator().manual_seed(s))
                         for s in range(400)])
    assert (ranks[:, 0] == 1).all()
    assert set(ranks[:, 1].tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="equal bins"):
        rank_uniformity(ranks, 3, bins=3)
