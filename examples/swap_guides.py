"""One trained model, several guides: ELBO, log-likelihood bound, MSE and time per guide.

    rnp-pyro fit --dataset fashion --epochs 1 --lr 1e-3 --out runs/fashion
    python examples/swap_guides.py runs/fashion --images 500 --iwae-samples 100

The networks stay as trained; only inference changes:
- encoder: the amortized ResNet encoder the model was trained with;
- refined: the encoder's guess, then Adam steps on each image's own ELBO;
- normal: a Normal per image (Pyro's AutoNormal), started at the encoder's guess and
  fitted to these images: the per-image optimum that measures the encoder's
  amortization gap;
- delta: a point per image (AutoDelta, MAP); its "ELBO" is log p(x, z*), not a bound.
"""

import argparse
import json
import time

import rnp_pyro

GUIDES = ("encoder", "refined", "normal", "delta")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--images", type=int, default=500, help="test images")
    parser.add_argument("--iwae-samples", type=int, default=100)
    parser.add_argument("--fit-steps", type=int, default=600, help="steps fitting per-image guides")
    parser.add_argument("--guides", default=",".join(GUIDES), help="comma-separated, from "
                        + ", ".join(GUIDES))
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args()

    run = rnp_pyro.load_run(args.run_dir)
    images = rnp_pyro.run.test_images(run.config, limit=args.images)
    rows = []
    for name in args.guides.split(","):
        started = time.perf_counter()
        guide, _ = rnp_pyro.guide_for(run, images, name, fit_steps=args.fit_steps,
                                      batch_size=100)
        metrics = rnp_pyro.evaluate(run.model, guide, images, iwae_samples=args.iwae_samples)
        rows.append({"guide": name, "elbo": metrics["elbo_nats_per_image"],
                     # the bound needs more than one sample per image
                     "log_likelihood_bound": metrics.get("log_likelihood_bound_nats_per_image"),
                     "mse_per_pixel": metrics["mse_per_pixel"],
                     "seconds": time.perf_counter() - started})
        print(_row(rows[-1]), flush=True)

    summary = {"images": len(images), "iwae_samples": args.iwae_samples,
               "fit_steps": args.fit_steps, "rows": rows}
    by_name = {row["guide"]: row for row in rows}
    print(f"\n| guide | ELBO | log p(x) bound (K={args.iwae_samples}) | MSE/pixel | seconds |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(_row(row))
    if {"encoder", "refined", "normal"} <= set(by_name):
        gap = by_name["normal"]["elbo"] - by_name["encoder"]["elbo"]
        closed = by_name["refined"]["elbo"] - by_name["encoder"]["elbo"]
        summary.update(amortization_gap_nats=gap, refinement_closes_nats=closed)
        print(f"\namortization gap (normal - encoder ELBO): {gap:.1f} nats/image; "
              f"refinement closes {closed:.1f} of it")
    if args.out:
        with open(args.out, "w") as file:
            json.dump(summary, file, indent=2)


def _row(row: dict) -> str:
    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"
    return (f"| {row['guide']} | {number(row['elbo'], 1)} | {number(row['log_likelihood_bound'], 1)}"
            f" | {number(row['mse_per_pixel'], 4)} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
