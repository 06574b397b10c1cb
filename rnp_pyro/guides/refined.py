"""Semi-amortized inference: the encoder's guess, then gradient steps per image.

The papers name iterative, prediction-error-driven inference of z as future work;
this is its simplest form: q(z^K | x) starts at the encoder's Normal and takes
``refine_steps`` Adam steps on each image's own ELBO over its mean and log
scale, with the networks held fixed. Adam's update is elementwise, so one optimizer
over the batch is exactly one optimizer per image.
"""

from __future__ import annotations

import torch
import pyro
from pyro import poutine

from .encoder import EncoderGuide
from .registry import register

__all__ = ["RefinedGuide"]


@register
class RefinedGuide(EncoderGuide):
    """The encoder guide, refined per image before it samples.

    In training the refined Normal is used as a straight-through offset: the model
    sees samples of the refined q, and the encoder gets the gradient it would get at
    its own output, so it keeps learning to start the refinement well.
    """

    name = "refined"
    data_parallel = False  # each image's refinement is its own inner loop
    graph_capturable = False

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = super().encode(x)
        refined_loc, refined_scale = self.refine(x, loc.detach(), scale.detach())
        return loc + (refined_loc - loc).detach(), scale * (refined_scale / scale).detach()

    def refine(self, x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
               steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) after ``steps`` (default config.refine_steps) Adam steps on -ELBO(x_i)."""
        if torch.jit.is_tracing():
            raise TypeError("JitTrace_ELBO cannot compile the refined guide: its per-image Adam "
                            "steps are an optimisation loop inside the guide, which "
                            "torch.jit.trace cannot record; use Trace_ELBO")
        steps = self.config.refine_steps if steps is None else steps
        loc = loc.clone().requires_grad_(True)
        log_scale = scale.log().requires_grad_(True)
        optimizer = torch.optim.Adam([loc, log_scale], lr=self.config.refine_lr)
        elbo = pyro.infer.Trace_ELBO()
        # blocked: the inner traces must not reach a trace or plate the caller runs
        with torch.enable_grad(), poutine.block():
            for _ in range(steps):
                loss = elbo.differentiable_loss(
                    self.model, lambda x: self.sample(x, loc, log_scale.exp()), x)
                loc.grad, log_scale.grad = torch.autograd.grad(loss, [loc, log_scale])
                optimizer.step()
        return loc.detach(), log_scale.detach().exp()
