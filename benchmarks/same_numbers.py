"""Do two checkouts compute the same numbers? A restructuring must not change any.

Trains the default model and every preset and variant of the README's paper table
for 30 steps (batch 16, seed 0) on the first 480 training and 32 test images, and
prints, per variant, the run's train ELBO, test ELBO and test MSE to every digit and
a hash of all its trained weights. Run it with each checkout first on the path and
compare the two outputs line by line:

    git worktree add /tmp/before COMMIT
    PYTHONPATH=/tmp/before python benchmarks/same_numbers.py > before.txt
    python benchmarks/same_numbers.py > after.txt
    diff before.txt after.txt

Uses only what every version of the package has (``rnp_pyro.fit`` with given image
sets, ``presets``, ``data.load_images``), so it runs on earlier commits too.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import sys
import tempfile
from pathlib import Path

import click
import torch

import rnp_pyro
from rnp_pyro import data, presets

STEPS, BATCH, TRAIN, TEST = 30, 16, 480, 32

# name -> (preset, flat settings); "from:NAME" in init_from starts from that variant's run
VARIANTS = {
    "default": ("fashion", {}),
    "fashion4": ("fashion4", {}),
    "mnist preset": ("mnist", {"dataset": "fashion"}),
    "omniglot preset": ("omniglot", {"dataset": "fashion"}),
    "scenes": ("scenes", {}),
    # RGB at 50 pixels, with the fashion presets' small leaf patches (full-size ones take
    # minutes a step on two cores)
    "fashion-tinted": ("fashion-tinted", {"patch_size": 10, "materialize_weights": True}),
    "convvae": ("fashion", {"model": "convvae"}),
    "primitives": ("fashion", {"primitives": ("line", "curve")}),
    "convvae primitives": ("fashion", {"model": "convvae", "primitives": ("line", "curve")}),
    "part loss composite": ("fashion", {"part_loss_lambda": 0.01}),
    "pnas-parts": ("pnas-parts", {"part_loss_ramp": 1}),
    "program input patch": ("fashion", {"program_input": "patch"}),
    "one-layer program encoder": ("fashion", {"program_encoder": (64,)}),
    "workshop": ("workshop", {}),
    "workshop, latent input": ("workshop", {"program_input": "latent",
                                            "parent_input": "own_output"}),
    "stochastic, encoder guide": ("fashion", {"stochastic_levels": True}),
    "stochastic, ladder guide": ("fashion", {"stochastic_levels": True, "guide": "ladder"}),
    "stochastic patch input, ladder": ("fashion", {"stochastic_levels": True, "guide": "ladder",
                                                   "program_input": "patch"}),
    "per-level hypernetworks": ("fashion", {"shared_hypernetworks": False}),
    "unmaterialised decoder": ("fashion", {"materialize_weights": False}),
    "normal guide": ("fashion", {"guide": "normal"}),
    "refined guide": ("fashion", {"guide": "refined"}),
    "iwae": ("fashion", {"objective": "iwae", "num_particles": 3}),
    "transfer": ("fashion", {"init_from": "from:default", "freeze": ("hyper_state",
                                                                     "hyper_policy")}),
}


def images(config, train: bool):
    tree = config.model
    return data.load_images(config.data.dataset, train=train, image_size=tree.image_size,
                            channels=tree.channels, limit=TRAIN if train else TEST)


def weights_hash(run) -> str:
    digest = hashlib.sha256()
    for module in (run.model, run.guide):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def row(path: Path) -> dict:
    with open(path / "metrics.csv") as file:
        return list(csv.DictReader(file))[-1]


@click.command()
@click.option("--only", multiple=True, help="variants to run (default: all)")
def main(only):
    logging.getLogger("rnp_pyro").setLevel(logging.WARNING)
    torch.set_num_threads(2)
    folders = {}
    with tempfile.TemporaryDirectory() as root:
        for name, (preset, settings) in VARIANTS.items():
            if only and name not in only:
                continue
            settings = dict(settings, batch_size=BATCH)
            if str(settings.get("init_from", "")).startswith("from:"):
                settings["init_from"] = str(folders[settings["init_from"][5:]])
            config = presets.get(preset, **settings)
            out = Path(root) / name.replace(" ", "_").replace(",", "")
            run = rnp_pyro.fit(config, out, max_steps=STEPS, seed=0, device="cpu",
                               progress=False, train_set=images(config, True),
                               test_set=images(config, False))
            folders[name] = out
            last = row(out)
            print(f"{name}: train_elbo {last['train_elbo']} test_elbo {last['test_elbo']} "
                  f"test_mse {last['test_mse']} weights {weights_hash(run)}", flush=True)
    print(f"# torch {torch.__version__}, {sys.platform}", file=sys.stderr)


if __name__ == "__main__":
    main()
