"""A long run: the fashion preset and the conv VAE baseline trained side by side.

Trains, in OUT, each of ``--models`` (``rnp``: the fashion preset, ``convvae``: the
conv VAE of matched latent size and parameter count, ``ladder``: the fashion preset
with stochastic levels below the top and the ladder guide) on Fashion-MNIST for EPOCHS
epochs at the README main job's learning rate, recording test MSE and test ELBO
after every epoch (metrics.csv). A stopped run resumes from its last checkpoint, so
the command can be rerun, or run once per model in parallel processes, until it
completes. When every run in OUT has its epochs, it adds the importance-weighted
bound on log p(x) (``--iwae-samples`` per image on the first ``--iwae-images`` test
images) and writes OUT/long_run.json, OUT/long_run.md (the learning curves as a
table), OUT/long_run.png (the curves) and the RNP's figures (parses, prior samples,
clusters) in OUT/rnp/figures/; with ``--export`` it ships the RNP with the package
(``rnp_pyro.pretrained("fashion")``, rnp_pyro/weights/fashion.pt). A bound already in
OUT/long_run.json at the same settings is not computed again. ``--beside RECORD`` adds
the runs of an earlier long run's long_run.json that OUT does not hold to the table
and the plot (their curves and bounds as recorded there).

    python benchmarks/long_run.py OUT [--epochs 30] [--models rnp,convvae] [--lr 1e-3] [--export]
        [--beside benchmarks/long_run.json]
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import rnp_pyro  # noqa: E402
from rnp_pyro import hub, presets  # noqa: E402
from rnp_pyro.config import parse_switches  # noqa: E402
from rnp_pyro.folder import has_checkpoint, read_metrics  # noqa: E402
from rnp_pyro.run import evaluate_run, figures_run  # noqa: E402

LABELS = {"rnp": "RNP (fashion preset)", "convvae": "conv VAE",
          "ladder": "stochastic RNP, ladder guide"}
SETTINGS = {"rnp": dict(model="rnp"), "convvae": dict(model="convvae"),
            "ladder": dict(stochastic_levels=True, guide="ladder", crop_size=14)}
SHOWN_EPOCHS = (1, 10, 30)  # rows the README quotes


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--epochs", default=30, show_default=True)
@click.option("--models", default="rnp,convvae", show_default=True,
              help="which runs this process trains (comma-separated: rnp, convvae, ladder)")
@click.option("--lr", default=1e-3, show_default=True, help="the README main job's")
@click.option("--iwae-samples", default=100, show_default=True)
@click.option("--iwae-images", default=1000, show_default=True,
              help="first test images the log p(x) bound is computed on")
@click.option("--seed", default=0, show_default=True)
@click.option("--speed", help="performance switches, NAME=on|off,... (as fit's --speed); a "
                              "run may be resumed with others")
@click.option("--export", is_flag=True,
              help="write the RNP into the package as rnp_pyro.pretrained('fashion')")
@click.option("--beside", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="an earlier long_run.json whose other runs join the table and the plot")
def main(out, epochs, models, lr, iwae_samples, iwae_images, seed, speed, export, beside):
    for model in models.split(","):
        train(model, out, epochs, lr, seed, parse_switches(speed))
    finished = {model: read_metrics(out / model) for model in LABELS if (out / model).is_dir()}
    if any(not rows or rows[-1]["epoch"] < epochs for rows in finished.values()):
        print("some runs are not finished yet; rerun to continue them")
        return
    bounds = earlier_bounds(out / "long_run.json", iwae_samples, iwae_images)
    for model in finished:
        if model not in bounds:
            result = evaluate_run(out / model, iwae_samples=iwae_samples, limit=iwae_images)
            bounds[model] = result["log_likelihood_bound_nats_per_image"]
    bounds = {model: bounds[model] for model in finished}
    record = {"date": str(datetime.date.today()),
              "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "lr": lr,
              "epochs": epochs, "seed": seed, "iwae_samples": iwae_samples,
              "iwae_images": iwae_images, "log_likelihood_bound": bounds,
              "per_epoch": {model: rows for model, rows in finished.items()}}
    (out / "long_run.json").write_text(json.dumps(record, indent=2) + "\n")
    if beside:
        earlier = json.loads(beside.read_text())
        if (earlier["iwae_samples"], earlier["iwae_images"]) != (iwae_samples, iwae_images):
            raise click.BadParameter(f"{beside} bounds log p(x) with other settings "
                                     f"(K = {earlier['iwae_samples']} on "
                                     f"{earlier['iwae_images']} images)", param_hint="--beside")
        others = [model for model in earlier["per_epoch"] if model not in finished]
        finished = {**{m: earlier["per_epoch"][m] for m in others}, **finished}
        bounds = {**{m: earlier["log_likelihood_bound"][m] for m in others}, **bounds}
    (out / "long_run.md").write_text(table(finished, bounds, iwae_samples, iwae_images))
    plot(finished, out / "long_run.png")
    if (out / "rnp").is_dir():
        figures_run(out / "rnp", seed=seed)
        if export:
            print(f"shipped as rnp_pyro.pretrained('fashion'): {hub.export(out / 'rnp', 'fashion')}")
    print(table(finished, bounds, iwae_samples, iwae_images))


def earlier_bounds(record: Path, iwae_samples: int, iwae_images: int) -> dict:
    """The bounds a finished long run already wrote in ``record`` at these settings."""
    if not record.is_file():
        return {}
    earlier = json.loads(record.read_text())
    same = (earlier.get("iwae_samples"), earlier.get("iwae_images")) == (iwae_samples,
                                                                         iwae_images)
    return dict(earlier.get("log_likelihood_bound", {})) if same else {}


def train(model: str, out: Path, epochs: int, lr: float, seed: int, switches: dict) -> None:
    if model not in LABELS:
        raise click.BadParameter(f"unknown model {model!r}; choose from {', '.join(LABELS)}")
    run_dir = out / model
    cfg = presets.get("fashion", lr=lr, **SETTINGS[model], **switches)
    resume = has_checkpoint(run_dir)
    rnp_pyro.fit(cfg, run_dir, epochs=epochs, seed=seed, resume=resume, progress=False)


def table(runs: dict, bounds: dict, samples: int, images: int) -> str:
    names = list(runs)
    head = "| epoch | " + " | ".join(f"{LABELS[n]} test MSE | {LABELS[n]} test ELBO"
                                     for n in names) + " |\n"
    rule = "|---|" + "---|---|" * len(names) + "\n"
    by_epoch = {n: {row["epoch"]: row for row in runs[n]} for n in names}
    rows = ""
    for epoch in sorted({epoch for rows_of in by_epoch.values() for epoch in rows_of}):
        cells = [f"{by_epoch[n][epoch]['test_mse']:.4f} | {by_epoch[n][epoch]['test_elbo']:.1f}"
                 if epoch in by_epoch[n] else "- | -" for n in names]
        rows += f"| {epoch} | " + " | ".join(cells) + " |\n"
    bound = "; ".join(f"{LABELS[n]} {bounds[n]:.1f}" for n in names)
    return (head + rule + rows + f"\nlog p(x) bound, nats per image (K = {samples}, first "
            f"{images} test images): {bound}\n")


def plot(runs: dict, path: Path) -> None:
    figure, (mse, elbo) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, rows in runs.items():
        epochs = [row["epoch"] for row in rows]
        mse.plot(epochs, [row["test_mse"] for row in rows], marker=".", label=LABELS[name])
        elbo.plot(epochs, [row["test_elbo"] for row in rows], marker=".", label=LABELS[name])
    mse.set(xlabel="epoch", ylabel="test MSE per pixel", yscale="log")
    elbo.set(xlabel="epoch", ylabel="test ELBO (nats per image)")
    mse.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
