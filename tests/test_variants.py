"""The papers' variants of one model: what a program step reads, one hypernetwork or
two, the depth of the program encoder, parts decoded at every level. Each fast path
must draw what the literal depth-first algorithm draws."""

import pytest
import torch
from pyro.infer import Trace_ELBO

from rnp_pyro.errors import ConfigError
from rnp_pyro.guides import EncoderGuide
from rnp_pyro.model import RNP, part_loss
from rnp_pyro.reference import depth_first_canvas
from rnp_pyro import presets

INPUTS = {"latent": dict(program_input="latent"),
          "patch": dict(program_input="patch"),
          "child_output": dict(program_input="patch", parent_input="child_output")}




@pytest.mark.parametrize("taus", [(3, 2), (2, 2, 2)])
@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("hypernetworks, encoder", [(2, (7, 4)), (1, (6, 6, 6)), (2, (5,))])
def test_the_fast_path_draws_what_the_depth_first_reference_draws(taus, inputs, hypernetworks,
                                                                   encoder, exact_config):
    cfg = exact_config(z_dim=5, taus=taus, channels=3, patch_size=5, hypernetworks=hypernetworks,
                program_encoder=encoder, **INPUTS[inputs])
    model = RNP(cfg.model).double()
    z = torch.randn(4, cfg.model.z_dim, dtype=torch.float64, requires_grad=True)
    tree = model.decode(z)
    reference = depth_first_canvas(model, z)
    assert tree.canvas.abs().sum() > 0
    torch.testing.assert_close(tree.canvas, reference, rtol=1e-9, atol=1e-9)
    mine, = torch.autograd.grad(tree.canvas.square().sum(), z)
    theirs, = torch.autograd.grad(reference.square().sum(), z)
    torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("inputs", INPUTS)
def test_every_level_is_in_depth_first_order_of_its_parents(inputs, exact_config):
    cfg = exact_config(z_dim=5, taus=(3, 2, 2), decode_parts=True, **INPUTS[inputs])
    model = RNP(cfg.model).double()
    tree = model.decode(torch.randn(2, cfg.model.z_dim, dtype=torch.float64))
    assert [level.size for level in tree.levels] == [1, 3, 6, 12]
    for depth in range(3):
        # a node's canvas is the sum of its own children, placed: node j's are j*tau ...
        torch.testing.assert_close(tree.children_placed(depth).sum(-4),
                                   tree.levels[depth].canvases)
        below = tree.levels[depth + 1]
        assert below.decoded.shape == (2, below.size, 1, 12, 12)
    # a part decoded by its parent's program is a patch of its latent, wherever it is
    part = tree.levels[1].latents[:, 2]
    again = model.patches(model.program(tree.levels[0].latents[:, 0], 0),
                          part.unsqueeze(1))
    torch.testing.assert_close(again[:, 0], tree.levels[1].decoded[:, 2])


def test_a_stochastic_tree_of_patch_programs_trains(exact_config):
    cfg = exact_config(z_dim=5, program_input="patch", stochastic_levels=True)
    model = RNP(cfg.model)
    guide = EncoderGuide(model, cfg.guide)
    loss = Trace_ELBO(num_particles=2, vectorize_particles=True,
                      max_plate_nesting=1).differentiable_loss(model, guide, torch.rand(3, 1, 12, 12))
    loss.backward()
    assert torch.isfinite(loss)


def test_the_part_loss_as_pnas_writes_it_compares_each_parts_own_patch(exact_config):
    cfg = exact_config(z_dim=5, taus=(3, 2), decode_parts=True, part_loss="patch",
                part_loss_weight=0.5)
    model = RNP(cfg.model).double()
    x = torch.rand(4, 1, 12, 12, dtype=torch.float64)
    tree = model.decode(torch.randn(4, cfg.model.z_dim, dtype=torch.float64))
    own = part_loss(tree, x, own_patches=True, scale_offset=cfg.model.scale_offset)
    composite = part_loss(tree, x, own_patches=False, scale_offset=cfg.model.scale_offset)
    parts = tree.levels[1]
    crops = model.crop(x.unsqueeze(1).expand(-1, 3, -1, -1, -1), parts.actions)
    by_hand = sum((parts.decoded[:, t] - crops[:, t]).square().sum((-1, -2, -3))
                  for t in range(3)) / 3
    torch.testing.assert_close(own, by_hand)
    assert own.shape == (4,) and not torch.allclose(own, composite)


def test_the_workshop_preset_is_the_workshop_model():
    cfg = presets.get("workshop")
    model = RNP(cfg.model)
    assert cfg.model.hypernetworks == 1 and not hasattr(model, "hyper_state")
    assert cfg.model.program_input == "patch" and cfg.model.parent_input == "child_output"
    assert len(cfg.model.program_encoder) == 3 and cfg.model.hyper_state_layers + 1 == 6
    heads = {name.split("_")[0].split(".")[-1] for name in model.hyper[0].layout}
    assert len(model.hyper) == 1 and {"enc", "rnn", "h0", "dec", "first", "start"} <= heads
    assert cfg.train.lr == 4e-5 and cfg.model.z_dim == 32


@pytest.mark.parametrize("bad, message", [
    (dict(program_encoder=(8, 8, 8, 8)), "one to three"),
    (dict(hypernetworks=3), "hypernetworks must be 1"),
    (dict(program_input="pixels"), "program_input must be one of"),
    (dict(parent_input="child_output"), "set program_input='patch'"),
    (dict(program_input="patch", parent_input="child_output", stochastic_levels=True),
     "depth-first"),
    (dict(part_loss="patch", part_loss_weight=0.1), "set decode_parts=True"),
    (dict(part_loss="own"), "part_loss must be one of"),
])
def test_variants_that_cannot_be_are_refused_with_the_fix(bad, message, exact_config):
    with pytest.raises(ConfigError, match=message):
        exact_config(z_dim=5, **bad)
