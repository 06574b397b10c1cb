"""Inference beyond training the amortized guide: objectives, log-likelihood bounds
and fitting guides with the networks frozen."""

from .bounds import log_likelihood_bounds, log_weights
from .fitting import fit_guide, guide_args
from .objectives import make_objective

__all__ = ["fit_guide", "guide_args", "log_likelihood_bounds", "log_weights", "make_objective"]
