"""Convergence of NUTS over z^K on Fashion-MNIST test images: split R-hat and ESS.

Loads a trained run, samples p(z^K | x) for the first test images with
:func:`rnp_pyro.infer.mcmc_posterior`, and writes per image the largest split R-hat
and the smallest ESS over the |z| coordinates, with the sampler's step sizes,
acceptance probabilities and times, to OUT.json. The project's target: R-hat < 1.05
for every coordinate of every image.

Chain c is one call of ``mcmc_posterior`` with seed SEED + c, run in one of
WORKERS processes (one torch thread each, so use as many workers as cores).
OUT.json is rewritten as each chain finishes, so a long run that is stopped still
reports the chains it finished. At the end it compares the run's amortized guide
with the NUTS posterior on the same images (``--compare-only`` redoes just that
from OUT.json and the saved ``--draws``).

    python benchmarks/nuts_rhat.py runs/fashion1 nuts.json \\
        [--images 4] [--chains 4] [--samples 200] [--warmup 200] [--workers 2]
"""

from __future__ import annotations

import datetime
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import click
import torch

from rnp_pyro.data import load_images
from rnp_pyro.infer import MCMCPosterior, mcmc_posterior
from rnp_pyro.modes import evaluating
from rnp_pyro.run import load_run

TARGET_R_HAT = 1.05


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--images", default=4, show_default=True, help="first test images to sample")
@click.option("--chains", default=4, show_default=True)
@click.option("--samples", default=200, show_default=True, help="draws kept per chain")
@click.option("--warmup", default=200, show_default=True, help="adaptation steps per chain")
@click.option("--max-tree-depth", default=8, show_default=True)
@click.option("--target-accept", default=0.8, show_default=True)
@click.option("--full-mass", is_flag=True, help="adapt a dense mass matrix, not a diagonal one")
@click.option("--init", "init_from", type=click.Choice(["guide", "prior"]), default="guide",
              show_default=True, help="chains start from q(z^K | x) draws or prior draws")
@click.option("--bf16", is_flag=True, help="keep the bfloat16 decoder in the dynamics")
@click.option("--no-jit", is_flag=True, help="run the potential eagerly, not torch.jit-traced")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", default=2, show_default=True, help="chains run at once")
@click.option("--draws", "draws_path", type=click.Path(dir_okay=False), default=None,
              help="also save the draws (chains, draws, images, |z|) here with torch.save")
@click.option("--compare-only", is_flag=True,
              help="no sampling: add the guide comparison to OUT.json from the saved --draws")
def main(run_dir, out, images, chains, samples, warmup, max_tree_depth, target_accept,
         full_mass, init_from, bf16, no_jit, seed, workers, draws_path, compare_only):
    if compare_only:
        if not draws_path:
            raise click.UsageError("--compare-only needs --draws, the draws a run saved")
        report = json.loads(Path(out).read_text())
        compare(report, run_dir, torch.load(draws_path), out)
        return
    options = dict(num_samples=samples, warmup_steps=warmup, num_chains=1, fp32=not bf16,
                   jit=not no_jit, max_tree_depth=max_tree_depth,
                   target_accept_prob=target_accept, full_mass=full_mass)
    settings = {"images": images, "chains": chains, "samples": samples, "warmup": warmup,
                "max_tree_depth": max_tree_depth, "target_accept": target_accept,
                "mass_matrix": "dense" if full_mass else "diagonal", "init": init_from,
                "dynamics": "bf16" if bf16 else "fp32", "jit": not no_jit, "seed": seed,
                "workers": workers}
    start = time.perf_counter()
    done = []
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_chain, run_dir, images, init_from, seed + chain, options)
                   for chain in range(chains)]
        for future in as_completed(futures):
            done.append(future.result())
            post = MCMCPosterior(done[0].site, torch.cat([p.draws for p in done]))
            for key in ("step_size", "accept_prob", "divergences", "seconds"):
                setattr(post, key, [v for p in done for v in getattr(p, key)])
            report = summarise(post, settings, run_dir, time.perf_counter() - start)
            Path(out).write_text(json.dumps(report, indent=2) + "\n")
            if draws_path:
                torch.save(post.draws, draws_path)
            print(f"{len(done)}/{chains} chains done after {report['seconds']:.0f} s", flush=True)
    show(report, out)
    compare(report, run_dir, post.draws, out)


def run_chain(run_dir, images: int, init_from: str, seed: int, options: dict) -> MCMCPosterior:
    """One chain on the first test images, in a worker process with one thread."""
    torch.set_num_threads(1)
    run = load_run(run_dir)
    x = load_images("fashion", train=False, image_size=28, channels=1, limit=images).images
    init = run.guide if init_from == "guide" else None
    return mcmc_posterior(run.model, x, seed=seed, init=init, **options)


def compare(report: dict, run_dir, draws: torch.Tensor, out) -> None:
    """Add to OUT.json, per image, how the run's amortized q(z^K | x) sits against the
    NUTS posterior: test MSE decoded at either mean, the offset of the guide's mean in
    posterior standard deviations (root mean square over coordinates), and the median
    ratio of the guide's scale to the posterior's."""
    run = load_run(run_dir)
    x = load_images("fashion", train=False, image_size=28, channels=1,
                    limit=draws.shape[2]).images
    draws = draws.flatten(0, 1)  # (chains * draws, B, |z|)
    mean, sd = draws.mean(0), draws.std(0)
    with evaluating(run.model, run.guide):
        loc, scale = run.guide.encode(x)

        def mse(z):
            return ((run.model.decode(z).canvas - x) ** 2).flatten(1).mean(1).tolist()

        report["guide_against_nuts"] = {
            "mse_at_nuts_mean": mse(mean),
            "mse_at_guide_mean": mse(loc),
            "guide_mean_offset_in_posterior_sds":
                ((loc - mean) / sd).pow(2).mean(1).sqrt().tolist(),
            "guide_to_posterior_sd_ratio_median": (scale / sd).median(1).values.tolist(),
        }
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    for key, values in report["guide_against_nuts"].items():
        print(f"  {key}: {', '.join(f'{v:.4g}' for v in values)}")


def summarise(post: MCMCPosterior, settings: dict, run_dir, seconds: float) -> dict:
    r_hat, ess = post.r_hat(), post.ess()  # (B, |z|)
    return {
        "run": str(Path(run_dir).resolve()),
        "machine": f"{platform.processor() or platform.machine()}, one torch thread per chain",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": settings,
        "chains_done": post.num_chains,
        "max_r_hat_per_image": r_hat.max(1).values.tolist(),
        "min_ess_per_image": ess.min(1).values.tolist(),
        "max_r_hat": r_hat.max().item(),
        "median_r_hat": r_hat.median().item(),
        "min_ess": ess.min().item(),
        "coordinates_over_target": int((r_hat >= TARGET_R_HAT).sum()),
        "target_met": bool((r_hat < TARGET_R_HAT).all()) and post.num_chains > 1,
        "seconds": seconds,
        "chains": {key: getattr(post, key)
                   for key in ("step_size", "accept_prob", "divergences", "seconds")},
    }


def show(report: dict, out) -> None:
    s, c = report["settings"], report["chains"]
    print(f"{s['images']} images x {report['chains_done']} chains, {s['warmup']} warmup + "
          f"{s['samples']} draws, {s['dynamics']} dynamics, {s['mass_matrix']} mass, tree depth <= "
          f"{s['max_tree_depth']}: {report['seconds']:.0f} s")
    for i, (rh, n) in enumerate(zip(report["max_r_hat_per_image"], report["min_ess_per_image"])):
        print(f"  image {i}: max split R-hat {rh:.3f}, min ESS {n:.0f}")
    print(f"  step sizes {', '.join(f'{v:.3g}' for v in c['step_size'])}; mean acceptance "
          f"probability {', '.join(f'{v:.2f}' for v in c['accept_prob'])}; divergences "
          f"{sum(c['divergences'])}; seconds per chain "
          f"{', '.join(f'{v:.0f}' for v in c['seconds'])}")
    print(f"  R-hat >= {TARGET_R_HAT} on {report['coordinates_over_target']} coordinates; "
          f"target {'met' if report['target_met'] else 'NOT met'} -> {out}")


if __name__ == "__main__":
    main()
