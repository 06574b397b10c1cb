"""Training objectives: Pyro's own ELBO estimators, chosen by name."""

from __future__ import annotations

import pyro.infer

from ..config import OBJECTIVES, ConfigError


def make_objective(name: str, num_particles: int = 1) -> pyro.infer.ELBO:
    """The ELBO estimator ``name`` (one of OBJECTIVES) with vectorized particles.

    - ``elbo``: Trace_ELBO, the papers' objective;
    - ``meanfield``: TraceMeanField_ELBO, analytic KL where Pyro knows it;
    - ``iwae``: RenyiELBO with alpha = 0, the importance-weighted bound of Burda et al.
      over ``num_particles`` samples per image (at least 2 to differ from the ELBO);
    - ``tracegraph``: TraceGraph_ELBO, with Rao-Blackwellised score-function terms
      for guides that are not reparameterised.
    """
    common = dict(num_particles=num_particles, vectorize_particles=num_particles > 1,
                  max_plate_nesting=1)
    if name == "elbo":
        return pyro.infer.Trace_ELBO(**common)
    if name == "meanfield":
        return pyro.infer.TraceMeanField_ELBO(**common)
    if name == "iwae":
        return pyro.infer.RenyiELBO(alpha=0.0, **common)
    if name == "tracegraph":
        return pyro.infer.TraceGraph_ELBO(**common)
    raise ConfigError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
