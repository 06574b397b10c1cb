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
