"""What the test files share: small configurations whose training steps take
milliseconds, the model a config builds, and a clean, seeded Pyro state for every
test."""

import pyro
import pytest

from rnp_pyro import data, presets
from rnp_pyro.model import RNP

TINY_SIZE = 16  # side of the images tiny_config is built for
_TINY = dict(image_size=TINY_SIZE, z_dim=6, taus=(3, 2), hyper_width=16, program_encoder=(12, 8),
             patch_hidden=12, encoder_channels=8, encoder_convs=1, encoder_blocks=1,
             encoder_dense=(16,), batch_size=32)
# the fashion preset's model at 28 px with a light encoder, so that training in tests is quick
_FASHION = dict(dataset="fashion", image_size=28, z_dim=32, taus=(4, 4), scale_offset=1.6,
                patch_size=10, materialize_weights=True, hyper_width=64,
                program_encoder=(64, 32), patch_hidden=64, encoder_channels=8, encoder_convs=4,
                encoder_blocks=1, encoder_dense=(32,))
# a small tree on the fashion settings at 12 px, quick enough for NUTS and replicas
_SMALL = dict(dataset="fashion", scale_offset=1.6, materialize_weights=True, encoder_channels=8,
              encoder_blocks=1, encoder_dense=(32,), z_dim=4, taus=(2, 2), hyper_width=16,
              hyper_state_layers=2, hyper_policy_layers=1, program_encoder=(16, 8),
              patch_hidden=16, image_size=12, patch_size=4, encoder_convs=2)


def tiny(**overrides):
    """The strokes preset at 16 px with narrow networks, with ``overrides`` (flat names)."""
    return presets.get("strokes", **{**_TINY, **overrides})


@pytest.fixture(scope="session")
def tiny_config():
    """:func:`tiny` as a fixture: ``tiny_config(taus=(2,), ...)`` is a RunConfig."""
    return tiny


@pytest.fixture(scope="session")
def fashion_config():
    """``fashion_config(**overrides)``: the fashion preset's model at 28 px, light encoder."""
    return lambda **overrides: tiny(**{**_FASHION, **overrides})


@pytest.fixture(scope="session")
def small_config():
    """``small_config(**overrides)``: a small tree on the fashion settings at 12 px."""
    return lambda **overrides: tiny(**{**_SMALL, **overrides})


@pytest.fixture(scope="session")
def exact_config():
    """``exact_config(**overrides)``: the tiny config at 12 px, decoding in float32, for
    comparisons with the literal reference."""
    return lambda **overrides: tiny(**{"image_size": 12, "bf16_decoder": False, **overrides})


def _rnp(cfg):
    speed = cfg.speed
    return RNP(cfg.model, materialize_weights=speed.materialize_weights,
               bf16_decoder=speed.bf16_decoder, compile_programs=speed.compile_programs)


@pytest.fixture(scope="session")
def rnp():
    """``rnp(cfg)``: the RNP of a run config, with its speed switches, as ``fit`` builds it."""
    return _rnp


@pytest.fixture
def few_images(monkeypatch):
    """Every dataset cut to 64 images, so a run of the strokes preset takes seconds."""
    load_images = data.load_images

    def limited(name, **options):
        return load_images(name, **{**options, "limit": 64})

    monkeypatch.setattr(data, "load_images", limited)


@pytest.fixture(autouse=True)
def clean_pyro_state():
    """Each test starts seeded (0), with an empty param store and Pyro's settings as
    they were."""
    settings = dict(pyro.settings.get())
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.settings.set(**settings)
