"""The papers' figures of a shipped model (PNAS Fig. 2A-2E, 3A, workshop Fig. 4c), drawn
as ``rnp-pyro figures`` draws them for a run folder, from the first IMAGES test images,
into the folder OUT.

    python benchmarks/pretrained_figures.py OUT [--name fashion] [--images 500]
"""

from __future__ import annotations

from pathlib import Path

import click

import rnp_pyro
from rnp_pyro.run import test_images
from rnp_pyro.viz import paper_figures


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="fashion", show_default=True, help="a shipped model")
@click.option("--images", default=500, show_default=True)
@click.option("--clusters", default=10, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(out, name, images, clusters, seed):
    run = rnp_pyro.pretrained(name)
    x = test_images(run.config, limit=images)
    for path in paper_figures(run.model, run.guide, x, out, clusters=clusters, seed=seed):
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
