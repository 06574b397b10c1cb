"""Running models for inspection rather than training."""

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
    parameters) are then differentiated.
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
