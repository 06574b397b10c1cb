"""Transfer to held-out classes, as in the papers: train on every class but those, then
adapt only the encoder (or the encoder and H_policy) to the held-out classes.

    python examples/transfer.py runs/transfer --held-out 9 --adapt-steps 300
    python examples/transfer.py runs/digits --dataset mnist --held-out 7,8 --epochs 10

Each step is also one command:

    rnp-pyro fit --dataset fashion --lr 1e-3 --epochs 1 --exclude-classes 9 --out runs/transfer/base
    rnp-pyro fit --dataset fashion --lr 1e-3 --max-steps 300 --classes 9 \\
        --init-from runs/transfer/base --freeze hyper_state,hyper_policy --out runs/transfer/encoder

The table compares, on the held-out classes' test images: the base model unadapted,
the two adapted models, a new encoder trained from scratch to drive the base model's
programs, and a whole model trained from scratch on the held-out classes, each for
the same number of steps. transfer.png shows their reconstructions.
"""

import argparse
import json
from pathlib import Path

import rnp_pyro


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--dataset", default="fashion")
    parser.add_argument("--held-out", default="9",
                        help="the classes left out of training, comma-separated")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the base model")
    parser.add_argument("--adapt-steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    base_cfg = rnp_pyro.presets.for_dataset(args.dataset, lr=args.lr)

    def trained(name, cfg, **budget):
        """A run, trained now or (when its folder holds one already) loaded."""
        if rnp_pyro.folder.has_checkpoint(out / name):
            return rnp_pyro.load_run(out / name)
        return rnp_pyro.fit(cfg, out / name, seed=args.seed, progress=False, **budget)

    held = tuple(int(label) for label in args.held_out.split(","))
    base = trained("base", base_cfg.replace(exclude_classes=held), epochs=args.epochs)
    adapted_cfg = base_cfg.replace(classes=held, init_from=str(base.path.resolve()))
    runs = {
        "unadapted (base model)": base,
        "encoder adapted": trained("encoder", adapted_cfg.replace(
            freeze=("hyper_state", "hyper_policy")), max_steps=args.adapt_steps),
        "encoder and H_policy adapted": trained("encoder-policy", adapted_cfg.replace(
            freeze=("hyper_state",)), max_steps=args.adapt_steps),
        "new encoder, base programs": trained("new-encoder", adapted_cfg.replace(
            freeze=("hyper_state", "hyper_policy"), fresh=("encoder",)),
            max_steps=args.adapt_steps),
        "whole model from scratch": trained("scratch", base_cfg.replace(classes=held),
                                            max_steps=args.adapt_steps),
    }

    held_test = rnp_pyro.run.test_images(base_cfg.replace(classes=held))
    other_test = rnp_pyro.run.test_images(base_cfg.replace(exclude_classes=held))
    rows = {name: rnp_pyro.evaluate(run.model, run.guide, held_test)
            for name, run in runs.items()}
    seen = rnp_pyro.evaluate(base.model, base.guide, other_test)

    print(f"\nheld-out classes {args.held_out}: {len(held_test)} test images "
          f"(base model on the other classes: MSE {seen['mse_per_pixel']:.4f}, "
          f"ELBO {seen['elbo_nats_per_image']:.1f})\n")
    print("| model | test MSE/pixel | test ELBO (nats/image) |")
    print("|---|---|---|")
    for name, metrics in rows.items():
        print(f"| {name} | {metrics['mse_per_pixel']:.4f} | {metrics['elbo_nats_per_image']:.1f} |")
    shown = held_test[:8]  # the PNAS paper's Fig. 3B: each run's reconstructions of them
    columns = {"input": shown}
    for name, run in runs.items():
        guide, _ = rnp_pyro.guide_for(run, shown)
        columns[name] = rnp_pyro.viz.parse_trees(run.model, guide, shown).canvas
    rnp_pyro.viz.columns_figure(columns, out / "transfer.png", zoom=3)
    (out / "transfer.json").write_text(json.dumps(
        {"held_out": held, "adapt_steps": args.adapt_steps, "base_epochs": args.epochs,
         "other_classes": seen, "held_out_class": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
