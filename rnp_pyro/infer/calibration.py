"""Simulation-based calibration (Talts et al. 2018): does inference recover the truth?

Draw z from the prior and x from the model given z, infer z from x, and take the rank
of the true z among L posterior draws. When the posterior draws come from the exact
posterior, the true z is one more draw from it, so its rank is uniform on 0..L.
A U-shaped histogram means posteriors too narrow, a hump too wide, a slope a bias.

    ranks = sbc_ranks(z_true, draws)            # (N, |z|) of (L, N, |z|) draws
    test = rank_uniformity(ranks, len(draws))   # chi-square over bins of ranks
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy import stats

__all__ = ["RankTest", "rank_uniformity", "sbc_ranks"]


def sbc_ranks(truth: torch.Tensor, draws: torch.Tensor, *,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """The rank of each true value among its posterior draws, (*S) from ``truth`` (*S)
    and ``draws`` (L, *S): how many draws lie below it, in 0..L.

    A truth tied with draws (draws that are discrete, or clamped) takes a uniformly
    random place among them, as SBC prescribes.
    """
    if draws.shape[1:] != truth.shape:
        raise ValueError(f"draws must be (L, *truth.shape) = (L, {tuple(truth.shape)}); got "
                         f"{tuple(draws.shape)}")
    below = (draws < truth).sum(0)
    tied = (draws == truth).sum(0)
    if not tied.any():
        return below
    u = torch.rand(tied.shape, generator=generator, device=tied.device)
    return below + (u * (tied + 1)).floor().long()


@dataclass(frozen=True)
class RankTest:
    """A chi-square test of ranks against the uniform distribution on 0..L.

    ``counts`` holds the ranks in ``bins`` equal bins; ``outer`` is the share of ranks
    in the lowest and highest twentieth of 0..L (0.1 in all when calibrated, more for
    posteriors that are too narrow, less for too wide ones); ``mean`` is the mean
    rank / L (0.5 when calibrated, below for posteriors that lie above the truth).
    """

    counts: tuple[int, ...]
    chi2: float
    p_value: float
    outer: float
    mean: float


def rank_uniformity(ranks: torch.Tensor, num_draws: int, bins: int = 20) -> RankTest:
    """Pearson's chi-square test that ``ranks`` (any shape, values 0..``num_draws``) are
    uniform, over ``bins`` bins (``num_draws`` + 1 must be a multiple of ``bins``, so
    every bin holds as many rank values)."""
    values = num_draws + 1
    if values % bins:
        raise ValueError(f"{values} rank values (0..{num_draws}) do not split into {bins} equal "
                         f"bins: take L + 1 draws a multiple of the bins (e.g. L = {bins * 5 - 1})")
    ranks = ranks.flatten().long().cpu()
    if ranks.min() < 0 or ranks.max() > num_draws:
        raise ValueError(f"ranks must lie in 0..{num_draws}")
    counts = torch.bincount(ranks // (values // bins), minlength=bins)
    chi2, p_value = stats.chisquare(counts.numpy())
    twentieth = values / 20
    outer = ((ranks < twentieth) | (ranks >= values - twentieth)).double().mean().item()
    return RankTest(tuple(counts.tolist()), float(chi2), float(p_value), outer,
                    ranks.double().mean().item() / num_draws)
