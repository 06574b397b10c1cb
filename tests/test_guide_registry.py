"""A guide added in one file, by a research script: it trains and evaluates by name from
the Python API and the command line, with no other module edited."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from pyro.nn import PyroModule
from torch import nn

from rnp_pyro import data, folder, guides, run
from rnp_pyro.cli import main
from rnp_pyro.errors import ConfigError
from rnp_pyro.guides import registry
from rnp_pyro.plates import data_plate


class LinearGuide(guides.Guide, PyroModule):
    """q(z^K | x) = Normal(A x + b, softplus(C x + d)): the smallest amortized guide."""

    name = "linear"
    data_parallel = True
    stochastic_levels = "unsupported"

    def __init__(self, model):
        super().__init__()
        object.__setattr__(self, "model", model)
        tree = model.config
        self.net = nn.Linear(math.prod(tree.image_shape), 2 * tree.z_dim)

    def forward(self, x, indices=None, dataset_size=None):
        loc, raw = self.net(x.flatten(-3)).chunk(2, -1)
        with data_plate(x, indices, dataset_size):
            return pyro.sample(self.model.config.top_site,
                               dist.Normal(loc, F.softplus(raw) + 1e-3).to_event(1))


@pytest.fixture
def linear_registered(monkeypatch):
    monkeypatch.setattr(registry, "_CLASSES", dict(registry._CLASSES))
    guides.register(LinearGuide)


def test_a_registered_guide_trains_and_evaluates_from_the_python_api(linear_registered, tiny_config,
                                                                     tmp_path):
    config = tiny_config(guide="linear")
    strokes = dict(train_set=data.load_images("strokes", image_size=16, limit=256),
                   test_set=data.load_images("strokes", train=False, image_size=16, limit=32))
    fitted = run.fit(config, tmp_path, max_steps=24, device="cpu", progress=False, **strokes)
    assert isinstance(fitted.guide, LinearGuide)
    rows = folder.read_metrics(tmp_path)
    assert math.isfinite(rows[-1]["test_elbo"])
    loaded = run.load_run(tmp_path)
    torch.testing.assert_close(loaded.guide.net.weight, fitted.guide.net.weight)
    with pytest.raises(ConfigError, match="does not support stochastic"):
        tiny_config(guide="linear", stochastic_levels=True)


def test_a_registered_guide_trains_and_evaluates_from_the_command_line(linear_registered,
                                                                       few_images, tmp_path):
    out = tmp_path / "run"
    fitted = CliRunner().invoke(main, ["fit", "--dataset", "strokes", "--guide", "linear",
                                       "--max-steps", "3", "--out", str(out), "--device", "cpu",
                                       "--no-progress"])
    assert fitted.exit_code == 0, fitted.output
    assert json.loads((out / "config.json").read_text())["guide"]["kind"] == "linear"
    evaluated = CliRunner().invoke(main, ["evaluate", str(out), "--device", "cpu",
                                          "--guide", "linear"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert metrics["guide"] == "linear" and math.isfinite(metrics["elbo_nats_per_image"])
    # a per-image guide fitted to the test images, beside the trained linear one
    per_image = CliRunner().invoke(main, ["evaluate", str(out), "--device", "cpu",
                                          "--guide", "delta", "--fit-steps", "2"])
    assert per_image.exit_code == 0, per_image.output


def test_an_unknown_guide_is_named_with_the_registered_ones(tiny_config):
    with pytest.raises(ConfigError, match="unknown guide 'nope'.*encoder, normal, delta"):
        tiny_config(guide="nope")
    with pytest.raises(TypeError, match="subclass of rnp_pyro.guides.Guide with a name"):
        guides.register(nn.Linear)
