"""Inference beyond training the amortized guide: objectives, log-likelihood bounds,
fitting guides with the networks frozen, and NUTS."""

from .bounds import log_likelihood_bounds, log_weights
from .fitting import fit_guide, guide_args
from .mcmc import MCMCPosterior, mcmc_posterior
from .objectives import make_objective

__all__ = ["MCMCPosterior", "fit_guide", "guide_args", "log_likelihood_bounds", "log_weights",
           "make_objective", "mcmc_posterior"]
