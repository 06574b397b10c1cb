"""The model in Pyro's own idioms, after ``import rnp_pyro``: the classic SVI loop with
the global param store, Pyro's autoguides, and nothing changed by importing."""

import importlib
import math
import pkgutil

import pyro
import pyro.optim
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

import rnp_pyro
from rnp_pyro.guides import EncoderGuide
from rnp_pyro.model import RNP


def test_importing_every_module_leaves_pyro_settings_as_they_were():
    before = dict(pyro.settings.get())
    for info in pkgutil.walk_packages(rnp_pyro.__path__, "rnp_pyro."):
        importlib.import_module(info.name)
    assert pyro.settings.get() == before
    assert not pyro.settings.get("module_local_params")


def tiny_model(tiny_config):
    config = tiny_config(image_size=12, taus=(2, 2), bf16_decoder=False)
    torch.manual_seed(0)
    return RNP(config.model, bf16_decoder=False), config


def images(n=16, size=12):
    x = torch.zeros(n, 1, size, size)
    x[:, :, 3:9, 4:8] = 1.0
    return x


def test_the_classic_svi_loop_trains_the_model_through_the_param_store(tiny_config):
    model, config = tiny_model(tiny_config)
    guide = EncoderGuide(model, config.guide)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 3e-3}), loss=Trace_ELBO())
    x = images()
    pyro.set_rng_seed(0)
    losses = [svi.step(x) for _ in range(40)]
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])
    stored = dict(pyro.get_param_store().named_parameters())
    assert stored, "the model's and guide's parameters should be in Pyro's param store"
    # the store holds the very tensors the modules train
    assert any(p is guide.encoder.loc.weight for p in stored.values())
    assert any(p is model.hyper_state[0].out.weight for p in stored.values())


def test_pyros_autonormal_guides_the_model_under_svi(tiny_config):
    model, _ = tiny_model(tiny_config)
    guide = AutoNormal(model)
    # the classic loop steps the networks as well as the guide (at 0.05 they diverge)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.005}), loss=Trace_ELBO())
    x = images(8)
    pyro.set_rng_seed(0)
    losses = [svi.step(x) for _ in range(40)]
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5])
    assert "AutoNormal.locs.z2" in pyro.get_param_store().keys()


def test_two_models_in_one_process_keep_their_own_learned_scales(tiny_config):
    # a learned scale is a PyroParam: named alike in both models, it must not be shared
    # through Pyro's global store
    config = tiny_config(obs_scale=None)
    first, second = RNP(config.model), RNP(config.model)
    with torch.no_grad():
        second.likelihood.scale_unconstrained.fill_(math.log(0.5))
    x = torch.rand(2, 1, 16, 16)
    for model, scale in ((first, 0.2), (second, 0.5), (first, 0.2)):
        observed = pyro.poutine.trace(model).get_trace(x).nodes["x"]["fn"].base_dist.scale
        assert observed.unique().tolist() == pytest.approx([scale])


def test_nn_module_apply_works_on_every_module_of_the_package(tiny_config):
    model, config = tiny_model(tiny_config)
    guide = EncoderGuide(model, config.guide)
    for module in (model, guide):
        count = []
        module.apply(lambda m: count.append(m))
        assert len(count) == len(list(module.modules()))


@pytest.mark.parametrize("kind", ["rnp", "convvae"])
def test_model_of_none_draws_images_around_the_decoded_canvas(tiny_config, kind):
    # x=None is Pyro's way to make a model generate its observations: x at the site is
    # then the canvas of the drawn z plus the likelihood's noise, N(canvas, obs_scale)
    config = tiny_config(model=kind, bf16_decoder=False)
    model, _ = rnp_pyro.run.build(config)
    trace = pyro.poutine.trace(model).get_trace(None, batch_size=300)
    site = trace.nodes["x"]
    assert not site["is_observed"] and site["value"].shape == (300, 1, 16, 16)
    canvas = model.decode(trace.nodes[config.model.top_site]["value"]).canvas
    noise = site["value"] - canvas
    assert abs(noise.mean().item()) < 0.01
    assert noise.std().item() == pytest.approx(config.model.obs_scale, rel=0.02)
    one = pyro.poutine.trace(model).get_trace(None).nodes["x"]["value"]
    assert one.shape == (1, 1, 16, 16)  # one image by default


def test_predictive_gives_prior_and_posterior_predictive_draws_as_pyro_users_expect(tiny_config):
    model, _ = tiny_model(tiny_config)
    guide = EncoderGuide(model, tiny_config().guide).eval()
    prior = pyro.infer.Predictive(model, num_samples=5)(None, batch_size=3)
    assert prior["z2"].shape == (5, 3, 6) and prior["x"].shape == (5, 3, 1, 12, 12)
    x = images(3)
    posterior = pyro.infer.Predictive(guide, num_samples=4)(x)
    replicas = pyro.infer.Predictive(model, posterior_samples=posterior)(None, batch_size=3)
    # each replica is drawn around the canvas of its own posterior draw
    canvas = model.decode(posterior["z2"]).canvas
    noise = replicas["x"] - canvas
    assert noise.shape == (4, 3, 1, 12, 12)
    assert noise.std().item() == pytest.approx(model.config.obs_scale, rel=0.1)


def test_an_observed_model_call_is_unchanged_by_generation(tiny_config):
    model, _ = tiny_model(tiny_config)
    x = images(4)
    trace = pyro.poutine.trace(model).get_trace(x)
    assert trace.nodes["x"]["is_observed"] and trace.nodes["x"]["value"] is x
    z = trace.nodes["z2"]["value"]
    expected = torch.distributions.Normal(model.decode(z).canvas, model.config.obs_scale)
    torch.testing.assert_close(trace.nodes["x"]["fn"].log_prob(x),
                               expected.log_prob(x).sum((-3, -2, -1)))
    with pytest.raises(ValueError, match="batch_size=5 but x holds 4 images"):
        model(x, batch_size=5)
