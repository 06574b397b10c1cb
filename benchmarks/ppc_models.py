"""Can the posterior predictive checks fail? Each statistic's p-values on the trained
model and on deliberately wrong ones, on the same test images.

Models: the trained run (default ``rnp_pyro.pretrained("fashion")``), the same
architecture with untrained networks and encoder, and the trained model with its
networks' weights shuffled within each tensor (the right weight statistics, no
structure). Prints a markdown table (per statistic and model: mean p-value, shares
below 0.05 and above 0.95) and writes OUT.json.

    python benchmarks/ppc_models.py benchmarks/ppc_models [--images 64] [--samples 100]
"""

from __future__ import annotations

import copy
import datetime
import json
import platform
from pathlib import Path

import click
import torch

import rnp_pyro
from rnp_pyro import ppc
from rnp_pyro.run import build, test_images


def shuffled(model, seed: int):
    """A copy of ``model`` whose every weight tensor has its entries permuted."""
    wrong = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in wrong.parameters():
            flat = parameter.flatten()
            parameter.copy_(flat[torch.randperm(len(flat), generator=generator)]
                            .reshape(parameter.shape))
    return wrong


@click.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--run", "run_dir", default=None, help="a run folder (default: pretrained fashion)")
@click.option("--images", default=64, show_default=True)
@click.option("--samples", default=100, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(out, run_dir, images, samples, seed):
    run = rnp_pyro.load_run(run_dir) if run_dir else rnp_pyro.pretrained("fashion")
    x = test_images(run.config, limit=images)
    torch.manual_seed(seed)
    untrained_model, untrained_guide = build(run.config)
    models = {"trained": (run.model, run.guide),
              "untrained": (untrained_model.eval(), untrained_guide.eval()),
              "weights shuffled": (shuffled(run.model, seed).eval(), run.guide)}
    table = {}
    for name, (model, guide) in models.items():
        check = ppc.posterior_predictive(model, guide, x, num_samples=samples, seed=seed)
        table[name] = check.summary()
    print("| statistic | " + " | ".join(table) + " |")
    print("|---|" + "---|" * len(table))
    for stat in next(iter(table.values())):
        cells = [f"{s[stat]['mean_p_value']:.2f} ({s[stat]['share_below_0.05']:.2f}, "
                 f"{s[stat]['share_above_0.95']:.2f})" for s in (t for t in table.values())]
        print(f"| {stat} | " + " | ".join(cells) + " |")
    record = {"date": str(datetime.date.today()),
              "machine": platform.processor() or platform.machine(),
              "run": run_dir or "pretrained fashion", "images": images, "samples": samples,
              "seed": seed, "summary": table}
    Path(out).with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
