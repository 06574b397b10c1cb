"""Behaviour of the RNP model: shapes, the reference equivalence, Pyro integration."""

import functools
import math

import pytest
import torch
import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample
from pyro.infer import Predictive, Trace_ELBO

from rnp_pyro import model as model_module
from rnp_pyro import program
from rnp_pyro.errors import ConfigError
from rnp_pyro.guides import EncoderGuide
from rnp_pyro.model import part_loss, site_name
from rnp_pyro.reference import depth_first_canvas




@pytest.mark.parametrize("taus", [(3,), (3, 2), (2, 2, 2), (2, 2, 2, 2)])
def test_decode_equals_depth_first_reference(taus, exact_config, rnp):
    cfg = exact_config(taus=taus, z_dim=5, channels=3)
    model = rnp(cfg).double()
    z = torch.randn(4, cfg.model.z_dim, dtype=torch.float64)
    tree = model.decode(z)
    reference = depth_first_canvas(model, z)
    assert tree.canvas.abs().sum() > 0
    torch.testing.assert_close(tree.canvas, reference, rtol=1e-9, atol=1e-9)


def test_small_patches_are_placed_into_full_size_frames(exact_config, rnp):
    cfg = exact_config(taus=(3, 2), channels=3, patch_size=5)
    model = rnp(cfg).double()
    z = torch.randn(4, cfg.model.z_dim, dtype=torch.float64)
    tree = model.decode(z)
    for level in tree.levels:
        assert level.canvases.shape == level.placed.shape == (4, level.size, 3, 12, 12)
    torch.testing.assert_close(tree.canvas, depth_first_canvas(model, z), rtol=1e-9, atol=1e-9)


def test_config_rejects_a_patch_of_one_pixel(exact_config):
    with pytest.raises(ConfigError, match="patch_size"):
        exact_config(patch_size=1)


def test_tree_shapes_and_structure(exact_config, rnp):
    cfg = exact_config(taus=(3, 2), channels=3)
    model = rnp(cfg)
    tree = model.decode(torch.randn(5, cfg.model.z_dim))
    assert tree.canvas.shape == (5, 3, 12, 12)
    assert [lvl.size for lvl in tree.levels] == [1, 3, 6]
    for level in tree.levels:
        n = level.size
        assert level.latents.shape == (5, n, cfg.model.z_dim)
        assert level.actions.shape == (5, n, 6)
        assert level.canvases.shape == (5, n, 3, 12, 12)
        assert level.placed.shape == (5, n, 3, 12, 12)
    assert tree.levels[1].actions.abs().max() <= 1
    # each internal canvas is the sum of its children placed in its frame
    for depth in range(2):
        torch.testing.assert_close(tree.children_placed(depth).sum(-4),
                                   tree.levels[depth].canvases)
    torch.testing.assert_close(tree.leaves.placed[:, 4],
                               model.place(tree.leaves.drawn[:, 4], tree.leaves.actions[:, 4]))


def test_decode_broadcasts_over_leading_dims(exact_config, rnp):
    cfg = exact_config()
    model = rnp(cfg)
    z = torch.randn(2, 3, cfg.model.z_dim)
    tree = model.decode(z)
    assert tree.canvas.shape == (2, 3, 1, 12, 12)
    torch.testing.assert_close(tree.canvas[1], model.decode(z[1]).canvas)


def test_model_trace_sites_and_shapes(exact_config, rnp):
    cfg = exact_config()
    x = torch.rand(4, 1, 12, 12)
    trace = poutine.trace(rnp(cfg)).get_trace(x)
    trace.compute_log_prob()
    assert trace.nodes[cfg.model.top_site]["fn"].event_shape == (cfg.model.z_dim,)
    assert trace.nodes[cfg.model.top_site]["log_prob"].shape == (4,)
    obs = trace.nodes["x"]
    assert obs["is_observed"] and obs["fn"].event_shape == (1, 12, 12)
    assert obs["log_prob"].shape == (4,)
    latent = [n for n, s in trace.nodes.items() if s["type"] == "sample"
              and not s["is_observed"] and not site_is_subsample(s)]
    assert latent == [cfg.model.top_site]


def test_stochastic_levels_a_site_per_level_and_step_each_fed_forward(exact_config, rnp):
    cfg = exact_config(stochastic_levels=True, taus=(3, 2))
    x = torch.rand(4, 1, 12, 12)
    model = rnp(cfg)
    trace = poutine.trace(model).get_trace(x)
    sites = ("z2", "z1_1", "z1_2", "z1_3", "z0_1", "z0_2")
    assert cfg.model.latent_sites == sites and site_name(0, 2) == "z0_2"
    assert all(name in trace.nodes for name in sites)
    assert trace.nodes["z1_2"]["fn"].event_shape == (1, cfg.model.z_dim)  # the root's child 2
    assert trace.nodes["z0_1"]["fn"].event_shape == (3, cfg.model.z_dim)  # each part's child 1
    assert trace.nodes["z0_1"]["value"].shape == (4, 3, cfg.model.z_dim)
    # conditioning every site on its mean gives the deterministic tree
    z = trace.nodes["z2"]["value"]
    below = model.grow(z, drawn=False)
    parts, subparts = below[0].latents, below[1].latents.unflatten(0, (4, 3))
    means = {"z2": z, **{f"z1_{t + 1}": parts[:, t:t + 1] for t in range(3)},
             **{f"z0_{t + 1}": subparts[:, :, t] for t in range(2)}}
    conditioned = poutine.trace(poutine.condition(model, means)).get_trace(x)
    torch.testing.assert_close(conditioned.nodes["_RETURN"]["value"],
                               model.decode(z, stochastic=False).canvas)
    # a sampled child is what its program's next step reads: moving it moves the next mean
    moved = poutine.trace(poutine.condition(model, {**means, "z1_1": means["z1_1"] + 1})
                          ).get_trace(x)
    torch.testing.assert_close(moved.nodes["z1_1"]["fn"].mean, means["z1_1"])
    assert not torch.allclose(moved.nodes["z1_2"]["fn"].mean, means["z1_2"])


@pytest.mark.parametrize("likelihood", ["normal", "laplace", "continuous_bernoulli", "bernoulli"])
def test_vectorized_particles_elbo(likelihood, exact_config, rnp):
    cfg = exact_config(likelihood=likelihood, obs_scale=None if likelihood == "laplace" else 0.2,
                       part_loss_lambda=0.5 if likelihood == "normal" else 0.0)
    model = rnp(cfg)
    guide = EncoderGuide(model, cfg.guide)
    x = torch.rand(3, 1, 12, 12)
    elbo = Trace_ELBO(num_particles=5, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(model, guide, x)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.hyper_state.parameters())


def test_predictive_parallel(exact_config, rnp):
    cfg = exact_config()
    model = rnp(cfg)
    guide = EncoderGuide(model, cfg.guide)
    x = torch.rand(3, 1, 12, 12)
    predictive = Predictive(model, guide=guide, num_samples=4, parallel=True,
                            return_sites=["x", cfg.model.top_site])
    samples = predictive(x)
    assert samples[cfg.model.top_site].shape == (4, 3, cfg.model.z_dim)
    assert samples["x"].shape == (4, 3, 1, 12, 12)


def test_normal_elbo_matches_papers_loss(exact_config, rnp):
    """-ELBO with obs scale sqrt(beta/2) equals (SSE + beta * KL) / beta + const."""
    cfg = exact_config(obs_scale=math.sqrt(0.05))
    model = rnp(cfg)
    x = torch.rand(2, 1, 12, 12)
    z = torch.randn(2, cfg.model.z_dim)
    trace = poutine.trace(poutine.condition(model, {cfg.model.top_site: z})).get_trace(x)
    trace.compute_log_prob()
    canvas = model.decode(z).canvas
    sse = (canvas - x).pow(2).sum((-1, -2, -3))
    pixels = x[0].numel()
    const = pixels * 0.5 * math.log(2 * math.pi * 0.05)
    torch.testing.assert_close(-trace.nodes["x"]["log_prob"], sse / 0.1 + const)


@pytest.mark.parametrize("taus, patch_size", [((2, 2), None), ((2,), 5)])
def test_part_loss_is_positive_per_image_and_has_no_target_gradient(taus, patch_size, exact_config, rnp):
    cfg = exact_config(taus=taus, patch_size=patch_size)
    model = rnp(cfg)
    z = torch.randn(2, cfg.model.z_dim)
    tree = model.decode(z)
    x = torch.rand(2, 1, 12, 12, requires_grad=True)
    loss = part_loss(tree, x, cfg.model.scale_offset, cfg.model.rotation_range)
    assert loss.shape == (2,) and (loss > 0).all()
    loss.sum().backward()
    assert x.grad is None


def test_sample_from_prior(exact_config, rnp):
    cfg = exact_config()
    tree = rnp(cfg).sample(7)
    assert tree.canvas.shape == (7, 1, 12, 12)
    assert torch.isfinite(tree.canvas).all()


def test_unmaterialized_decoder_is_the_same_function(exact_config, rnp):
    cfg = exact_config()
    model = rnp(cfg.replace(materialize_weights=True)).double()
    lazy = rnp(cfg.replace(materialize_weights=False)).double()
    lazy.load_state_dict(model.state_dict())
    z = torch.randn(3, cfg.model.z_dim, dtype=torch.float64)
    torch.testing.assert_close(lazy.decode(z).canvas, model.decode(z).canvas)
    torch.testing.assert_close(lazy.decode(z).canvas, depth_first_canvas(lazy, z))


def test_bf16_decoder_stays_close_to_float32(exact_config, rnp):
    cfg = exact_config()
    model = rnp(cfg)
    fast = rnp(cfg.replace(bf16_decoder=True))
    fast.load_state_dict(model.state_dict())
    z = torch.randn(8, cfg.model.z_dim)
    exact, approx = model.decode(z).canvas, fast.decode(z).canvas
    assert not torch.equal(exact, approx)
    torch.testing.assert_close(approx, exact, rtol=0.02, atol=0.02 * exact.abs().max().item())


@pytest.mark.parametrize("shared", [True, False])
def test_a_part_decoded_alone_draws_what_it_draws_in_the_tree(shared, exact_config, rnp):
    cfg = exact_config(taus=(2, 2, 2), shared_hypernetworks=shared)
    model = rnp(cfg).double()
    tree = model.decode(torch.randn(3, cfg.model.z_dim, dtype=torch.float64))
    parts = tree.levels[1]
    alone = model.decode(parts.latents, depth=1)  # (3, 2) subtrees
    assert alone.taus == cfg.model.taus[1:] and len(alone.levels) == len(tree.levels) - 1
    torch.testing.assert_close(alone.canvas, parts.canvases)
    torch.testing.assert_close(alone.leaves.drawn.flatten(1, 2), tree.leaves.drawn)
    with pytest.raises(ValueError, match="depth must be 0"):
        model.decode(tree.leaves.latents, depth=3)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("depth", [1, 2])
def test_a_truncated_model_draws_what_the_subtree_draws(shared, depth, exact_config, rnp):
    cfg = exact_config(taus=(2, 3, 2), shared_hypernetworks=shared)
    model = rnp(cfg).double()
    truncated = rnp(cfg.replace(taus=cfg.model.taus[depth:])).double()
    truncated.load_state_dict(model.subtree_state(depth))
    z = torch.randn(4, cfg.model.z_dim, dtype=torch.float64)
    torch.testing.assert_close(truncated.decode(z).canvas, model.decode(z, depth=depth).canvas)
    torch.testing.assert_close(truncated.decode(z).canvas, depth_first_canvas(truncated, z))


def test_compiled_program_steps_draw_the_same_tree_and_gradients(monkeypatch, exact_config, rnp):
    # dynamo's capture (dynamic shapes, autograd) of the real program steps; the
    # aot_eager backend leaves out inductor's code generation, which takes a minute here
    monkeypatch.setattr(model_module, "_compiled", functools.cache(
        lambda: torch.compile(program.Program.run, dynamic=True, backend="aot_eager")))
    cfg = exact_config()
    plain, compiled = rnp(cfg), rnp(cfg.replace(compile_programs=True))
    compiled.load_state_dict(plain.state_dict())
    for batch in (5, 3):  # a second shape must not change the result either
        z = torch.randn(batch, cfg.model.z_dim, requires_grad=True)
        mine, theirs = compiled.decode(z).canvas, plain.decode(z).canvas
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(torch.autograd.grad(mine.square().sum(), z)[0],
                                   torch.autograd.grad(theirs.square().sum(), z)[0],
                                   atol=1e-4, rtol=1e-3)


def test_per_level_hypernetworks_option(exact_config, rnp):
    cfg = exact_config(shared_hypernetworks=False)
    model = rnp(cfg)
    assert len(model.hyper_state) == len(cfg.model.taus)
    z = torch.randn(3, cfg.model.z_dim, dtype=torch.float64)
    torch.testing.assert_close(model.double().decode(z).canvas, depth_first_canvas(model, z))


def test_stochastic_levels_train_with_the_encoder_guide(exact_config, rnp):
    cfg = exact_config(stochastic_levels=True)
    model = rnp(cfg)
    guide = EncoderGuide(model, cfg.guide)
    x = torch.rand(4, 1, 12, 12)
    guide_trace = poutine.trace(guide).get_trace(x)
    assert set(cfg.model.latent_sites) <= set(guide_trace.nodes)
    elbo = Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(model, guide, x)
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in guide.parameters())


def test_model_rejects_images_of_another_shape(exact_config, rnp):
    cfg = exact_config()
    with pytest.raises(ValueError, match=r"images of shape \(\*B, 1, 12, 12\)"):
        rnp(cfg)(torch.rand(2, 1, 10, 10))
