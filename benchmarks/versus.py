"""Training speed of this checkout against another (an earlier commit in a git worktree).

Machines differ by up to 2.5x, so a speed-up is only meaningful side by side: this
times the training loop's own step (``rnp_pyro.train.Training.take_step``: loss,
gradient, guard and Adam, as ``fit`` takes it) on the same Fashion-MNIST batches
in fresh processes, in turn: the other checkout's RNP, this one's RNP, this one's
conv VAE, repeated ``--rounds`` times. Prints the median images/s of each and the
ratios, with the machine and date.

    git worktree add /tmp/before COMMIT
    python benchmarks/versus.py /tmp/before [--preset fashion] [--rounds 3] [--steps 100]
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import click

HERE = Path(__file__).resolve().parents[1]

# runs in a fresh process with one checkout first on the path; uses only what both have
# (configs were one flat dataclass before 2026-12-02, and are composed of parts since)
CHILD = """
import sys, tempfile, time
from pathlib import Path
import pyro, torch
from rnp_pyro import data, presets
from rnp_pyro.run import build
try:
    from rnp_pyro.train import Training
except ImportError:  # before 2026-12-06 the loop was train._Training
    from rnp_pyro.train import _Training as Training

preset, model, steps, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), 64
warmup = 10
cfg = presets.get(preset, model=model, lr=1e-3, batch_size=batch)
dataset = cfg.data.dataset if hasattr(cfg, "data") else cfg.dataset
images = data.load_images(dataset, train=True, limit=batch * (warmup + steps)).images
pyro.set_rng_seed(0)
net, guide = build(cfg, example=images, dataset_size=len(images))
with tempfile.TemporaryDirectory() as out:
    training = Training(cfg, net, guide, images, images[:batch], Path(out), 0)
    net.train(); guide.train()
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        indices = torch.arange(i * batch, (i + 1) * batch)
        training.take_step(images[indices], indices)
    print(steps * batch / (time.perf_counter() - start))
"""


def rate(tree: Path, preset: str, model: str, steps: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", CHILD, preset, model, str(steps)], env=env,
                          capture_output=True, text=True, check=True, cwd=tree)
    return float(done.stdout.strip().splitlines()[-1])


@click.command()
@click.argument("other", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--preset", default="fashion", show_default=True)
@click.option("--rounds", default=3, show_default=True)
@click.option("--steps", default=100, show_default=True, help="timed steps of 64 images")
def main(other, preset, rounds, steps):
    import torch

    contenders = {f"RNP, {other.name} (other checkout)": (other.resolve(), "rnp"),
                  "RNP, this checkout": (HERE, "rnp"),
                  "conv VAE, this checkout": (HERE, "convvae")}
    rates = {label: [] for label in contenders}
    for _ in range(rounds):
        for label, (tree, model) in contenders.items():
            rates[label].append(rate(tree, preset, model, steps))
    print(f"date: {datetime.date.today()}  machine: {platform.machine()} "
          f"{platform.processor() or ''} {os.cpu_count()} cores, torch {torch.__version__} "
          f"{torch.get_num_threads()} threads; {rounds} rounds of {steps} steps, batch 64\n")
    print("| preset | training step | images/s (median) | each round |")
    print("|---|---|---|---|")
    medians = {label: statistics.median(got) for label, got in rates.items()}
    for label, got in rates.items():
        print(f"| {preset} | {label} | {medians[label]:.0f} | "
              f"{', '.join(f'{r:.0f}' for r in got)} |")
    before, now, vae = medians.values()
    print(f"\nthis checkout / other: {now / before:.2f}x; RNP / conv VAE: {now / vae:.2f}x")


if __name__ == "__main__":
    main()
