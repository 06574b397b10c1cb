"""Posterior predictive checks: statistics, replicated draws, p-values, ArviZ data."""

import pytest
import torch

from rnp_pyro import ConvVAE, guides, ppc


def test_statistics_of_known_images():
    blank, full = torch.zeros(1, 1, 6, 6), torch.ones(1, 1, 6, 6)
    stripes = torch.zeros(1, 1, 6, 6)
    stripes[..., ::2] = 1.0  # a vertical line on every other column
    assert ppc.mean_intensity(full).item() == 1 and ppc.mean_intensity(stripes).item() == 0.5
    assert ppc.ink_fraction(stripes * 0.4).item() == 0 and ppc.ink_fraction(stripes).item() == 0.5
    assert ppc.edge_energy(blank).item() == ppc.edge_energy(full).item() == 0
    # every horizontal neighbour pair differs by 1, no vertical pair does
    assert ppc.edge_energy(stripes).item() == pytest.approx(1.0)


def test_part_masses_share_out_the_image_where_parts_draw(tiny_config, rnp, small_config):
    cfg = small_config()
    model = rnp(cfg)
    with torch.no_grad():
        tree = model.decode(torch.randn(5, cfg.model.z_dim))
    x = torch.rand(5, *cfg.model.image_shape)
    masses = ppc.part_mass(tree, x)
    assert masses.shape == (5, cfg.model.taus[0]) and (masses >= 0).all()
    drawn = (tree.levels[1].placed.clamp(min=0).sum(-4) > 0).float()
    assert torch.allclose(masses.sum(-1), ppc.mean_intensity(x * drawn), atol=1e-5)


@pytest.mark.parametrize("stochastic", [False, True])
def test_replicated_images_are_drawn_from_the_likelihood(stochastic, tiny_config, rnp, small_config):
    cfg = small_config(stochastic_levels=stochastic,
                      guide="ladder" if stochastic else "encoder")
    model = rnp(cfg)
    guide = guides.build(cfg.guide, model)
    x = torch.rand(3, *cfg.model.image_shape)
    check = ppc.posterior_predictive(model, guide, x, num_samples=400)
    assert set(check.latents) == set(cfg.model.latent_sites)
    assert check.latents[cfg.model.top_site].shape == (400, 3, cfg.model.z_dim)
    assert check.replicated.shape == check.means.shape == (400, *x.shape)
    # fresh draws around each canvas, not the observed images handed back
    assert not torch.equal(check.replicated[0], x)
    noise = check.replicated - check.means
    assert noise.mean().abs() < 0.01
    assert noise.std().item() == pytest.approx(cfg.model.obs_scale, rel=0.05)
    # the latents vary over draws, so the canvases do
    assert check.means.std(0).mean() > 0
    assert set(check.statistics) == {*ppc.IMAGE_STATISTICS, *ppc.PAIRED_STATISTICS, "part_mass"}


def test_p_values_flag_what_the_model_cannot_reproduce(tiny_config, rnp, small_config):
    cfg = small_config()
    model = rnp(cfg)
    guide = guides.build(cfg.guide, model)
    bright, blank = torch.ones(2, *cfg.model.image_shape), torch.zeros(2, *cfg.model.image_shape)
    brighter = ppc.posterior_predictive(model, guide, bright, num_samples=50).p_values()
    assert brighter["mean_intensity"].shape == (2,)
    assert brighter["part_mass"].shape == (2, cfg.model.taus[0])
    assert (brighter["mean_intensity"] == 0).all()  # no replica is as bright as all ones
    assert (brighter["deviance"] == 0).all()  # no replica fits as badly as all ones
    smoother = ppc.posterior_predictive(model, guide, blank, num_samples=50).p_values()
    assert (smoother["edge_energy"] == 1).all()  # every noisy replica has more edges than none


def test_images_the_model_made_get_uniform_p_values_from_their_true_latents(tiny_config,
                                                                            monkeypatch, rnp, small_config):
    # x and x_rep are then two draws from one distribution: every p-value is uniform
    monkeypatch.setattr(ppc, "unit_images", lambda x, **_: x)  # the model's own images
    # carry Normal noise beyond [0, 1], which images from users may not
    cfg = small_config()
    model = rnp(cfg)
    torch.manual_seed(0)
    z = torch.randn(400, cfg.model.z_dim)
    with torch.no_grad():
        x = model.likelihood(model.decode(z).canvas).sample()
    check = ppc.posterior_predictive(model, None, x, posterior_samples={
        cfg.model.top_site: z.expand(20, -1, -1)})
    for name, p in check.p_values().items():
        assert p.mean().item() == pytest.approx(0.5, abs=0.05), name
        assert (p > 0.95).double().mean().item() < 0.15, name
    bright = ppc.posterior_predictive(model, None, torch.ones_like(x[:8]), posterior_samples={
        cfg.model.top_site: z[:8].expand(20, -1, -1)}).p_values()
    assert (bright["deviance"] == 0).all()  # images of all ones are not the model's


def test_given_posterior_samples_and_seeds(tiny_config, rnp, small_config):
    cfg = small_config()
    model = rnp(cfg)
    guide = guides.build(cfg.guide, model)
    x = torch.rand(2, *cfg.model.image_shape)
    draws = {cfg.model.top_site: torch.randn(6, 2, cfg.model.z_dim)}
    check = ppc.posterior_predictive(model, None, x, posterior_samples=draws)
    with torch.no_grad():
        assert torch.allclose(check.means, model.decode(draws[cfg.model.top_site]).canvas,
                              atol=1e-6)
    state = torch.get_rng_state()
    first = ppc.posterior_predictive(model, guide, x, num_samples=5, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.replicated,
                       ppc.posterior_predictive(model, guide, x, num_samples=5, seed=1).replicated)
    with pytest.raises(ValueError, match="guide or posterior_samples"):
        ppc.posterior_predictive(model, None, x)


def test_arviz_data_and_plots(tmp_path, tiny_config, rnp, small_config):
    cfg = small_config(stochastic_levels=True, guide="ladder")
    model = rnp(cfg)
    x = torch.rand(4, *cfg.model.image_shape)
    check = ppc.posterior_predictive(model, guides.build(cfg.guide, model), x, num_samples=10)
    data = check.to_arviz()
    for group in ("posterior", "posterior_predictive", "observed_data"):
        assert group in data
    predictive, observed = data["posterior_predictive"], data["observed_data"]
    assert predictive["x"].shape == (1, 10, *x.shape)
    assert observed["x"].shape == x.shape
    assert predictive["part_mass"].shape == (1, 10, 4, cfg.model.taus[0])
    assert observed["mean_intensity"].shape == (4,)
    # a site per level and step: z1_2 holds the root's second part of each image
    assert data["posterior"]["z1_2"].shape == (1, 10, 4, 1, cfg.model.z_dim)
    for name in ("statistics.png", "images.png"):
        path = (check.plot_statistics if name == "statistics.png" else check.plot_images)(
            tmp_path / name)
        assert path.stat().st_size > 1000


def test_arviz_data_leave_out_loo_and_save(tmp_path, tiny_config, rnp, small_config):
    cfg = small_config()
    model = rnp(cfg)
    x = torch.rand(5, *cfg.model.image_shape)
    check = ppc.posterior_predictive(model, guides.build(cfg.guide, model), x, num_samples=40)
    torch.testing.assert_close(check.log_likelihood, model.likelihood(check.means).log_prob(x))
    torch.testing.assert_close(check.statistics["deviance"][0], -check.log_likelihood)
    data = check.to_arviz()
    assert "log_likelihood" not in data  # LOO over per-image latents does not apply
    data.to_netcdf(str(tmp_path / "check.nc"))
    assert (tmp_path / "check.nc").stat().st_size > 1000


def test_conv_vae_has_no_parts_to_check(tiny_config, small_config):
    cfg = small_config(model="convvae")
    model = ConvVAE(cfg.model)
    check = ppc.posterior_predictive(model, guides.build(cfg.guide, model),
                                     torch.rand(2, *cfg.model.image_shape), num_samples=4)
    assert set(check.statistics) == {*ppc.IMAGE_STATISTICS, *ppc.PAIRED_STATISTICS}
    data = check.to_arviz()  # InferenceData on ArviZ 0.x, DataTree on 1.x
    assert "part_mass" not in data["posterior_predictive"]
    assert data["posterior_predictive"]["edge_energy"].shape == (1, 4, 2)
