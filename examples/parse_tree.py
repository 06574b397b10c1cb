"""Read a trained run's parse trees through the public API.

    rnp-pyro fit --dataset fashion --epochs 1 --lr 1e-3 --out runs/fashion
    python examples/parse_tree.py runs/fashion

Prints the shape of every level of the tree for a few test images, how much of
each image every top-level part draws, and writes the parse figure next to the run.
"""

import argparse
from pathlib import Path

import torch

import rnp_pyro
from rnp_pyro import viz


def main(run_dir: str) -> None:
    run = rnp_pyro.load_run(run_dir)
    images = rnp_pyro.run.test_images(run.config, limit=6)
    with torch.no_grad():
        loc, _ = run.guide.encode(images)
        tree = run.model.decode(loc)
        for depth, level in enumerate(tree.levels):
            print(f"depth {depth}: latents {tuple(level.latents.shape)}, "
                  f"actions {tuple(level.actions.shape)}, canvases {tuple(level.canvases.shape)}")
        parts = tree.levels[1].placed.sum(dim=(-1, -2, -3))  # ink each part puts in the image
        share = parts / parts.sum(-1, keepdim=True)
        print("share of the image drawn by each top-level part:\n", share.numpy().round(2))
    out = viz.parse_figure(tree, images, Path(run_dir) / "parse_example.png")
    print("wrote", out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default="runs/fashion",
                        help="a trained run folder [default: runs/fashion]")
    main(parser.parse_args().run_dir)
