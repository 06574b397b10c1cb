"""Per-image guides: Pyro's own autoguides over the subsampled ``data`` plate.

They keep one set of variational parameters per dataset image (every latent site of
the model, per-level latents included) and train on minibatches: the model and the
guide are called with ``(x, indices, dataset_size)``. Fitted with the networks
frozen, they give the per-image optimum that the amortized encoder is measured
against (its amortization gap).
"""

from __future__ import annotations

import sys

import pyro
import torch
from pyro.distributions.transforms import biject_to
from pyro.infer.autoguide import AutoDelta, AutoNormal

from ..plates import data_plate
from .registry import Guide, register

__all__ = ["ImageDelta", "ImageNormal"]


class _PerImage(Guide):
    per_image = True

    @classmethod
    def from_config(cls, model, config, *, example=None, dataset_size=None, bf16_encoder=False):
        if dataset_size is None or example is None:
            raise ValueError(f"the per-image guide {cls.name!r} needs dataset_size and an "
                             f"example batch")
        guide = cls(model)
        guide.initialise(example, dataset_size)
        return guide

    # Pyro's autoguides keep PyroParams, which Pyro's global store would share between
    # every guide of the same layout; these live in the guide, whatever pyro.settings
    # say: it is built and run with module-local parameters (the models it traces then
    # are too, which rnp_pyro's models are built for).
    def __init__(self, *args, **kwargs):
        with pyro.settings.context(module_local_params=True):
            super().__init__(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        if _compiling_with_pyro_jit():
            raise TypeError(f"JitTrace_ELBO cannot compile the per-image guide {self.name!r}: it "
                            f"takes the dataset size, an int, which torch.jit.trace cannot take, "
                            f"and keeps its parameters out of Pyro's global store; use "
                            f"Trace_ELBO")
        with pyro.settings.context(module_local_params=True):
            return super().__call__(*args, **kwargs)

    def initialise(self, x: torch.Tensor, dataset_size: int) -> None:
        """Create the parameters for ``dataset_size`` images (Pyro creates them lazily)."""
        self(x[:1], torch.zeros(1, dtype=torch.long, device=x.device), dataset_size)

    def start_from(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        """Start every image's q(z^K) at (loc, scale) (N, |z|), e.g. an encoder's guess."""
        for module, name, value in self._top_parameters(self.top, loc, scale):
            constraint, _ = module._pyro_params[name]
            unconstrained = getattr(module, f"{name}_unconstrained")
            with torch.no_grad():
                unconstrained.copy_(biject_to(constraint).inv(value))


@register
class ImageNormal(_PerImage, AutoNormal):
    """A diagonal Normal per image and latent site (pyro.infer.autoguide.AutoNormal)."""

    name = "normal"

    def __init__(self, model, init_scale: float = 0.1):
        super().__init__(model, init_scale=init_scale, create_plates=data_plate)
        self.top = model.config.top_site

    def _top_parameters(self, top, loc, scale):
        return [(self.locs, top, loc), (self.scales, top, scale)]


@register
class ImageDelta(_PerImage, AutoDelta):
    """A point estimate per image and latent site, MAP (pyro.infer.autoguide.AutoDelta).

    Its "ELBO" is the log joint density at the point, not a bound on log p(x).
    """

    name = "delta"

    def __init__(self, model):
        super().__init__(model, create_plates=data_plate)
        self.top = model.config.top_site

    def _top_parameters(self, top, loc, scale):
        return [(self, top, loc)]


def _compiling_with_pyro_jit() -> bool:
    """Whether Pyro's JIT (``pyro.ops.jit``, behind JitTrace_ELBO and its kin) is
    preparing a compiled function that calls this guide."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "__call__" and frame.f_globals.get("__name__") == "pyro.ops.jit":
            return True
        frame = frame.f_back
    return False
