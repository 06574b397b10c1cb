"""Guides on the shipped model: evaluate's numbers beside Pyro's own Trace_ELBO.

On ``rnp_pyro.pretrained("fashion")`` and the first 16 Fashion-MNIST test images:
the encoder; the per-image ``normal`` and ``delta`` guides fitted by
``rnp_pyro.guide_for`` (300 steps, one shuffled batch of all 16 images per step);
Pyro's AutoDiagonalNormal and AutoLowRankMultivariateNormal fitted with the classic
SVI loop (300 steps, lr 0.05, the networks' gradients off) and their ELBO from Pyro's
``Trace_ELBO(num_particles=100)`` beside ``rnp_pyro.evaluate``'s (K = 100 draws).
Run it against an earlier checkout with ``PYTHONPATH=CHECKOUT``.

    python benchmarks/guides_on_pretrained.py
"""

from __future__ import annotations

import pyro
import torch
from pyro.infer.autoguide import AutoDiagonalNormal, AutoLowRankMultivariateNormal

import rnp_pyro
from rnp_pyro.run import test_images


def show(name: str, metrics: dict) -> None:
    print(f"{name}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in metrics.items()
                                  if k not in ("seconds", "n_images")), flush=True)


def main() -> None:
    run = rnp_pyro.pretrained("fashion")
    x = test_images(run.config, limit=16)
    show("encoder", rnp_pyro.evaluate(run.model, run.guide, x, iwae_samples=100))
    for name in ("normal", "delta"):
        guide, _ = rnp_pyro.guide_for(run, x, name)
        show(name, rnp_pyro.evaluate(run.model, guide, x, iwae_samples=100))
    for cls in (AutoDiagonalNormal, AutoLowRankMultivariateNormal):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = cls(run.model)
        run.model.requires_grad_(False)
        svi = pyro.infer.SVI(run.model, guide, pyro.optim.Adam({"lr": 0.05}),
                             pyro.infer.Trace_ELBO())
        for _ in range(300):
            svi.step(x)
        with torch.no_grad():
            elbo = -pyro.infer.Trace_ELBO(num_particles=100, vectorize_particles=True).loss(
                run.model, guide, x) / len(x)
        print(f"{cls.__name__}: Pyro Trace_ELBO(num_particles=100) {elbo:.4g}")
        show(cls.__name__, rnp_pyro.evaluate(run.model, guide, x, iwae_samples=100))
        run.model.requires_grad_(True)


if __name__ == "__main__":
    main()
