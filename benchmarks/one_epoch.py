"""Quality after a fixed budget: train one configuration and print its test metrics.

Trains ``PRESET`` with JSON overrides through ``rnp_pyro.fit`` (the same loop as
``rnp-pyro fit``), then prints one markdown row: the overrides, test MSE per pixel
(mean of q(z^K | x) decoded, full test set), test ELBO and training seconds.

    python benchmarks/one_epoch.py OUT_DIR [--preset fashion] [--set '{"lr": 1e-3}']
"""

from __future__ import annotations

import json

import click

import rnp_pyro


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--preset", default="fashion", show_default=True)
@click.option("--set", "overrides", default="{}", help="JSON object of config overrides")
@click.option("--epochs", default=1, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(out, preset, overrides, epochs, seed):
    changes = {"lr": 1e-3, **json.loads(overrides)}
    cfg = rnp_pyro.presets.get(preset, **changes)
    run = rnp_pyro.fit(cfg, out, epochs=epochs, seed=seed, progress=False)
    m = run.metrics
    print(f"| {preset} | {cfg.model.kind} | `{json.dumps(changes)}` | {epochs} | "
          f"{m['test_mse']:.4f} | {m['test_elbo']:.1f} | {m['seconds']:.0f} |")


if __name__ == "__main__":
    main()
