"""Importance weights per image, and the log-likelihood bounds they give.

For K draws z_k ~ q(z | x_i) the weights w_ik = log p(x_i, z_k) - log q(z_k | x_i)
give both the ELBO (their mean) and the importance-weighted bound (the log of
their mean, Burda et al. 2016), which is never below the ELBO of the same draws and
tends to log p(x_i) as K grows. Training weights (``kl_weight``, the part-loss
factor) are left out: these are bounds on the model's own log p(x).
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

__all__ = ["log_weights", "log_likelihood_bounds"]


def log_weights(model, guide, x: torch.Tensor, *args, num_samples: int = 1) -> torch.Tensor:
    """(K, B) importance log-weights of ``num_samples`` draws from the guide per image.

    The draws are vectorized in a ``particles`` plate left of the ``data`` plate;
    ``args`` (indices, dataset_size) are passed on to the model and the guide.
    """
    with pyro.plate("particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x, *args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, *args)
    shape = (num_samples, x.shape[-4])
    weights = x.new_zeros(shape)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] != "sample" or isinstance(site["fn"], dist.Unit):  # factors
                continue
            # unscaled: the plate's subsampling scale and kl_weight are training choices
            weights = weights + sign * site["fn"].log_prob(site["value"]).expand(shape)
    return weights


def log_likelihood_bounds(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ELBO, importance-weighted bound) per image from (K, B) log-weights, in nats.

    Summed in float64: the bound's excess over the ELBO can be far smaller than the
    weights themselves (it is zero for a point-mass guide).
    """
    count = weights.shape[0]
    weights = weights.double()
    return weights.mean(0), torch.logsumexp(weights, 0) - math.log(count)
