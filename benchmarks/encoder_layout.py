"""The ResNet encoder's training step with its convolution weights contiguous (as the
library keeps them) against channels-last weights (as it kept them before), the
images channels-last in both; forward and backward of 64 images at the fashion
preset's size, alternated in one process, one torch thread.

    python benchmarks/encoder_layout.py [--repeats 7]
"""

from __future__ import annotations

import copy
import datetime
import platform

import click
import torch
from torch.utils import benchmark

import rnp_pyro


@click.command()
@click.option("--repeats", default=7, show_default=True)
def main(repeats):
    torch.set_num_threads(1)
    cfg = rnp_pyro.presets.get("fashion")
    contiguous = rnp_pyro.guides.EncoderGuide(rnp_pyro.RNP(cfg.model), cfg.guide).encoder
    channels_last = copy.deepcopy(contiguous).to(memory_format=torch.channels_last)
    x = torch.rand(64, *cfg.model.image_shape)

    def step(encoder):
        loc, scale = encoder(x)
        (loc.sum() + scale.sum()).backward()

    times = {"contiguous": [], "channels_last": []}
    for _ in range(repeats):
        for name, encoder in (("contiguous", contiguous), ("channels_last", channels_last)):
            timer = benchmark.Timer("step(encoder)", globals={"step": step, "encoder": encoder})
            times[name].append(timer.blocked_autorange(min_run_time=1.0).median * 1e3)
    print(f"date: {datetime.date.today()}  machine: {platform.processor() or platform.machine()}"
          f"  torch {torch.__version__}, 1 thread")
    for name, values in times.items():
        values = sorted(values)
        print(f"{name}: median {values[len(values) // 2]:.1f} ms per step of 64 images "
              f"(min {values[0]:.1f}, max {values[-1]:.1f})")
    ratio = sorted(c / l for c, l in zip(times["contiguous"], times["channels_last"]))
    print(f"contiguous / channels_last, paired: median {ratio[len(ratio) // 2]:.3f} "
          f"(min {ratio[0]:.3f}, max {ratio[-1]:.3f})")


if __name__ == "__main__":
    main()
