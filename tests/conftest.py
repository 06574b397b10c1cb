"""What many test files share: a tiny configuration whose training steps take
milliseconds, and a clean Pyro state for every test."""

import pyro
import pytest

from rnp_pyro import presets

TINY_SIZE = 16  # side of the images tiny_config is built for
_TINY = dict(image_size=TINY_SIZE, z_dim=6, taus=(3, 2), hyper_width=16, program_encoder=(12, 8),
             patch_hidden=12, encoder_channels=8, encoder_convs=1, encoder_blocks=1,
             encoder_dense=(16,), batch_size=32)


def tiny(**overrides):
    """The strokes preset at 16 px with narrow networks, with ``overrides`` (flat names)."""
    return presets.get("strokes", **{**_TINY, **overrides})


@pytest.fixture(scope="session")
def tiny_config():
    """:func:`tiny` as a fixture: ``tiny_config(taus=(2,), ...)`` is a RunConfig."""
    return tiny


@pytest.fixture(autouse=True)
def clean_pyro_state():
    """Each test starts with an empty param store and Pyro's settings as they were."""
    settings = dict(pyro.settings.get())
    pyro.clear_param_store()
    yield
    pyro.settings.set(**settings)
