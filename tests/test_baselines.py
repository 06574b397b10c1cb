import pytest
import pyro
import torch

from rnp_pyro import presets
from rnp_pyro.baselines import ConvVAE
from rnp_pyro.errors import ConfigError


def fashion(**overrides):
    """The model settings of the fashion preset, as a conv VAE."""
    return presets.get("fashion", model="convvae", **overrides).model


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("target", [200_000, 1_000_000, 3_900_000])
def test_width_matches_parameter_target(target):
    model = ConvVAE(fashion(), target_params=target)
    assert target / 1.5 < count(model) < target * 1.5
    assert abs(count(model) - target) < 0.1 * target


def test_larger_target_gives_wider_decoder():
    cfg = fashion()
    widths = [ConvVAE(cfg, target_params=t).width for t in (1e5, 1e6, 4e6)]
    assert widths == sorted(widths) and len(set(widths)) == 3


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 28), (1, 32), (3, 32)])
def test_decode_shapes_with_leading_dims(channels, size):
    cfg = fashion(channels=channels, image_size=size)
    model = ConvVAE(cfg)
    z = torch.randn(2, 3, cfg.z_dim)
    tree = model.decode(z)
    assert len(tree.levels) == 1 and tree.taus == ()
    root = tree.levels[0]
    assert root.latents.shape == (2, 3, 1, cfg.z_dim)
    assert torch.equal(root.latents[..., 0, :], z)
    assert root.actions.shape == (2, 3, 1, 6) and not root.actions.any()
    assert root.canvases.shape == (2, 3, 1, channels, size, size)
    assert torch.equal(root.placed, root.canvases)
    assert tree.canvas.shape == (2, 3, channels, size, size)
    assert ((tree.canvas > 0) & (tree.canvas < 1)).all()
    # leading dims only batch: decoding the flattened latents gives the same images
    flat = model.decode(z.reshape(6, -1)).canvas
    torch.testing.assert_close(flat.reshape(tree.canvas.shape), tree.canvas)


def test_decode_is_deterministic_in_eval_mode():
    cfg = fashion()
    model = ConvVAE(cfg).eval()
    z = torch.randn(4, cfg.z_dim)
    assert torch.equal(model.decode(z).canvas, model.decode(z).canvas)


def test_sample_draws_from_the_prior():
    model = ConvVAE(fashion())
    tree = model.sample(5)
    assert tree.canvas.shape == (5, 1, 28, 28)
    assert not torch.equal(tree.canvas[0], tree.canvas[1])


def test_model_trace_has_the_top_site_and_the_observation():
    cfg = fashion(kl_weight=0.25)
    model = ConvVAE(cfg)
    x = torch.rand(7, 1, 28, 28)
    trace = pyro.poutine.trace(model).get_trace(x)
    trace.compute_log_prob()
    top = trace.nodes[cfg.top_site]
    assert top["value"].shape == (7, cfg.z_dim)
    assert top["log_prob"].shape == (7,)
    assert top["scale"] == 0.25
    assert trace.nodes["x"]["is_observed"] and trace.nodes["x"]["log_prob"].shape == (7,)


def test_model_accepts_latents_with_extra_leading_dims():
    cfg = fashion()
    model = ConvVAE(cfg)
    x = torch.rand(4, 1, 28, 28)
    z = torch.randn(3, 4, cfg.z_dim)  # e.g. three vectorized particles
    with pyro.plate("particles", 3, dim=-2):
        trace = pyro.poutine.trace(pyro.poutine.condition(model, {cfg.top_site: z})).get_trace(x)
    assert trace.nodes["x"]["fn"].batch_shape == (3, 4)


def test_bad_input_is_refused_clearly():
    with pytest.raises(ConfigError, match="divisible by 4"):
        ConvVAE(fashion(image_size=30))
    with pytest.raises(ConfigError, match="stochastic_levels"):
        ConvVAE(fashion(stochastic_levels=True))
    with pytest.raises(ValueError, match="shape"):
        ConvVAE(fashion())(torch.rand(2, 3, 28, 28))
