"""A trained generative model as one file that runs with PyTorch alone.

:func:`export_generator` writes the decoder of a model, z^K to the mean canvas and
the parse tree, as a ``torch.export`` program (``.pt2``) with any batch size. Loading
and running it needs neither this library nor Pyro::

    generator = torch.export.load("fashion.pt2").module()
    canvas, *levels = generator(torch.randn(16, 32))

The outputs are the canvas (B, C, H, W), then for each level below the top, its
latents (B, n, |z|), actions (B, n, 6) and canvases placed in their parents' frames
(B, n, C, H, W); the file's ``rnp_pyro.json`` says so, with the sizes. A model with
stochastic levels is exported with each level's mean, as ``decode(z,
stochastic=False)`` draws it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import ConfigError
from .folder import library_version
from .modes import evaluating

__all__ = ["Generator", "export_generator", "describe"]

DESCRIPTION_FILE = "rnp_pyro.json"  # inside the .pt2 archive
_TRACED_BATCH = 2  # the example batch; any batch of at least 1 runs the export


class Generator(torch.nn.Module):
    """z^K (B, |z|) -> the canvas and each lower level's latents, actions and placed
    canvases, as a flat tuple of tensors: what an exported file computes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tree = self.model.decode(z, stochastic=False)
        outputs = [tree.canvas]
        for level in tree.levels[1:]:
            outputs += [level.latents, level.actions, level.placed]
        return tuple(outputs)


def describe(model) -> dict:
    """What an exported file of ``model`` takes and returns, in words and sizes."""
    config = model.config
    with evaluating(model), torch.no_grad():
        levels = len(model.decode(torch.zeros(1, config.z_dim), stochastic=False).levels)
    outputs = ["canvas (B, C, H, W)"]
    for depth in range(1, levels):
        outputs += [f"level {depth} latents (B, n, |z|)", f"level {depth} actions (B, n, 6)",
                    f"level {depth} placed (B, n, C, H, W)"]
    return {"input": "z (B, |z|)", "z_dim": config.z_dim,
            "image_shape": list(config.image_shape), "outputs": outputs,
            "library_version": library_version()}


def export_generator(model, path: str | Path) -> Path:
    """Write ``model``'s generator (:class:`Generator`, on the CPU, in eval mode) to
    ``path`` as a ``torch.export`` program whose batch size may be anything; the path."""
    path = Path(path)
    if path.suffix != ".pt2":
        raise ConfigError(f"an exported program is a .pt2 file; got {path.name!r}: name it "
                         f"{path.with_suffix('.pt2').name}")
    device = next(model.parameters()).device
    model = model.cpu()
    try:
        with evaluating(model), torch.no_grad():
            example = torch.zeros(_TRACED_BATCH, model.config.z_dim)
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(Generator(model), (example,),
                                          dynamic_shapes=({0: batch},))
    finally:
        model.to(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path,
                      extra_files={DESCRIPTION_FILE: json.dumps(describe(model), indent=2)})
    return path

