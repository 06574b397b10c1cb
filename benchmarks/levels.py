"""What each level of trained trees carries, side by side: the KL term of each latent
level, the share of the test images each level explains, each top-level part's share
of the ink, and the papers' figures with the levels map and its separation score.

For each RUN (a run folder or ``pretrained:NAME``), on its first ``--images`` test
images (:func:`rnp_pyro.metrics.kl_per_level`, :func:`rnp_pyro.metrics.explained_per_level`,
:func:`rnp_pyro.ppc.part_mass` of the parse at the guide's means), and the figures of
``rnp-pyro figures`` from the first 500 in OUT/LABEL/figures/. Writes OUT/levels.json
and prints a markdown table. A stochastic tree whose lower levels explain most of the
image, or whose parts carry nothing, has stopped being a program model.

    python benchmarks/levels.py OUT RUN [RUN ...] [--images 1000]
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

import click
import torch

from rnp_pyro import viz
from rnp_pyro.metrics import explained_per_level, kl_per_level
from rnp_pyro.ppc import part_mass
from rnp_pyro.run import figures_run, run_on_test_images


def label_of(reference: str) -> str:
    return reference.replace("pretrained:", "pretrained-") if reference.startswith(
        "pretrained:") else Path(reference).name


def measure(reference: str, images: int) -> dict:
    run, x, guide, _ = run_on_test_images(reference, limit=images, device="cpu")
    tree = viz.parse_trees(run.model, guide, x)
    masses = part_mass(tree, x)  # (images, parts)
    shares = masses / masses.sum(-1, keepdim=True).clamp(min=1e-12)
    return {"run": reference, "epochs": run.epoch or run.metrics.get("epoch"), "images": len(x),
            "kl_nats_per_image": kl_per_level(run.model, guide, x),
            **explained_per_level(run.model, guide, x),
            "part_share_of_ink": shares.mean(0).tolist(),
            "largest_part_share": shares.max(-1).values.mean().item()}


def table(results: dict) -> str:
    lines = ["| run | epochs | level | KL (nats/image) | MSE, levels down to this one "
             "| share of the image it explains |", "|---|---|---|---|---|---|"]
    for label, got in results.items():
        for level, kl in got["kl_nats_per_image"].items():
            lines.append(f"| {label} | {got['epochs']} | z{level} | {kl:.1f} "
                         f"| {got['mse'][level]:.4f} | {got['explained'][level]:.3f} |")
    lines += ["", "| run | each top-level part's share of the ink (step 1..tau) "
              "| largest part's share, mean over images |", "|---|---|---|"]
    for label, got in results.items():
        shares = ", ".join(f"{share:.2f}" for share in got["part_share_of_ink"])
        lines.append(f"| {label} | {shares} | {got['largest_part_share']:.2f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.argument("runs", nargs=-1, required=True)
@click.option("--images", default=1000, show_default=True, help="first test images measured")
@click.option("--figures/--no-figures", default=True, show_default=True)
def main(out, runs, images, figures):
    torch.manual_seed(0)
    results = {label_of(reference): measure(reference, images) for reference in runs}
    for reference in runs if figures else ():
        paths = figures_run(reference, out=out / label_of(reference), device="cpu")
        levels = [p for p in paths if p.name == "levels.json"]
        if levels:
            results[label_of(reference)]["levels_map"] = json.loads(levels[0].read_text())
    out.mkdir(parents=True, exist_ok=True)
    record = {"date": str(datetime.date.today()),
              "machine": platform.processor() or platform.machine(), "runs": results}
    (out / "levels.json").write_text(json.dumps(record, indent=2) + "\n")
    print(table(results))
    for label, got in results.items():
        if "levels_map" in got:
            print(f"{label}: levels map {got['levels_map']}")


if __name__ == "__main__":
    main()
