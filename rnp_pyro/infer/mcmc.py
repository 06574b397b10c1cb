"""NUTS over the top latent z^K of a trained model, with its networks frozen.

The amortized guide q(z^K | x) is a Gaussian fitted for all images at once; NUTS
samples the model's own posterior p(z^K | x) for a few images, so the guide (and
anything computed from its samples) can be checked against it.

    post = mcmc_posterior(run.model, x, init=run.guide)
    post.r_hat().max()             # split R-hat per image and coordinate, want < 1.05
    rnp_pyro.ppc.posterior_predictive(run.model, None, x, posterior_samples=post.samples)
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer.autoguide.initialization import init_to_sample
from pyro.infer.mcmc import MCMC, NUTS
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from pyro.util import get_rng_state, set_rng_state

from ..modes import frozen

__all__ = ["MCMCPosterior", "mcmc_posterior"]


@dataclass
class MCMCPosterior:
    """Draws of z^K from NUTS, kept per chain so that convergence can be checked.

    ``draws`` is (chains, draws, B, |z|); the per-chain lists hold what each chain's
    sampler reported after warmup.
    """

    site: str
    draws: torch.Tensor
    step_size: list[float] = field(default_factory=list)  # after adaptation
    accept_prob: list[float] = field(default_factory=list)  # mean over the kept draws
    divergences: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def num_chains(self) -> int:
        return self.draws.shape[0]

    @property
    def samples(self) -> dict[str, torch.Tensor]:
        """{site: (chains * draws, B, |z|)}, as ``pyro.infer.Predictive``'s ``posterior_samples``
        takes them, and as it returns a guide's."""
        return {self.site: self.draws.flatten(0, 1)}

    def r_hat(self) -> torch.Tensor:
        """Split Gelman-Rubin R-hat per image and coordinate, (B, |z|)."""
        if self.draws.shape[1] < 4:
            raise ValueError(f"split R-hat needs at least 4 draws per chain (each chain is "
                             f"split in two halves); these chains have {self.draws.shape[1]}: "
                             f"sample again with num_samples >= 4")
        return split_gelman_rubin(self.draws, chain_dim=0, sample_dim=1)

    def to_arviz(self):
        """The draws as ArviZ data (posterior group, one chain per chain), for ArviZ's own
        diagnostics (``arviz.rhat``, ``arviz.ess``, ``arviz.summary``)."""
        import arviz

        posterior = {self.site: self.draws.detach().cpu().numpy()}
        dims = {self.site: ["image", "latent"]}
        if int(arviz.__version__.split(".")[0]) >= 1:
            return arviz.from_dict({"posterior": posterior}, dims=dims)
        return arviz.from_dict(posterior=posterior, dims=dims)

    def ess(self) -> torch.Tensor:
        """Effective sample size over all chains per image and coordinate, (B, |z|)."""
        return effective_sample_size(self.draws, chain_dim=0, sample_dim=1)


def mcmc_posterior(model, x: torch.Tensor, *, num_samples: int = 200, warmup_steps: int = 200,
                   num_chains: int = 4, init=None, seed: int = 0, progress: bool = False,
                   fp32: bool = True, jit: bool = True, max_tree_depth: int = 8,
                   target_accept_prob: float = 0.8, full_mass: bool = False) -> MCMCPosterior:
    """NUTS draws of z^K from the posterior p(z^K | x) of ``model`` for images x (B, C, H, W).

    The networks are frozen (eval mode, no parameter gradients) and restored after.
    The posterior is the model's as written, its prior scaled by its ``kl_weight``
    (the true posterior when that is 1, the default). The global RNG state is
    restored afterwards.

    Chains start from ``init``: None draws them from the prior N(0, I); a guide (any
    callable with the model's arguments, e.g. the run's EncoderGuide) draws each from
    q(z^K | x); a tensor (chains, B, |z|) gives them. They run one after another, one
    Pyro ``MCMC`` each seeded from ``seed``: Pyro would run them in turn anyway when
    there are fewer free cores than chains, and one sampler per chain keeps each
    chain's warmup adaptation its own and the result the same on any machine, where
    Pyro's multi-chain mode forks a process per chain and pickles the model.

    All B images run in one joint chain. The posterior factorises over images, so a
    joint chain is a valid sampler of each, and one batched model run costs much less
    than B separate ones; the diagonal mass matrix adapts per image and coordinate
    (``full_mass`` adapts a dense one instead, which needs far more warmup draws).

    ``fp32`` samples with the model's ``bf16_decoder`` switched off (and back on after):
    Hamiltonian dynamics assume a smooth potential, and bfloat16 rounding makes it
    rough, which shrinks the adapted step. ``jit`` compiles the potential with
    ``torch.jit.trace`` (Pyro's ``jit_compile``), which saves per-step overhead on a CPU.

    ``max_tree_depth`` caps a NUTS trajectory at 2^depth - 1 leapfrog steps. The
    posterior of a trained model is badly conditioned for a diagonal mass matrix, so
    trajectories often reach the cap, and the cap bounds the time per draw.
    """
    tree = model.config
    if tree.stochastic_levels:
        raise ValueError("NUTS here samples z^K only, but this model has stochastic_levels: its "
                         "per-level latents would need sampling too; use a model with "
                         "stochastic_levels=False")
    if num_chains < 1 or num_samples < 1 or warmup_steps < 0:
        raise ValueError(f"need num_chains >= 1, num_samples >= 1 and warmup_steps >= 0; got "
                         f"{num_chains}, {num_samples}, {warmup_steps}")
    site = tree.top_site
    bf16_decoder = getattr(model, "bf16_decoder", False)

    seeds = np.random.SeedSequence(seed).generate_state(num_chains).tolist()
    rng = get_rng_state()
    result = MCMCPosterior(site, torch.empty(0))
    chains = []
    try:
        if fp32 and bf16_decoder:
            model.bf16_decoder = False
        with frozen(model), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*torch.jit.trace.* is deprecated")
            for chain, chain_seed in enumerate(seeds):
                pyro.set_rng_seed(chain_seed)
                start = _initial_point(init, chain, x, site)
                stats = _SamplerStats()
                kernel = NUTS(model, target_accept_prob=target_accept_prob,
                              max_tree_depth=max_tree_depth, full_mass=full_mass,
                              init_strategy=init_to_sample,
                              jit_compile=jit, ignore_jit_warnings=True)
                mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps,
                            initial_params=None if start is None else {site: start},
                            disable_progbar=not progress, hook_fn=stats.note)
                began = time.perf_counter()
                mcmc.run(x)
                result.seconds.append(time.perf_counter() - began)
                chains.append(mcmc.get_samples()[site].detach())
                result.step_size.append(float(kernel.step_size))
                result.accept_prob.append(stats.accept_prob)
                result.divergences.append(stats.divergences)
    finally:
        set_rng_state(rng)
        if bf16_decoder:
            model.bf16_decoder = True
    result.draws = torch.stack(chains)
    return result


class _SamplerStats:
    """MCMC hook keeping, over the kept draws, NUTS's mean acceptance probability and
    its number of divergent transitions (the kernel restarts the mean when warmup
    ends and clears both when the run is over)."""

    accept_prob = float("nan")
    divergences = 0

    def note(self, kernel, params, stage, step):
        if stage == "Sample":
            self.accept_prob = float(kernel.logging()["acc. prob"])
            self.divergences = len(kernel.diagnostics()["divergences"])


def _initial_point(init, chain: int, x: torch.Tensor, site: str) -> torch.Tensor | None:
    """Chain ``chain``'s start (B, |z|), or None to draw it from the prior."""
    if init is None:
        return None
    if isinstance(init, torch.Tensor):
        if init.dim() != 3 or init.shape[1] != x.shape[0] or chain >= init.shape[0]:
            raise ValueError(f"init as a tensor needs one start per chain and image, shape "
                             f"(chains, {x.shape[0]}, |z|); got {tuple(init.shape)}")
        return init[chain].to(x)
    modules = [init] if isinstance(init, torch.nn.Module) else []
    with frozen(*modules), torch.no_grad(), poutine.block():
        return poutine.trace(init).get_trace(x).nodes[site]["value"].detach()
