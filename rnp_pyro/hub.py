"""Trained models that come with the package: ``rnp_pyro.pretrained("fashion")``
(this module's :func:`pretrained`).

Each is one run's model and guide weights in half precision (a few MB), its config
and what it measured, in ``rnp_pyro/weights/NAME.pt``; loading needs no network and
no run folder. :func:`export` writes one from a run folder and checks that the half
precision weights reconstruct the run's test images as the run's own weights do.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import ConfigError, RunConfig
from .metrics import evaluate
from .distributed import resolve_device
from .run import Run, load_run, test_images, trained_run

__all__ = ["pretrained", "names", "export"]

WEIGHTS_DIR = Path(__file__).parent / "weights"
CHECK_IMAGES = 1000  # first test images whose MSE a shipped model is checked against


def names(folder: str | Path = WEIGHTS_DIR) -> list[str]:
    """The pretrained models this installation has."""
    return sorted(path.stem for path in Path(folder).glob("*.pt"))


def pretrained(name: str = "fashion", device: str = "cpu", folder: str | Path = WEIGHTS_DIR) -> Run:
    """The trained model, guide and config ``name``, in eval mode on ``device``.

    ``run.metrics`` holds the run's last metrics row (test MSE and ELBO on the whole
    test set) and ``check_mse``: the MSE per pixel of its first ``check_images`` test
    images, which these weights reproduce to three significant figures.
    """
    path = Path(folder) / f"{name}.pt"
    if not path.is_file():
        raise ConfigError(f"no pretrained model {name!r}; this installation has "
                          f"{', '.join(names(folder)) or 'none'}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    weights = {part: _full_precision(state[part]) for part in ("model", "guide")}
    return trained_run(RunConfig.from_dict(state["config"]), {**state, **weights}, path,
                       resolve_device(device), metrics=state["metrics"])


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
             "model": _half_precision(run.model.state_dict()),
             "guide": _half_precision(run.guide.state_dict()),
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


def _half_precision(weights: dict) -> dict:
    return {key: value.half() if value.is_floating_point() else value
            for key, value in weights.items()}


def _full_precision(weights: dict) -> dict:
    return {key: value.float() if value.is_floating_point() else value
            for key, value in weights.items()}
