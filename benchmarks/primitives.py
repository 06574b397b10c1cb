"""Fixed primitives, RNP against conv VAE (the PNAS paper's Fig. 4A).

For each primitive set (a line; a line and a curve), trains the RNP whose leaf
patches may only combine those primitives and the conv VAE of matched parameter
count that stamps them with its last layer, with SEEDS seeds each, and records the
test MSE per pixel after every epoch. Runs already in OUT are loaded, not retrained,
and a run stopped part-way resumes from its checkpoint, so the command can be rerun
until it completes. Writes OUT/primitives.json, OUT/primitives.md (mean and standard
deviation over seeds per epoch) and OUT/primitives.png (the curves with +-1 sd).

    python benchmarks/primitives.py OUT [--dataset fashion] [--epochs 5] [--seeds 3]
        [--rnp-activation softplus] [--convvae-activation relu6]
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import click

import rnp_pyro
from rnp_pyro.folder import has_checkpoint, read_metrics

SETS = {"line": ("line",), "line+curve": ("line", "curve")}
MODELS = ("rnp", "convvae")


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dataset", default="fashion", show_default=True,
              help="the papers used mnist; fashion is what this machine has offline")
@click.option("--epochs", default=5, show_default=True)
@click.option("--seeds", default=3, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--rnp-activation", default="softplus", show_default=True,
              help="of the RNP's primitive coefficients: with relu6 it stays blank on digits")
@click.option("--convvae-activation", default="relu6", show_default=True,
              help="of the conv VAE's coefficient maps")
@click.option("--max-steps", type=int, default=None, help="cap each run (a quick check)")
def main(out, dataset, epochs, seeds, lr, rnp_activation, convvae_activation, max_steps):
    curves = {}
    activations = {"rnp": rnp_activation, "convvae": convvae_activation}
    for set_name, primitives in SETS.items():
        for model in MODELS:
            for seed in range(seeds):
                run_dir = out / f"{model}-{set_name}-seed{seed}"
                cfg = rnp_pyro.presets.for_dataset(dataset, model=model, lr=lr,
                                                   primitives=primitives,
                                                   patch_activation=activations[model])
                resume = has_checkpoint(run_dir)
                rnp_pyro.fit(cfg, run_dir, epochs=epochs, max_steps=max_steps, seed=seed,
                             resume=resume, progress=False)
                curves.setdefault(f"{model} ({set_name})", []).append(test_mse(run_dir))
    (out / "primitives.json").write_text(json.dumps(
        {"dataset": dataset, "epochs": epochs, "seeds": seeds, "lr": lr,
         "activations": activations,
         "test_mse_per_epoch": curves}, indent=2) + "\n")
    (out / "primitives.md").write_text(table(curves))
    plot(curves, out / "primitives.png", dataset)
    print(table(curves))


def test_mse(run_dir: Path) -> list[float]:
    """The test MSE per pixel after each epoch of a run (its metrics.csv)."""
    return [row["test_mse"] for row in read_metrics(run_dir)]


def table(curves: dict[str, list[list[float]]]) -> str:
    """Markdown: one row per model and epoch, mean +- sd of the test MSE over seeds."""
    rows = ["| model (primitives) | epoch | test MSE/pixel, mean | sd | seeds |",
            "|---|---|---|---|---|"]
    for name, runs in curves.items():
        for epoch, values in enumerate(zip(*runs), start=1):
            spread = statistics.stdev(values) if len(values) > 1 else float("nan")
            rows.append(f"| {name} | {epoch} | {statistics.mean(values):.4f} | {spread:.4f} | "
                        f"{len(values)} |")
    return "\n".join(rows) + "\n"


def plot(curves: dict[str, list[list[float]]], path: Path, dataset: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axis = figure.add_subplot()
    for name, runs in curves.items():
        epochs = range(1, min(len(r) for r in runs) + 1)
        per_epoch = list(zip(*runs))
        means = [statistics.mean(v) for v in per_epoch]
        sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_epoch]
        axis.plot(epochs, means, marker="o", label=name)
        axis.fill_between(epochs, [m - s for m, s in zip(means, sds)],
                          [m + s for m, s in zip(means, sds)], alpha=0.2)
    axis.set_xticks(range(1, max(len(r) for runs in curves.values() for r in runs) + 1))
    axis.set_xlabel("epoch")
    axis.set_ylabel("test MSE per pixel")
    axis.set_title(f"fixed primitives, {dataset}")
    axis.legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")


if __name__ == "__main__":
    main()
