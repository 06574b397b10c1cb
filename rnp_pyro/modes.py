"""Running models for inspection rather than training."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def evaluating(*modules: torch.nn.Module):
    """Eval mode without gradients; afterwards every submodule gets its own training flag back.

    Restoring each submodule (not just the top) keeps a deliberately frozen part,
    such as a BatchNorm left in eval mode, frozen.
    """
    modes = {sub: sub.training for module in modules for sub in module.modules()}
    for module in modules:
        module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for sub, training in modes.items():
            sub.training = training


@contextmanager
def frozen(*modules: torch.nn.Module):
    """Parameters that take no gradient (eval mode too); both restored afterwards.

    For inference with the networks held fixed: only the latents (or a guide's own
    parameters) are then differentiated.
    """
    flags = {p: p.requires_grad for module in modules for p in module.parameters()}
    modes = {sub: sub.training for module in modules for sub in module.modules()}
    for module in modules:
        module.eval()
        module.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags.items():
            parameter.requires_grad_(flag)
        for sub, training in modes.items():
            sub.training = training
