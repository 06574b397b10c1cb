"""Importance weights per image, and the log-likelihood bounds they give.

For K draws z_k ~ q(z | x_i) the weights w_ik = log p(x_i, z_k) - log q(z_k | x_i)
give both the ELBO (their mean) and the importance-weighted bound (the log of
their mean, Burda et al. 2016), which is never below the ELBO of the same draws and
tends to log p(x_i) as K grows. Training weights (``kl_weight``, the part-loss
factor) are left out: these are bounds on the model's own log p(x).

Per-image weights exist when the guide factorises over the images: every latent it
draws lies in the ``data`` plate. A guide with one latent shared by the whole batch
(Pyro's AutoDiagonalNormal, AutoLowRankMultivariateNormal, AutoIAFNormal) has a
weight for the batch only, and its bounds are bounds on the batch's log p(x_1..x_B).
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

__all__ = ["log_weights", "log_likelihood_bounds", "shared_latents"]


def log_weights(model, guide, x: torch.Tensor, *args, num_samples: int = 1,
                per_image: bool = True) -> torch.Tensor:
    """Importance log-weights of ``num_samples`` draws from the guide: (K, B), one per
    image, or with ``per_image=False`` (K,), one for the whole batch.

    The draws are vectorized in a ``particles`` plate left of the ``data`` plate;
    ``args`` (indices, dataset_size) are passed on to the model and the guide. Asking
    for per-image weights of a guide with a latent shared by the batch raises a
    ValueError (see :func:`shared_latents`).
    """
    with pyro.plate("particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x, *args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, *args)
    names = _shared_names(guide_trace)
    if per_image and names:
        raise ValueError(_joint_message(names, x.shape[-4]))
    shape = (num_samples, x.shape[-4])
    weights, shared = x.new_zeros(shape), x.new_zeros(num_samples)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in _weighed_sites(trace):
            # unscaled: the plate's subsampling scale and kl_weight are training choices
            log_prob = sign * site["fn"].log_prob(site["value"])
            if _in_data_plate(site):
                weights = weights + log_prob.expand(shape)
            else:
                shared = shared + log_prob.reshape(num_samples, -1).sum(-1)
    return weights if per_image else weights.sum(-1) + shared


def shared_latents(guide, x: torch.Tensor, *args) -> list[str]:
    """The latent sites ``guide`` draws outside the ``data`` plate (one value for the
    whole batch), from one draw; [] when it factorises over the images."""
    with poutine.block(), torch.no_grad():
        return _shared_names(poutine.trace(guide).get_trace(x, *args))


def log_likelihood_bounds(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ELBO, importance-weighted bound) from (K, ...) log-weights, in nats: per image
    from (K, B), of the batch from (K,).

    Summed in float64: the bound's excess over the ELBO can be far smaller than the
    weights themselves (it is zero for a point-mass guide).
    """
    count = weights.shape[0]
    weights = weights.double()
    return weights.mean(0), torch.logsumexp(weights, 0) - math.log(count)


def _weighed_sites(trace):
    """The sample sites whose log-densities make a weight: not plates' subsample sites,
    not factors (``pyro.factor``, training terms)."""
    for site in trace.nodes.values():
        if (site["type"] == "sample" and not site_is_subsample(site)
                and not isinstance(site["fn"], dist.Unit)):
            yield site


def _in_data_plate(site) -> bool:
    return any(frame.name == "data" for frame in site["cond_indep_stack"])


def _shared_names(guide_trace) -> list[str]:
    return [site["name"] for site in _weighed_sites(guide_trace)
            if not site["is_observed"] and not _in_data_plate(site)]


def _joint_message(names: list[str], batch: int) -> str:
    return (f"the guide draws {', '.join(names)} once for all {batch} images (outside the "
            f"'data' plate), so it has no per-image weights or bounds: ask for the batch's "
            f"(per_image=False), or use a guide that factorises over the images")
