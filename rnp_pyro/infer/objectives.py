"""Training objectives: Pyro's own ELBO estimators, chosen by name."""

from __future__ import annotations

import pyro.infer
from pyro.distributions.util import is_identically_zero

from ..errors import ConfigError

# Trace_ELBO, TraceMeanField_ELBO, RenyiELBO(alpha=0) (importance weighted), TraceGraph_ELBO
OBJECTIVES = ("elbo", "meanfield", "iwae", "tracegraph")
# those whose loss is a differentiable tensor, which DistributedDataParallel can wrap
DATA_PARALLEL_OBJECTIVES = ("elbo", "meanfield")


class Trace_ELBO(pyro.infer.Trace_ELBO):
    """Pyro's Trace_ELBO, with a differentiable loss that never leaves the device.

    Pyro's own reads every site's log-density and the loss to the host (for the
    ELBO's value beside its surrogate, and for a NaN warning): a wait for the device
    each step, and a step that cannot be captured in a CUDA graph. When every guide
    site is reparameterised the surrogate's value is the ELBO estimate itself, so
    this returns it as it is: the same value and gradient, on the device (training
    catches non-finite losses itself). Other guides get Pyro's own estimator.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle = _reparameterised_loss(model_trace, guide_trace)
            if particle is None:  # a score-function term: Pyro's surrogate is needed
                return super().differentiable_loss(model, guide, *args, **kwargs)
            loss = loss + particle / self.num_particles
        return loss


def _reparameterised_loss(model_trace, guide_trace):
    """-ELBO of one particle when the guide has no score-function term, else None."""
    elbo = 0.0
    for site in model_trace.nodes.values():
        if site["type"] == "sample":
            elbo = elbo + site["log_prob_sum"]
    for site in guide_trace.nodes.values():
        if site["type"] == "sample":
            _, score_function, entropy = site["score_parts"]
            if not is_identically_zero(score_function):
                return None
            if not is_identically_zero(entropy):
                elbo = elbo - entropy.sum()
    return -elbo


def make_objective(name: str, num_particles: int = 1) -> pyro.infer.ELBO:
    """The ELBO estimator ``name`` (one of OBJECTIVES) with vectorized particles.

    - ``elbo``: Trace_ELBO, the papers' objective (its loss kept on the device, above);
    - ``meanfield``: TraceMeanField_ELBO, analytic KL where Pyro knows it;
    - ``iwae``: RenyiELBO with alpha = 0, the importance-weighted bound of Burda et al.
      over ``num_particles`` samples per image (at least 2 to differ from the ELBO);
    - ``tracegraph``: TraceGraph_ELBO, with Rao-Blackwellised score-function terms
      for guides that are not reparameterised.
    """
    common = dict(num_particles=num_particles, vectorize_particles=num_particles > 1,
                  max_plate_nesting=1)
    if name == "elbo":
        return Trace_ELBO(**common)
    if name == "meanfield":
        return pyro.infer.TraceMeanField_ELBO(**common)
    if name == "iwae":
        return pyro.infer.RenyiELBO(alpha=0.0, **common)
    if name == "tracegraph":
        return pyro.infer.TraceGraph_ELBO(**common)
    raise ConfigError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
