import math
from types import SimpleNamespace

import pytest
import torch

from rnp_pyro import ppc
from rnp_pyro.guides import EncoderGuide
from rnp_pyro.infer import MCMCPosterior, mcmc_posterior
from rnp_pyro.model import RNP

# A small untrained tree on the fashion settings at 12 px; a wide likelihood keeps the
# posterior near the prior, so NUTS takes long steps and a few iterations are enough to


def quick(model, x, **options):
    return mcmc_posterior(model, x, **{"num_samples": 6, "warmup_steps": 6, "num_chains": 2,
                                       "max_tree_depth": 3, **options})


def test_shapes_of_draws_samples_and_diagnostics(tiny_config, rnp, small_config):
    cfg = small_config()
    model = rnp(cfg)
    guide = EncoderGuide(model, cfg.guide)
    x = torch.rand(3, *cfg.model.image_shape)
    post = quick(model, x, init=guide)
    assert isinstance(post, MCMCPosterior)
    assert post.draws.shape == (2, 6, 3, cfg.model.z_dim)
    assert set(post.samples) == {cfg.model.top_site}
    assert post.samples[cfg.model.top_site].shape == (12, 3, cfg.model.z_dim)
    assert post.r_hat().shape == post.ess().shape == (3, cfg.model.z_dim)
    assert torch.isfinite(post.r_hat()).all() and torch.isfinite(post.ess()).all()
    assert len(post.step_size) == len(post.accept_prob) == len(post.divergences) == 2
    assert all(0 <= a <= 1 for a in post.accept_prob) and all(s > 0 for s in post.step_size)
    data = post.to_arviz()  # chains kept apart, for ArviZ's own diagnostics
    assert data["posterior"][cfg.model.top_site].shape == (2, 6, 3, cfg.model.z_dim)


def test_dense_mass_matrix_and_too_few_draws_for_r_hat(tiny_config, rnp, small_config):
    cfg = small_config()
    x = torch.rand(2, *cfg.model.image_shape)
    post = quick(rnp(cfg), x, full_mass=True, num_samples=3)
    assert post.draws.shape == (2, 3, 2, cfg.model.z_dim) and post.divergences[0] >= 0
    with pytest.raises(ValueError, match="at least 4 draws per chain"):
        post.r_hat()


def test_same_seed_same_draws_and_caller_rng_untouched(tiny_config, rnp, small_config):
    cfg = small_config()
    model = rnp(cfg)
    x = torch.rand(1, *cfg.model.image_shape)
    before = torch.get_rng_state()
    first = quick(model, x, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first.draws, quick(model, x, seed=3).draws)
    assert not torch.equal(first.draws, quick(model, x, seed=4).draws)


@pytest.mark.parametrize("bf16", [False, True])
def test_networks_frozen_while_sampling_and_restored_after(bf16, tiny_config, rnp, small_config):
    cfg = small_config(bf16_decoder=bf16)
    model = rnp(cfg).train()
    frozen_by_user = model.likelihood  # a part the caller had put in eval mode
    frozen_by_user.eval()
    first = next(model.parameters())
    first.requires_grad_(False)  # a parameter the caller had frozen stays frozen
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def watch(module, args, output):
        seen.append((module.training, any(p.requires_grad for p in module.parameters()),
                     module.bf16_decoder))

    model.register_forward_hook(watch)
    quick(model, torch.rand(2, *cfg.model.image_shape))

    assert seen and all(not training and not grads for training, grads, _ in seen)
    assert all(not bf16_used for *_, bf16_used in seen)  # dynamics always in float32
    assert model.bf16_decoder == bf16
    assert model.training and not frozen_by_user.training
    assert not first.requires_grad
    assert all(p.requires_grad for p in model.parameters() if p is not first)
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_samples_plug_into_predictive_checks(tiny_config, rnp, small_config):
    cfg = small_config()
    model = rnp(cfg)
    x = torch.rand(2, *cfg.model.image_shape)
    post = quick(model, x)
    check = ppc.posterior_predictive(model, None, x, posterior_samples=post.samples)
    assert check.replicated.shape == check.means.shape == (12, *x.shape)
    assert torch.equal(check.latents[cfg.model.top_site], post.samples[cfg.model.top_site])
    with torch.no_grad():
        assert torch.allclose(check.means, model.decode(post.samples[cfg.model.top_site]).canvas,
                              atol=1e-5)


def test_stochastic_levels_refused(tiny_config, rnp, small_config):
    cfg = small_config(stochastic_levels=True)
    with pytest.raises(ValueError, match=r"samples z\^K only"):
        mcmc_posterior(rnp(cfg), torch.rand(1, *cfg.model.image_shape))


class LinearRNP(RNP):
    """The RNP's Pyro model with decode replaced by a fixed linear map z -> canvas.

    With a Normal likelihood the posterior of z^K is then Gaussian and known exactly.
    """

    def __init__(self, cfg, weight, bias):
        super().__init__(cfg.model)
        self.register_buffer("weight", weight)  # (pixels, |z|)
        self.register_buffer("bias", bias)  # (pixels,)

    def decode(self, z, stochastic=None):
        canvas = z @ self.weight.T + self.bias
        return SimpleNamespace(canvas=canvas.reshape(*z.shape[:-1], *self.config.image_shape))


def test_nuts_recovers_exact_linear_gaussian_posterior(tiny_config, small_config):
    sigma = 1.0
    cfg = small_config().replace(z_dim=2, obs_scale=sigma)
    pixels = math.prod(cfg.model.image_shape)
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(pixels, 2, generator=gen) * 0.25
    weight[:, 1] += 0.5 * weight[:, 0]  # correlated posterior
    bias = torch.full((pixels,), 0.5)
    model = LinearRNP(cfg, weight, bias)
    z_true = torch.tensor([[1.5, -2.0], [-2.0, 2.5]])
    x = (z_true @ weight.T + bias + sigma * torch.randn(2, pixels, generator=gen)).reshape(
        2, *cfg.model.image_shape)

    precision = torch.eye(2) + weight.T @ weight / sigma**2
    cov = torch.linalg.inv(precision)
    mean = (x.reshape(2, pixels) - bias) @ weight @ cov / sigma**2  # (B, 2)
    sd = cov.diagonal().sqrt()
    # a sampler stuck at the prior N(0, I) or the start cannot pass
    assert (mean.abs() / sd > 3).all() and (sd < 0.6).all()

    post = mcmc_posterior(model, x, num_samples=300, warmup_steps=150, num_chains=3,
                          seed=0)
    draws = post.samples[cfg.model.top_site]  # (S, B, 2)
    ess = post.ess()
    assert (post.r_hat() < 1.05).all()
    import arviz  # ArviZ's rank-normalised R-hat of the same chains agrees

    arviz_r_hat = torch.as_tensor(arviz.rhat(post.to_arviz())[cfg.model.top_site].values)
    torch.testing.assert_close(arviz_r_hat.float(), post.r_hat().float(), atol=0.02, rtol=0)
    assert (ess > 150).all()
    # means within 4.5 Monte Carlo standard errors, covariances within 25 %
    assert ((draws.mean(0) - mean).abs() < 4.5 * sd / ess.sqrt()).all()
    for image in range(2):
        estimate = torch.cov(draws[:, image].T)
        assert torch.allclose(estimate, cov, rtol=0.25, atol=0.25 * cov.diagonal().min())
