"""Trained models that come with the package: ``rnp_pyro.pretrained("fashion")``.

Each is one run's model and guide weights in half precision (a few MB), its config
and what it measured, in ``rnp_pyro/weights/NAME.pt``, with a model card beside it
(``NAME.md``); loading needs no network and no run folder (:func:`pretrained`, which
lives with the other ways of loading a run, :mod:`rnp_pyro.run`, and is here too).
:func:`export` writes one from a run folder and checks that the half precision
weights reconstruct the run's test images as the run's own weights do.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .metrics import evaluate
from .run import WEIGHTS_DIR, half_precision, load_run, names, pretrained, test_images

__all__ = ["pretrained", "names", "export"]

CHECK_IMAGES = 1000  # first test images whose MSE a shipped model is checked against


def export(run_dir: str | Path, name: str, data_dir: str | Path | None = None,
           folder: str | Path = WEIGHTS_DIR) -> Path:
    """Write the run in ``run_dir`` as the pretrained model ``name`` into ``folder``
    (the package's own by default); its path.

    Raises if the half precision weights do not reproduce the run's MSE on the first
    CHECK_IMAGES test images to three significant figures.
    """
    run = load_run(run_dir)
    images = test_images(run.config, limit=CHECK_IMAGES, data_dir=data_dir)  # the run's device
    expected = evaluate(run.model, run.guide, images)["mse_per_pixel"]
    state = {"config": run.config.to_dict(), "epoch": run.epoch, "step": run.step,
             "model": half_precision(run.model.state_dict()),
             "guide": half_precision(run.guide.state_dict()),
             "metrics": {**run.metrics, "check_mse": expected, "check_images": len(images)}}
    path = Path(folder) / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    shipped = pretrained(name, folder=folder)
    got = evaluate(shipped.model, shipped.guide, images)["mse_per_pixel"]
    if f"{got:.3g}" != f"{expected:.3g}":
        path.unlink()
        raise ValueError(f"half precision changes the test MSE of {run_dir} from {expected:.4g} "
                         f"to {got:.4g}; not exported")
    return path

