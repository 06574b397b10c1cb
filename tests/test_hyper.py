"""Hypernetworks: a latent in, named tensors out, at the scale a layer needs."""

import math

import pytest
import torch

from rnp_pyro.hyper import HyperNetwork

LAYOUT = {"w1": (8, 5), "b1": (8,), "w2": (30, 12)}


def hypernetwork(**options):
    torch.manual_seed(0)
    return HyperNetwork(z_dim=5, width=16, layers=2, layout=LAYOUT, **options).double()


def test_each_named_tensor_has_its_shape_per_node():
    z = torch.randn(7, 5, dtype=torch.float64)
    hidden, tensors = hypernetwork()(z)
    assert hidden.shape == (7, 16)
    assert {name: tuple(t.shape) for name, t in tensors.items()} == {
        name: (7, *shape) for name, shape in LAYOUT.items()}


def test_a_prefix_of_the_layout_is_what_the_whole_layout_starts_with():
    net, z = hypernetwork(), torch.randn(4, 5, dtype=torch.float64)
    whole = net(z).tensors
    prefix = net(z, ["w1", "b1"]).tensors
    assert list(prefix) == ["w1", "b1"]
    for name in prefix:
        torch.testing.assert_close(prefix[name], whole[name])


def test_only_a_prefix_of_the_layout_can_be_asked_for():
    with pytest.raises(ValueError, match="prefix of its layout"):
        hypernetwork()(torch.randn(2, 5, dtype=torch.float64), ["w2"])


def test_applying_a_matrix_without_generating_it_is_the_same_product():
    net, z = hypernetwork(), torch.randn(4, 5, dtype=torch.float64)
    generated = net(z)
    x = torch.randn(4, 3, 12, dtype=torch.float64)
    expected = x @ generated.tensors["w2"].transpose(1, 2)
    torch.testing.assert_close(net.apply_linear("w2", generated.hidden, x), expected)


def test_generated_weights_start_in_proportion_to_one_over_the_root_of_their_fan_in():
    # the gains divide the output's init std back out and scale each weight by
    # 1/sqrt(its fan-in): whatever hyper_output_std is, a (30 x 12) weight's entries are
    # sqrt(5/12) as large as a (8 x 5) one's
    z = torch.randn(4000, 5, generator=torch.Generator().manual_seed(1))
    scales = []
    for output_std in (0.05, 0.25, 1.0):
        torch.manual_seed(2)
        tensors = HyperNetwork(5, 64, 2, LAYOUT, output_std=output_std)(z).tensors
        w1, w2 = tensors["w1"].std().item(), tensors["w2"].std().item()
        assert w2 / w1 == pytest.approx(math.sqrt(5 / 12), rel=0.1)
        scales.append(w1)
    assert max(scales) / min(scales) == pytest.approx(1.0, abs=0.05)


def test_nn_module_apply_reaches_every_layer():
    seen = []
    hypernetwork().apply(lambda module: seen.append(type(module).__name__))
    assert seen.count("Linear") == 3 and seen[-1] == "HyperNetwork"
