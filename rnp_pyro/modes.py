"""Running models for inspection rather than training, and on a random stream of their own."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def evaluating(*modules: torch.nn.Module):
    """Eval mode without gradients; afterwards every submodule gets its own training flag back."""
    with _in_eval_mode(modules), torch.no_grad():
        yield


@contextmanager
def frozen(*modules: torch.nn.Module):
    """Parameters that take no gradient (eval mode too); both restored afterwards.

    For inference with the networks held fixed: only the latents (or a guide's own
    parameters) are then differentiated. Pyro's classic ``SVI`` steps every parameter
    it sees in the model's trace, trained networks included; inside this block those
    get no gradient, so it steps only the guide's::

        with rnp_pyro.frozen(run.model):
            svi = pyro.infer.SVI(run.model, AutoNormal(run.model), pyro.optim.Adam({}), elbo)
            for _ in range(300):
                svi.step(x)
    """
    flags = {p: p.requires_grad for module in modules for p in module.parameters()}
    for module in modules:
        module.requires_grad_(False)
    try:
        with _in_eval_mode(modules):
            yield
    finally:
        for parameter, flag in flags.items():
            parameter.requires_grad_(flag)


@contextmanager
def own_random_stream(seed: int, device: torch.device | str = "cpu"):
    """Draws inside come from ``seed``; outside, the caller's random stream goes on as if
    nothing had been drawn (torch's CPU stream, and ``device``'s when it is CUDA)."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@contextmanager
def _in_eval_mode(modules):
    """Eval mode inside, then each submodule's own training flag back.

    Restoring each submodule (not just the top) keeps a deliberately frozen part,
    such as a BatchNorm left in eval mode, frozen.
    """
    modes = {sub: sub.training for module in modules for sub in module.modules()}
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for sub, training in modes.items():
            sub.training = training
