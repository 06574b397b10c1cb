"""Actions as affine maps: what placing a child in its parent's frame does, and back."""

import math

import pytest
import torch

from rnp_pyro import spatial


def test_the_scale_offset_makes_children_smaller_than_their_parent():
    # a = 0 means scale 1 + offset on both axes, no rotation, shear or shift
    theta = spatial.affine_matrices(torch.zeros(6), scale_offset=2.0, rotation_range=math.pi)
    torch.testing.assert_close(theta, torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]]))
    square = torch.ones(1, 1, 31, 31)
    placed = spatial.place(square, torch.zeros(1, 6), scale_offset=2.0, rotation_range=math.pi)
    # a full canvas lands a third as wide, in the middle of the parent's frame
    columns = placed[0, 0, 15].gt(0.5).nonzero().flatten()
    assert 9 <= len(columns) <= 12 and columns.float().mean() == pytest.approx(15, abs=0.5)


def test_rotation_turns_by_rotation_range_times_the_action():
    action = torch.tensor([0.0, 0.0, 0.5, 0.0, 0.0, 0.0])
    theta = spatial.affine_matrices(action, scale_offset=0.0, rotation_range=math.pi)
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])  # R(pi/2), unit scale
    torch.testing.assert_close(theta, quarter, atol=1e-6, rtol=0)


def test_invert_undoes_an_affine_map():
    theta = spatial.affine_matrices(torch.rand(5, 6) * 2 - 1, 2.0, math.pi)
    inverse = spatial.invert(theta)
    points = torch.randn(5, 2, 1)
    there = theta[:, :, :2] @ points + theta[:, :, 2:]
    back = inverse[:, :, :2] @ there + inverse[:, :, 2:]
    torch.testing.assert_close(back, points, atol=1e-5, rtol=1e-5)


def test_crop_recovers_what_place_put_down():
    child = torch.zeros(3, 1, 32, 32)
    child[:, :, 8:24, 8:24] = 1.0  # a blob away from the frame's edges
    action = torch.rand(3, 6) * 0.6 - 0.3
    recovered = spatial.crop(spatial.place(child, action, 0.5, math.pi), action, 0.5, math.pi)
    # resampled twice, and smaller in between: the blob's mass comes back, blurred
    assert (recovered - child).abs().mean() < 0.1
    torch.testing.assert_close(recovered.sum((-1, -2)), child.sum((-1, -2)), rtol=0.1, atol=0)


def test_a_smaller_crop_samples_the_same_region_more_coarsely():
    # bilinear sampling is exact on a linear ramp: the 12-px crop is the 28-px crop's
    # values at its own grid points
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 28), torch.linspace(-1, 1, 28), indexing="ij")
    ramp = (0.5 + 0.2 * xs - 0.1 * ys).expand(3, 1, 28, 28)
    action = torch.rand(3, 6) * 0.4 - 0.2  # zoomed in (offset 1.6), so inside the frame
    full = spatial.crop(ramp, action, 1.6, math.pi)
    small = spatial.crop(ramp, action, 1.6, math.pi, size=12)
    assert small.shape == (3, 1, 12, 12)
    resampled = torch.nn.functional.interpolate(full, size=12, mode="bilinear", align_corners=True)
    torch.testing.assert_close(small, resampled, rtol=0, atol=1e-5)


def test_placing_under_the_identity_map_is_bilinear_resizing():
    patch = torch.rand(2, 3, 5, 5)
    identity = torch.zeros(2, 6)  # scale a + 1 + offset = 1 with offset 0, no rotation or shift
    placed = spatial.place(patch, identity, scale_offset=0.0, rotation_range=math.pi, size=12)
    resized = torch.nn.functional.interpolate(patch, size=12, mode="bilinear", align_corners=True)
    torch.testing.assert_close(placed, resized)


def test_warp_broadcasts_over_leading_dimensions():
    images = torch.rand(2, 4, 1, 9, 9)
    actions = torch.rand(2, 4, 6) * 2 - 1
    placed = spatial.place(images, actions, 1.5, math.pi, size=13)
    assert placed.shape == (2, 4, 1, 13, 13)
    one = spatial.place(images[1, 2], actions[1, 2], 1.5, math.pi, size=13)
    torch.testing.assert_close(placed[1, 2], one)


def test_affine_grid_equals_torch_and_its_gradient():
    theta = torch.randn(7, 2, 3, dtype=torch.float64, requires_grad=True)
    ours = spatial.affine_grid(theta, 5, 9)
    torchs = torch.nn.functional.affine_grid(theta, [7, 1, 5, 9], align_corners=True)
    torch.testing.assert_close(ours, torchs)
    torch.testing.assert_close(torch.autograd.grad(ours.sin().sum(), theta)[0],
                               torch.autograd.grad(torchs.sin().sum(), theta)[0])


def test_actions_of_the_wrong_size_are_refused():
    with pytest.raises(ValueError, match="last dimension of 6"):
        spatial.affine_matrices(torch.zeros(3, 5), 2.0, math.pi)


def test_the_model_places_every_level_of_its_tree_as_the_tree_does(tiny_config):
    # the documented call: geometry (scale offset 1.6 here, not 2) and frame size from the
    # model, leaves from their small patches
    from rnp_pyro.model import RNP

    config = tiny_config(scale_offset=1.6, patch_size=6, bf16_decoder=False).model
    torch.manual_seed(0)
    model = RNP(config, bf16_decoder=False)
    tree = model.decode(torch.randn(3, config.z_dim))
    for level in tree.levels[1:]:
        torch.testing.assert_close(model.place(level.drawn, level.actions), level.placed)
    with pytest.raises(TypeError):
        spatial.place(tree.leaves.drawn, tree.leaves.actions)  # no geometry: no guess
