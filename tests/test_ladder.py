import pytest
import pyro
import torch
from images import rectangles
from pyro import poutine

from rnp_pyro import spatial
from rnp_pyro.errors import ConfigError
from rnp_pyro.guides import posterior_means, reconstruct
from rnp_pyro.guides.ladder import LadderGuide
from rnp_pyro.model import site_name


def latent_sites(trace):
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and name != "data"}


def level_names(cfg):
    """z^K, then a site per lower level and program step."""
    return [site_name(cfg.model.levels - 1),
            *(site_name(cfg.model.levels - 2 - depth, step)
              for depth, tau in enumerate(cfg.model.taus) for step in range(1, tau + 1))]


@pytest.mark.parametrize("particles", [None, 3])
def test_sites_and_shapes_match_the_models(particles, tiny_config, rnp, fashion_config):
    cfg = fashion_config(stochastic_levels=True, kl_weight=0.5)
    model = rnp(cfg)
    guide = LadderGuide(model, cfg.guide)
    x = torch.rand(5, 1, 28, 28)

    def traced(fn):
        if particles is None:
            return poutine.trace(fn).get_trace(x)
        with pyro.plate("particles", particles, dim=-2):  # as vectorize_particles does
            return poutine.trace(fn).get_trace(x)

    guide_sites, model_sites = latent_sites(traced(guide)), latent_sites(traced(model))
    assert list(guide_sites) == list(model_sites) == level_names(cfg)
    lead = (5,) if particles is None else (particles, 5)
    for name, site in guide_sites.items():
        other = model_sites[name]
        assert site["value"].shape == other["value"].shape, name
        assert site["fn"].batch_shape == other["fn"].batch_shape == lead, name
        assert site["fn"].event_shape == other["fn"].event_shape, name
        assert site["scale"] == other["scale"] == 0.5, name
        assert [f.name for f in site["cond_indep_stack"] if f.name != "particles"] == ["data"]
    nodes, z_dim = cfg.model.nodes_per_level, cfg.model.z_dim
    assert [guide_sites[n]["value"].shape for n in level_names(cfg)] == [
        (*lead, z_dim), *((*lead, nodes[depth], z_dim)  # each parent's child t
                          for depth, tau in enumerate(cfg.model.taus) for _ in range(tau))]


def test_vectorized_particles_give_finite_loss_and_gradients(tiny_config, rnp, fashion_config):
    cfg = fashion_config(stochastic_levels=True)
    model = rnp(cfg)
    guide = LadderGuide(model, cfg.guide)
    elbo = pyro.infer.Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(model, guide, torch.rand(4, 1, 28, 28))
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    # the output layer of the level posterior starts at zero, so at first only it and
    # the top encoder get gradients among the guide's parameters
    for name, parameter in [*guide.encoder.named_parameters(), *guide.posterior.out.named_parameters()]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_guide_parameters_are_its_own_networks(tiny_config, rnp, fashion_config):
    cfg = fashion_config(stochastic_levels=True)
    model = rnp(cfg)
    guide = LadderGuide(model, cfg.guide)
    names = {name for name, _ in guide.named_parameters()}
    assert names and all(name.split(".")[0] in ("encoder", "crop_encoder", "posterior")
                         for name in names)
    assert not {id(p) for p in guide.parameters()} & {id(p) for p in model.parameters()}
    assert all(key.split(".")[0] in ("encoder", "crop_encoder", "posterior")
               for key in guide.state_dict())


def test_guide_starts_at_the_models_conditional_prior(tiny_config, rnp, fashion_config):
    cfg = fashion_config(stochastic_levels=True, level_scale=0.2)
    model = rnp(cfg)
    guide = LadderGuide(model, cfg.guide)
    x = torch.rand(3, 1, 28, 28)
    guide_trace = poutine.trace(guide).get_trace(x)
    # the model given the same z^K and the guide's lower levels
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    for name in level_names(cfg)[1:]:
        q, p = guide_trace.nodes[name]["fn"].base_dist, model_trace.nodes[name]["fn"].base_dist
        torch.testing.assert_close(q.loc, p.loc)
        torch.testing.assert_close(q.scale, torch.full_like(q.scale, cfg.model.level_scale))
    # and so the lower levels' log-density ratio vanishes
    for name in level_names(cfg)[1:]:
        torch.testing.assert_close(guide_trace.nodes[name]["fn"].log_prob(guide_trace.nodes[name]["value"]),
                                   model_trace.nodes[name]["fn"].log_prob(guide_trace.nodes[name]["value"]))
    # the top level decodes as with any guide
    assert model.decode(guide.encode(x)[0]).canvas.shape == x.shape


@pytest.mark.parametrize("crop_size", [None, 28, 10])
def test_each_node_sees_its_parents_crop_cropped_under_its_action(crop_size, rnp, fashion_config):
    cfg = fashion_config(stochastic_levels=True, crop_size=crop_size).replace(taus=(3, 2))
    model = rnp(cfg)
    guide = LadderGuide(model, cfg.guide)
    seen = []
    guide.crop_encoder.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x = torch.rand(2, 1, 28, 28)
    trace = poutine.trace(guide).get_trace(x)
    lower = {name: trace.nodes[name]["value"] for name in level_names(cfg)[1:]}
    z_top = trace.nodes[cfg.model.top_site]["value"]
    levels = poutine.condition(model.grow, lower)(z_top, model.prior_latents(z_top.shape[:-1]),
                                                  drawn=False)
    tree, side = cfg.model, crop_size or 14  # by default half the image's side
    image = (1, side, side)
    parts = spatial.crop(x.unsqueeze(1).expand(2, 3, 1, 28, 28), levels[0].actions,
                         tree.scale_offset, tree.rotation_range, side)
    subparts = spatial.crop(parts.unsqueeze(2).expand(2, 3, 2, *image),
                            levels[1].actions.reshape(2, 3, 2, 6), tree.scale_offset,
                            tree.rotation_range, side)
    assert parts.shape[-3:] == subparts.shape[-3:] == image
    assert len(seen) == 3 + 2  # one batch of crops per program step
    torch.testing.assert_close(torch.stack(seen[:3], 1), parts)
    torch.testing.assert_close(torch.stack(seen[3:], 1).reshape(2, 3, 2, *image), subparts)


def fixed_noise_loss(model, guide, x):
    """The loss on x with fixed noise (common random numbers), in eval mode."""
    elbo = pyro.infer.Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    modes = [m.training for m in (model, guide, guide.encoder)]
    model.eval(), guide.eval()
    with torch.no_grad(), torch.random.fork_rng():
        pyro.set_rng_seed(1)
        loss = elbo.differentiable_loss(model, guide, x).item()
    model.train(modes[0]), guide.train(modes[1]), guide.encoder.train(modes[2])
    return loss


def test_short_svi_run_of_model_and_guide_lowers_the_loss(tiny_config, rnp, fashion_config):
    cfg = fashion_config(stochastic_levels=True)
    model = rnp(cfg)
    guide = LadderGuide(model, cfg.guide)
    x = rectangles(8)
    loss_fn = pyro.infer.Trace_ELBO()(model, guide)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)
    trained = {id(p) for p in loss_fn.parameters()}
    assert {id(p) for p in guide.parameters()} <= trained
    assert {id(p) for p in model.parameters()} <= trained
    before = fixed_noise_loss(model, guide, x)
    for _ in range(20):
        optimizer.zero_grad()
        loss = loss_fn(x)
        loss.backward()
        optimizer.step()
    assert fixed_noise_loss(model, guide, x) < before - 100


def test_training_only_the_level_posteriors_lowers_the_loss(tiny_config, rnp, fashion_config):
    """With the model and q(z^K | x) frozen, only q of the lower levels can improve the ELBO.

    It starts at the model's conditional prior, a valid but uninformed posterior; a
    guide whose lower levels did not learn from the crops would not move the loss.
    """
    cfg = fashion_config(stochastic_levels=True)
    model = rnp(cfg)
    guide = LadderGuide(model, cfg.guide)
    guide.encoder.eval()  # frozen, BatchNorm statistics included
    x = rectangles(8)
    elbo = pyro.infer.Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    ladder = [*guide.crop_encoder.parameters(), *guide.posterior.parameters()]
    optimizer = torch.optim.Adam(ladder, lr=1e-3)
    frozen = [p.detach().clone() for p in [*model.parameters(), *guide.encoder.parameters()]]
    before = fixed_noise_loss(model, guide, x)
    for _ in range(20):
        optimizer.zero_grad()
        elbo.differentiable_loss(model, guide, x).backward()
        optimizer.step()
    after = fixed_noise_loss(model, guide, x)
    assert all(torch.equal(p, q) for p, q in
               zip([*model.parameters(), *guide.encoder.parameters()], frozen))
    assert after < before - 5, (before, after)


def test_a_ladder_run_saved_before_crop_size_keeps_its_full_size_crops(fashion_config, rnp):
    from rnp_pyro.config import RunConfig

    config = fashion_config(stochastic_levels=True, guide="ladder")
    saved = config.to_dict()
    del saved["guide"]["crop_size"]  # as config.json was written before the setting
    loaded = RunConfig.from_dict(saved)
    assert loaded.guide.crop_size == 28
    assert LadderGuide(rnp(loaded), loaded.guide).crop_size == 28
    # saved now: the default, half the image's side
    assert RunConfig.from_dict(config.to_dict()).guide.crop_size is None
    assert LadderGuide(rnp(config), config.guide).crop_size == 14


def test_crops_smaller_than_four_pixels_are_refused(fashion_config):
    with pytest.raises(ConfigError, match="crop_size must be at least 4"):
        fashion_config(stochastic_levels=True, crop_size=2)


def test_a_deterministic_tree_is_refused(tiny_config, rnp, fashion_config):
    cfg = fashion_config(stochastic_levels=True).replace(stochastic_levels=False)
    with pytest.raises(ConfigError, match="stochastic_levels=False.*EncoderGuide"):
        LadderGuide(rnp(cfg), cfg.guide)


def test_the_model_is_needed(tiny_config, fashion_config):
    with pytest.raises(ValueError, match="LadderGuide\\(model\\)"):
        LadderGuide(None, fashion_config(stochastic_levels=True).guide)


def test_posterior_means_are_the_guides_means_top_down(tiny_config, rnp, fashion_config):
    cfg = fashion_config(stochastic_levels=True).replace(taus=(3, 2))
    model = rnp(cfg)
    guide = LadderGuide(model, cfg.guide).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        means = posterior_means(guide, x)
        assert list(means) == level_names(cfg)
        torch.testing.assert_close(means[cfg.model.top_site], guide.encode(x)[0])
        # at initialisation q's lower means are the prior's: the deterministic tree
        top = means[cfg.model.top_site]
        levels = model.grow(top, drawn=False)
        parts, subparts = levels[0].latents, levels[1].latents.unflatten(0, (len(top), 3))
        for t in range(3):
            torch.testing.assert_close(means[f"z1_{t + 1}"], parts[:, t:t + 1])
        for t in range(2):
            torch.testing.assert_close(means[f"z0_{t + 1}"], subparts[:, :, t])
        torch.testing.assert_close(reconstruct(model, guide, x).canvas,
                                   model.decode(means[cfg.model.top_site], stochastic=False).canvas)


def _loss_and_gradients(model, guide, x, particles, share: bool):
    """Trace_ELBO's loss and gradients, the model's replay reusing the guide's tree
    (``share``) or growing its own (the kept tree dropped after the guide)."""
    def guide_here(x):
        z = guide(x)
        if not share:
            model._kept = None
        return z

    parameters = [*model.parameters(), *guide.parameters()]
    for p in parameters:
        p.grad = None
    pyro.set_rng_seed(1)
    elbo = pyro.infer.Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1,
                                 max_plate_nesting=1)
    loss = elbo.loss_and_grads(model, guide_here, x)
    return loss, [p.grad.clone() for p in parameters]


@pytest.mark.parametrize("guide_kind, variant, particles", [
    ("ladder", {}, 1), ("ladder", {}, 3), ("ladder", {"program_input": "patch"}, 1),
    ("encoder", {}, 1)])
def test_the_model_reusing_the_guides_tree_gives_the_same_loss_and_gradients(
        guide_kind, variant, particles, tiny_config):
    from rnp_pyro.run import build

    torch.manual_seed(0)
    model, guide = build(tiny_config(stochastic_levels=True, guide=guide_kind,
                                     bf16_decoder=False, **variant))
    x = torch.rand(4, 1, 16, 16)
    shared, shared_grads = _loss_and_gradients(model, guide, x, particles, share=True)
    own, own_grads = _loss_and_gradients(model, guide, x, particles, share=False)
    assert shared == pytest.approx(own, rel=1e-6)
    for a, b in zip(shared_grads, own_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * b.abs().max().item())


def test_a_model_not_replaying_the_guides_lower_levels_grows_its_own_tree(tiny_config):
    from rnp_pyro.run import build

    torch.manual_seed(0)
    model, guide = build(tiny_config(stochastic_levels=True, guide="ladder", bf16_decoder=False))
    x = torch.rand(3, 1, 16, 16)
    guided = poutine.trace(guide).get_trace(x)
    top = guided.nodes["z2"]["value"]
    # z^K from the guide, the levels below drawn afresh from the prior
    conditioned = poutine.trace(poutine.condition(model, data={"z2": top})).get_trace(x)
    lower = [name for name in latent_sites(conditioned) if name != "z2"]
    assert lower and all(not torch.equal(conditioned.nodes[name]["value"],
                                         guided.nodes[name]["value"]) for name in lower)
    # its canvas is the one its own draws give
    values = {name: conditioned.nodes[name]["value"] for name in ["z2", *lower]}
    again = poutine.trace(poutine.condition(model, data=values)).get_trace(x)
    torch.testing.assert_close(conditioned.nodes["_RETURN"]["value"],
                               again.nodes["_RETURN"]["value"])


def test_pyros_classic_svi_loop_still_trains_the_programs_the_guide_ran(tiny_config):
    # the model's replay runs no program, yet it declares their networks to Pyro, so the
    # param store (which the classic loop steps) holds them
    from rnp_pyro.run import build

    model, guide = build(tiny_config(stochastic_levels=True, guide="ladder"))
    before = model.hyper_state[0].out.weight.detach().clone()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO())
    svi.step(torch.rand(4, 1, 16, 16))
    stored = list(pyro.get_param_store().values())
    assert any(p is model.hyper_state[0].out.weight for p in stored)
    assert not torch.equal(model.hyper_state[0].out.weight, before)
