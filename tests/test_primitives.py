"""Fixed primitives (the papers' Fig. 4A): leaves that only combine given strokes, and
the conv VAE that stamps them."""

import functools

import pytest
import torch

from rnp_pyro import ConvVAE
from rnp_pyro.errors import ConfigError
from rnp_pyro.primitives import PrimitiveStamp, primitive_images
from rnp_pyro.reference import depth_first_canvas


@pytest.fixture
def small(tiny_config):
    """The tiny config whose 6-pixel leaf patches combine a line and a curve."""
    return functools.partial(tiny_config, patch_size=6, bf16_decoder=False,
                             primitives=("line", "curve"))


def test_primitives_are_strokes_with_their_symmetries():
    line, curve = primitive_images(("line", "curve"), 12)
    for image in (line, curve):
        assert image.min() == 0 and image.max() == 1 and 0.1 < image.mean() < 0.5
    torch.testing.assert_close(line, line.T)  # a diagonal bar
    torch.testing.assert_close(curve, curve.flip(-1))  # a half circle, upright
    assert not torch.allclose(curve, curve.flip(-2))
    with pytest.raises(ValueError, match="unknown primitive 'dot'"):
        primitive_images(("dot",), 12)


@pytest.mark.parametrize("channels", [1, 3])
def test_every_leaf_patch_is_a_non_negative_combination_of_the_primitives(channels, small, rnp):
    cfg = small(channels=channels)
    model = rnp(cfg).double()
    z = torch.randn(4, cfg.model.z_dim, dtype=torch.float64)
    tree = model.decode(z)
    patches = tree.leaves.drawn.flatten(0, 2)  # (leaves * channels, P, P)
    basis = model.patch_maker.images.flatten(1).T  # (P * P, 2)
    solution = torch.linalg.lstsq(basis, patches.flatten(1).T).solution  # (2, n)
    torch.testing.assert_close(basis @ solution, patches.flatten(1).T)
    assert (solution > -1e-9).all() and (solution.abs().sum(0) > 0).any()
    torch.testing.assert_close(tree.canvas, depth_first_canvas(model, z))


def test_the_stamp_draws_each_primitive_where_its_coefficient_is():
    stamp = PrimitiveStamp(("line", "curve"), 6, channels=1)
    maps = torch.zeros(1, 2, 8, 8)
    maps[0, 1, 3, 4] = 2.0  # the curve, twice, at row 3 and column 4
    out = stamp(maps)[0, 0]
    assert out.shape == (16, 16)
    top, left = 2 * 3 - stamp.padding, 2 * 4 - stamp.padding
    torch.testing.assert_close(out[top:top + 6, left:left + 6],
                               2 * primitive_images(("curve",), 6)[0])
    assert out.sum() == pytest.approx(2 * primitive_images(("curve",), 6).sum().item())


def test_the_conv_vae_learns_only_the_coefficients(small):
    cfg = small(model="convvae")
    vae = ConvVAE(cfg.model)
    assert not any(name.endswith("weight") and p.shape[-2:] == (6, 6)
                   for name, p in vae.named_parameters())
    stamp = len(vae.decoder) - 1
    assert isinstance(vae.decoder[stamp], PrimitiveStamp)
    assert not any(key.startswith(f"decoder.{stamp}.") for key in vae.state_dict())  # fixed
    canvas = vae.decode(torch.randn(3, cfg.model.z_dim)).canvas
    assert canvas.shape == (3, 1, 16, 16) and (canvas >= 0).all()


@pytest.mark.parametrize("change, words", [
    (dict(primitives=("line", "dot")), "primitives must be distinct names"),
    (dict(primitives=("line", "line")), "primitives must be distinct names"),
    (dict(model="convvae", patch_size=5), "patch_size must be even"),
])
def test_bad_primitive_settings_are_refused(change, words, small):
    with pytest.raises(ConfigError, match=words):
        small(**change)
