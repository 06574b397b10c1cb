"""Inference beyond training the amortized guide: objectives, log-likelihood bounds,
per-image refinement and MCMC over z^K with the networks frozen."""
