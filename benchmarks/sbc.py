"""Simulation-based calibration of the guides and of NUTS on a trained model.

Draws z^K from the prior N(0, I) and an image x from the model given it (the
likelihood's pixel noise included), then infers z^K from x with each guide and with
NUTS, the networks frozen, and ranks the true z^K among L posterior draws per
coordinate (:mod:`rnp_pyro.infer.calibration`). Calibrated inference gives uniform
ranks. Guides: ``encoder`` (the amortized q(z^K | x)), ``refined`` (the encoder, then
per-image Adam steps), ``normal`` and ``delta`` (per-image AutoNormal and AutoDelta,
fitted from the encoder's start). NUTS runs one chain started at the encoder's draw
on the first ``--nuts-sims`` images, in one joint chain per group of
``--nuts-group`` images, and keeps every ``--thin``-th of L * thin draws.

Writes OUT.json (per method: the chi-square test of the pooled ranks, the share of
coordinates whose own test rejects at 1%, the share of ranks in the outer tenth
(0.1 when calibrated), the mean rank / L,
seconds) and OUT.png (rank histograms). Without ``--run`` it uses
``rnp_pyro.pretrained("fashion")``.

    python benchmarks/sbc.py benchmarks/sbc [--sims 200] [--draws 99] [--nuts-sims 20]
"""

from __future__ import annotations

import datetime
import json
import platform
import time
from pathlib import Path

import click
import pyro
import torch

import rnp_pyro
from rnp_pyro import guides
from rnp_pyro.infer import fit_guide, mcmc_posterior
from rnp_pyro.infer.calibration import rank_uniformity, sbc_ranks
from rnp_pyro.modes import evaluating


def simulate(model, sims: int, seed: int):
    """(z^K, x): ``sims`` draws of the top latent from the prior and images from the model."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(sims, model.config.z_dim, generator=generator)
    with torch.no_grad():
        canvas = model.decode(z).canvas
        torch.manual_seed(seed + 1)
        x = model.likelihood(canvas).sample()
    return z, x


def per_image_draws(model, guide, x: torch.Tensor, draws: int) -> torch.Tensor:
    """(L, N, |z|) draws of z^K from a per-image guide fitted to x as its dataset."""
    indices = torch.arange(len(x))
    with torch.no_grad(), pyro.plate("particles", draws, dim=-2):
        trace = pyro.poutine.trace(guide).get_trace(x, indices, len(x))
    return trace.nodes[model.config.top_site]["value"]


def guide_draws(run, x: torch.Tensor, draws: int, fit_steps: int) -> dict:
    """{guide name: ((L, N, |z|) draws, seconds)}."""
    model, encoder = run.model, run.guide
    out = {}
    started = time.perf_counter()
    with evaluating(encoder):
        loc, scale = encoder.encode(x)
    out["encoder"] = (torch.distributions.Normal(loc, scale).sample((draws,)),
                      time.perf_counter() - started)

    started = time.perf_counter()
    refined = guides.build(run.config.guide.replace(kind="refined"), model)
    refined.encoder.load_state_dict(encoder.encoder.state_dict())
    with evaluating(model, refined):
        r_loc, r_scale = refined.encode(x)
    out["refined"] = (torch.distributions.Normal(r_loc, r_scale).sample((draws,)),
                      time.perf_counter() - started)

    for name in ("normal", "delta"):
        started = time.perf_counter()
        guide = guides.build(run.config.guide.replace(kind=name), model, example=x,
                             dataset_size=len(x))
        guide.start_from(loc, scale)
        fit_guide(model, guide, x, steps=fit_steps, batch_size=64)
        out[name] = (per_image_draws(model, guide, x, draws), time.perf_counter() - started)
    return out


def nuts_draws(run, x: torch.Tensor, draws: int, thin: int, warmup: int, group: int,
               depth: int, seed: int):
    """((L, n, |z|) NUTS draws, seconds, divergences, mean acceptance)."""
    kept, seconds, divergences, accept = [], 0.0, 0, []
    for start in range(0, len(x), group):
        post = mcmc_posterior(run.model, x[start:start + group], num_samples=draws * thin,
                              warmup_steps=warmup, num_chains=1, init=run.guide,
                              seed=seed + start, max_tree_depth=depth)
        kept.append(post.draws[0, thin - 1::thin])
        seconds += sum(post.seconds)
        divergences += sum(post.divergences)
        accept += post.accept_prob
        print(f"  NUTS images {start}..{start + len(kept[-1][0]) - 1}: {seconds:.0f} s so far")
    return torch.cat(kept, dim=1), seconds, divergences, sum(accept) / len(accept)


def summarise(truth: torch.Tensor, draws: torch.Tensor, seconds: float, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ranks = sbc_ranks(truth, draws, generator=generator)  # (N, |z|)
    pooled = rank_uniformity(ranks, len(draws))
    # each coordinate on its own: independent ranks, the test's assumption holds exactly
    bins = 10 if len(truth) >= 50 else 5
    rejected = sum(rank_uniformity(ranks[:, d], len(draws), bins=bins).p_value < 0.01
                   for d in range(ranks.shape[1])) / ranks.shape[1]
    return {"images": len(truth), "chi2": pooled.chi2, "p_value": pooled.p_value,
            "coordinates_rejected_at_1pct": rejected, "outer_share": pooled.outer,
            "mean_rank": pooled.mean, "counts": pooled.counts, "seconds": round(seconds, 1),
            "ranks": ranks.tolist()}


def figure(results: dict, draws: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    for axis, name in zip(axes[0], names):
        counts = results[name]["counts"]
        total = sum(counts)
        expected = total / len(counts)
        low, high = stats.binom.ppf([0.005, 0.995], total, 1 / len(counts))
        axis.bar(range(len(counts)), counts, width=1.0, color="tab:blue")
        axis.axhspan(low, high, color="grey", alpha=0.3, lw=0)
        axis.axhline(expected, color="black", lw=0.8)
        axis.set_title(f"{name} (n={results[name]['images']})\n"
                       f"χ² p={results[name]['p_value']:.2g}", fontsize=9)
        axis.set_xticks([0, len(counts) - 1], ["0", str(draws)])
        axis.set_xlabel("rank of the true z")
    axes[0][0].set_ylabel("count (images × coordinates)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--run", "run_dir", default=None, help="a run folder (default: pretrained fashion)")
@click.option("--sims", default=200, show_default=True)
@click.option("--draws", default=99, show_default=True, help="L posterior draws per image")
@click.option("--fit-steps", default=300, show_default=True)
@click.option("--nuts-sims", default=20, show_default=True)
@click.option("--nuts-group", default=10, show_default=True)
@click.option("--nuts-warmup", default=200, show_default=True)
@click.option("--thin", default=2, show_default=True)
@click.option("--depth", default=7, show_default=True, help="NUTS max tree depth")
@click.option("--seed", default=0, show_default=True)
def main(out, run_dir, sims, draws, fit_steps, nuts_sims, nuts_group, nuts_warmup, thin, depth,
         seed):
    run = rnp_pyro.load_run(run_dir) if run_dir else rnp_pyro.pretrained("fashion")
    run.model.eval()
    run.guide.eval()
    truth, x = simulate(run.model, sims, seed)
    results = {}
    for name, (drawn, seconds) in guide_draws(run, x, draws, fit_steps).items():
        results[name] = summarise(truth, drawn, seconds, seed)
        print(name, {k: v for k, v in results[name].items() if k not in ("ranks", "counts")})
    nuts_note = {}
    if nuts_sims:
        drawn, seconds, divergences, accept = nuts_draws(
            run, x[:nuts_sims], draws, thin, nuts_warmup, nuts_group, depth, seed)
        results["nuts"] = summarise(truth[:nuts_sims], drawn, seconds, seed)
        nuts_note = {"warmup": nuts_warmup, "thin": thin, "max_tree_depth": depth,
                     "chains": 1, "group": nuts_group, "divergences": divergences,
                     "accept_prob": accept}
        print("nuts", {k: v for k, v in results["nuts"].items() if k not in ("ranks", "counts")})
    out = Path(out)
    figure(results, draws, out.with_suffix(".png"))
    record = {"date": str(datetime.date.today()),
              "machine": f"{platform.processor() or platform.machine()}, "
                         f"{torch.get_num_threads()} torch threads",
              "run": run_dir or "pretrained fashion", "sims": sims, "draws": draws,
              "fit_steps": fit_steps, "seed": seed, "nuts": nuts_note, "results": results}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
