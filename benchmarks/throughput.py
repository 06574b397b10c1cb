"""Training throughput: images/s of the library's training step (rnp_pyro.step:
model + encoder guide + Adam, as ``fit`` takes it).

Compares, on the same batches, the level-synchronous RNP (the library's path), the
literal depth-first Algorithm 1 sharing its parameters, and the conv VAE baseline
of matched latent size and parameter count. Each row also gives the model FLOPs of
one training step per image (matrix products and convolutions, forward and
backward, counted by torch's FlopCounterMode) and, given the device's peak
(``--peak-tflops``), the fraction of it reached, and what one step dispatches after
the first: its aten operators (forward, backward and optimizer; on a GPU each that
is not a view is at least one kernel launch, and ``views`` are those that only
re-describe memory) and its host reads (``_local_scalar_dense``: a value copied back
to the host, a wait for the device). ``--cuda-graphs`` times the captured step on
CUDA. Prints a markdown table to paste
into benchmarks/RESULTS.md with the machine and date it prints first.

    python benchmarks/throughput.py [--presets fashion,fashion4] [--steps 20] [--device cpu]
        [--flags compile_programs,bf16_autocast] [--peak-tflops 0.3] [--stochastic [--crop-size 14]]
"""

from __future__ import annotations

import datetime
import platform
import time

import click
import pyro
import pyro.distributions as dist
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from rnp_pyro import presets
from rnp_pyro.baselines import ConvVAE
from rnp_pyro.data import DataError, load_images
from rnp_pyro.run import build
from rnp_pyro.model import RNP
from rnp_pyro.reference import depth_first_canvas
from rnp_pyro.step import TrainStep


def depth_first_model(rnp: RNP):
    """The RNP's Pyro model with the root canvas drawn depth-first."""
    tree = rnp.config

    def model(x):
        prior = dist.Normal(x.new_zeros(tree.z_dim), x.new_ones(tree.z_dim)).to_event(1)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(tree.top_site, prior)
            rnp.likelihood.observe(depth_first_canvas(rnp, z), x)

    return model


class OperatorCount(TorchDispatchMode):
    """Counts the aten operators dispatched: all, views, and host reads."""

    def __init__(self):
        super().__init__()
        self.operators = self.views = self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.operators += 1
        self.views += func.is_view
        self.host_reads += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def measure(cfg, model, guide, modules, images, batch_size, steps, warmup=5,
            cuda_graphs=False) -> dict:
    """Training images/s, model GFLOPs per image of one step, and one step's operators."""
    params = [p for m in modules for p in m.parameters()]
    step = TrainStep(model, guide, params, len(images), cfg.train,
                     bf16_autocast=cfg.speed.bf16_autocast, cuda_graphs=cuda_graphs)
    sync = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    indices = torch.arange(batch_size, device=images.device)

    def batch(i):
        return images[(i * batch_size) % (len(images) - batch_size):][:batch_size]

    for i in range(warmup + steps):
        if i == warmup:
            sync()
            start = time.perf_counter()
        step(batch(i), indices)
    sync()
    rate = steps * batch_size / (time.perf_counter() - start)
    with OperatorCount() as count:
        step(batch(0), indices)  # a captured step dispatches none: it is replayed
    with FlopCounterMode(display=False) as counter:
        step._eager(batch(0), indices)
    return dict(rate=rate, gflop=counter.get_total_flops() / batch_size / 1e9,
                operators=count.operators, views=count.views, host_reads=count.host_reads)


@click.command()
@click.option("--presets", "names", default="fashion,fashion4", show_default=True)
@click.option("--steps", default=20, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--skip-depth-first", is_flag=True, help="Leave out the slow reference.")
@click.option("--decoder-variants", is_flag=True,
              help="Also time the other patch-decoder settings on the first preset.")
@click.option("--flags", default="", help="config flags to time switched on, one row each, "
                                          "e.g. compile_programs,bf16_autocast")
@click.option("--peak-tflops", type=float, help="the device's peak TFLOP/s (fp32 products)")
@click.option("--cuda-graphs", is_flag=True, help="also time each RNP step captured (CUDA)")
@click.option("--stochastic", is_flag=True,
              help="also time the RNP with stochastic levels, with the ladder guide and with "
                   "the encoder guide")
@click.option("--crop-size", "crop_sizes", multiple=True, type=int,
              help="with --stochastic, also time the ladder guide reading crops of this side")
def main(names, steps, batch_size, device, skip_depth_first, decoder_variants, flags,
         peak_tflops, cuda_graphs, stochastic, crop_sizes):
    torch.manual_seed(0)
    print(f"date: {datetime.date.today()}  machine: {platform.machine()} "
          f"{platform.processor() or ''} {torch.get_num_threads()} threads  device: {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""))
    print(f"torch {torch.__version__}  pyro {pyro.__version__}  batch {batch_size}  steps {steps}\n")
    print("| config | levels (taus) | model | parameters | images/s | GFLOP/image | % of peak "
          "| operators/step (views) | host reads/step |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names.split(","):
        cfg = presets.get(name)
        tree = cfg.model
        try:
            images = load_images(cfg.data.dataset, train=True, image_size=tree.image_size,
                                 channels=tree.channels, limit=4096).images
        except DataError:
            images = torch.rand(4096, *tree.image_shape)
        images = images.to(device)

        def built(config):
            model, guide = build(config)
            return model.to(device), guide.to(device)

        rnp, guide = built(cfg)
        n_params = sum(p.numel() for p in rnp.parameters())

        def variant(**changes):
            """The RNP and guide with the same weights under other switches."""
            config = cfg.replace(**changes)
            other, other_guide = built(config)
            other.load_state_dict(rnp.state_dict())
            other_guide.load_state_dict(guide.state_dict())
            return config, other, other, other_guide, n_params

        runs = {"level-synchronous RNP": (cfg, rnp, rnp, guide, n_params)}
        if cuda_graphs and device == "cuda":
            runs["RNP, CUDA graph"] = (cfg, rnp, rnp, guide, n_params)
        for flag in filter(None, flags.split(",")):
            runs[f"RNP, {flag}"] = variant(**{flag: True})
        if stochastic:
            for kind, crop in (("ladder", None), *(("ladder", c) for c in crop_sizes),
                               ("encoder", None)):
                config = cfg.replace(stochastic_levels=True, guide=kind, crop_size=crop)
                other, other_guide = built(config)
                other.load_state_dict(rnp.state_dict())
                other_guide.load_state_dict(guide.state_dict(), strict=False)  # + its own nets
                label = f"RNP, stochastic levels, {kind} guide" + (f", {crop}-px crops"
                                                                   if crop else "")
                runs[label] = (config, other, other, other_guide, n_params)
        if not skip_depth_first:
            runs["depth-first reference"] = (cfg, depth_first_model(rnp), rnp, guide, n_params)
        if name == names.split(",")[0]:
            vae = ConvVAE(cfg.replace(model="convvae").model, target_params=n_params).to(device)
            runs["conv VAE baseline"] = (cfg, vae, vae, guide,
                                         sum(p.numel() for p in vae.parameters()))
            if decoder_variants:
                for materialize, bf16 in ((False, True), (False, False), (True, False)):
                    label = (f"RNP, decoder {'materialised' if materialize else 'factored'}, "
                             f"{'bf16' if bf16 else 'fp32'}")
                    runs[label] = variant(materialize_weights=materialize, bf16_decoder=bf16)
        for label, (config, model, module, its_guide, count) in runs.items():
            got = measure(config, model, its_guide, [module, its_guide], images, batch_size,
                          steps, cuda_graphs=label.endswith("CUDA graph"))
            peak = (f"{100 * got['rate'] * got['gflop'] / (peak_tflops * 1e3):.1f}"
                    if peak_tflops else "-")
            print(f"| {name} | {tree.levels} {tree.taus} | {label} | {count:,} | {got['rate']:.0f} "
                  f"| {got['gflop']:.2f} | {peak} | {got['operators']} ({got['views']}) "
                  f"| {got['host_reads']} |", flush=True)


if __name__ == "__main__":
    main()
