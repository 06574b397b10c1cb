"""Eq. 2 of a trained run with parts decoded: each part's own patch, and its composite
of sub-parts, against the crop of x under its action, beside a flat patch of each
crop's mean (the guide's means, the first N test images).

    python benchmarks/part_loss.py RUN [--images 256]
"""

from __future__ import annotations

import click
import torch

from rnp_pyro.model import part_crops, part_loss
from rnp_pyro.run import load_run, test_images


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--images", default=256, show_default=True)
def main(run_dir, images):
    run = load_run(run_dir, device="cpu")
    config = run.model.config
    x = test_images(run.config, limit=images)
    with torch.no_grad():
        tree = run.model.decode(run.guide.encode(x)[0])
        crops = part_crops(tree, x, config.scale_offset, config.rotation_range)
        flat = (crops - crops.mean((-1, -2), keepdim=True)).pow(2).sum((-1, -2, -3)).mean(-1)
        for form, name in (("patch", "own patch"), ("composite", "composite")):
            loss = part_loss(tree, x, config.scale_offset, config.rotation_range, form)
            print(f"{name}: {loss.mean():.1f} per part")
    print(f"flat patch of each crop's mean: {flat.mean():.1f} per part")


if __name__ == "__main__":
    main()
