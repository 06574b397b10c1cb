"""Scenes and depth (the PNAS paper's Fig. 4B-C): a 4-level RNP on pairs of objects,
and its 3-level truncation driven by a new encoder on single centred objects.

Trains, in OUT:

- ``scenes``: the ``scenes`` preset (two randomly transformed objects on a 48-pixel
  canvas, taus (3, 3, 3)) for EPOCHS epochs;
- ``truncated``: the scene model's tree below its top program level, hypernetworks
  frozen, with a fresh encoder trained on the objects alone, centred and drawn
  across the whole canvas, for TRUNCATION_EPOCHS epochs;
- ``random-programs``: the same, but its frozen hypernetworks are freshly
  initialised rather than learned on scenes: how much a new encoder alone can do.

Runs already in OUT are loaded, and a stopped run resumes from its checkpoint, so
the command can be rerun until it completes. Writes OUT/scenes.json and
OUT/scenes.md (test MSE and ELBO per epoch, over each run's whole test set),
OUT/scenes_parse.png (test scenes, their reconstructions and parts) and
OUT/truncation.png (test objects and the two truncations' reconstructions).

    python benchmarks/scenes.py OUT [--dataset fashion] [--epochs 3] [--truncation-epochs 1]
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

import click
import torch

import rnp_pyro
from rnp_pyro import presets, viz
from rnp_pyro.folder import has_checkpoint, read_metrics
from rnp_pyro.run import read_config, run_on_test_images

SHOWN = 8  # test images in each figure


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dataset", default="fashion", show_default=True,
              help="the objects; the paper used mnist, fashion is what this machine has offline")
@click.option("--epochs", default=3, show_default=True, help="epochs of the scene model")
@click.option("--truncation-epochs", default=1, show_default=True,
              help="epochs of each new encoder")
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--max-steps", type=int, default=None, help="cap each run (a quick check)")
def main(out, dataset, epochs, truncation_epochs, lr, max_steps):
    scenes = out / "scenes"
    train(presets.for_dataset(f"scenes:{dataset}", lr=lr), scenes, epochs, max_steps)
    truncated = presets.truncation(read_config(scenes), scenes, 1, dataset=dataset, lr=lr)
    train(truncated, out / "truncated", truncation_epochs, max_steps)
    # the same architecture and frozen parts, from a fresh initialisation
    train(truncated.replace(init_from=None, truncate=0), out / "random-programs",
          truncation_epochs, max_steps)

    names = ("scenes", "truncated", "random-programs")
    curves = {name: metrics(out / name) for name in names}
    (out / "scenes.json").write_text(json.dumps(
        {"date": str(datetime.date.today()), "machine": platform.processor() or platform.machine(),
         "torch": torch.__version__, "dataset": dataset, "lr": lr, "epochs": epochs,
         "truncation_epochs": truncation_epochs, "per_epoch": curves}, indent=2) + "\n")
    (out / "scenes.md").write_text(table(curves))
    draw(out)
    print(table(curves))


def train(cfg, run_dir: Path, epochs: int, max_steps: int | None) -> None:
    resume = has_checkpoint(run_dir)
    rnp_pyro.fit(cfg, run_dir, epochs=epochs, max_steps=max_steps, resume=resume,
                 progress=False)


def metrics(run_dir: Path) -> list[dict]:
    """Epoch, step, test MSE per pixel and test ELBO of each row of a run's metrics.csv."""
    return [{key: row[key] for key in ("epoch", "step", "test_mse", "test_elbo")}
            for row in read_metrics(run_dir)]


def table(curves: dict[str, list[dict]]) -> str:
    rows = ["| run | epoch | steps | test MSE/pixel | test ELBO (nats/image) |",
            "|---|---|---|---|---|"]
    for name, rows_of_run in curves.items():
        for row in rows_of_run:
            rows.append(f"| {name} | {row['epoch']} | {row['step']} | {row['test_mse']:.4f} | "
                        f"{row['test_elbo']:.1f} |")
    return "\n".join(rows) + "\n"


def draw(out: Path) -> None:
    """Fig. 4B: test scenes parsed by the 4-level model; Fig. 4C: test objects
    reconstructed by the truncations."""
    run, scenes, guide, _ = run_on_test_images(out / "scenes", limit=SHOWN, device="cpu")
    viz.parse_figure(viz.parse_trees(run.model, guide, scenes), scenes, out / "scenes_parse.png")
    columns = {}
    for name in ("truncated", "random-programs"):
        run, objects, guide, _ = run_on_test_images(out / name, limit=SHOWN, device="cpu")
        columns.setdefault("object", objects)
        columns[name] = viz.parse_trees(run.model, guide, objects).canvas
    viz.columns_figure(columns, out / "truncation.png")


if __name__ == "__main__":
    main()
