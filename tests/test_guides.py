import pytest
import pyro
import torch
from images import rectangles

from rnp_pyro import presets
from rnp_pyro.baselines import ConvVAE
from rnp_pyro.config import top_site
from rnp_pyro.encoder import ResNetEncoder
from rnp_pyro.guides import EncoderGuide


@pytest.fixture(autouse=True)
def seeded():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()


def small_config(**overrides):
    """The fashion preset with a light encoder, so that training in tests is quick."""
    light = dict(encoder_channels=8, encoder_blocks=1, encoder_dense=(32,))
    return presets.get("fashion", **{**light, **overrides})


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_encoder_handles_any_leading_dims(channels, size):
    cfg = presets.get("fashion", channels=channels, image_size=size)
    encoder = ResNetEncoder(cfg).eval()
    x = torch.rand(2, 3, channels, size, size)
    loc, scale = encoder(x)
    assert loc.shape == scale.shape == (2, 3, cfg.z_dim)
    assert (scale > 0).all()
    flat_loc, flat_scale = encoder(x.reshape(6, channels, size, size))
    torch.testing.assert_close(loc.reshape(6, -1), flat_loc)
    torch.testing.assert_close(scale.reshape(6, -1), flat_scale)


def test_encoder_refuses_images_of_the_wrong_shape():
    encoder = ResNetEncoder(presets.get("fashion"))
    with pytest.raises(ValueError, match="shape"):
        encoder(torch.rand(4, 3, 28, 28))


def test_guide_samples_the_top_site_per_image():
    cfg = small_config(kl_weight=0.5)
    guide = EncoderGuide(cfg)
    trace = pyro.poutine.trace(guide).get_trace(torch.rand(5, 1, 28, 28))
    site = trace.nodes[top_site(cfg)]
    assert site["fn"].batch_shape == (5,) and site["fn"].event_shape == (cfg.z_dim,)
    assert site["value"].shape == (5, cfg.z_dim)
    assert site["scale"] == 0.5
    assert [f.name for f in site["cond_indep_stack"]] == ["data"]


def test_guide_parameters_are_the_encoders():
    guide = EncoderGuide(small_config())
    assert {name for name, _ in guide.named_parameters()} == {
        "encoder." + name for name, _ in guide.encoder.named_parameters()}


def test_vectorized_particles_give_finite_loss_and_encoder_gradients():
    cfg = small_config()
    model, guide = ConvVAE(cfg), EncoderGuide(cfg)
    elbo = pyro.infer.Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(model, guide, torch.rand(6, 1, 28, 28))
    assert torch.isfinite(loss)
    loss.backward()
    for name, parameter in guide.encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_parallel_predictive_draws_one_latent_per_sample_and_image():
    cfg = small_config()
    model, guide = ConvVAE(cfg), EncoderGuide(cfg)
    predictive = pyro.infer.Predictive(model, guide=guide, num_samples=3, parallel=True,
                                       return_sites=[top_site(cfg)])
    draws = predictive(torch.rand(4, 1, 28, 28))
    assert draws[top_site(cfg)].shape == (3, 4, cfg.z_dim)


def test_stochastic_levels_need_the_model():
    with pytest.raises(ValueError, match="model="):
        EncoderGuide(small_config(stochastic_levels=True))


def test_stochastic_levels_are_drawn_by_the_model_inside_the_plate():
    cfg = small_config(stochastic_levels=True, kl_weight=0.5)

    class LowerLevels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = torch.nn.Linear(1, 1)  # must not show up among the guide's

        def sample_lower_levels(self, z_top):
            self.seen = z_top
            return pyro.sample("z1", pyro.distributions.Normal(z_top, 0.1).to_event(1))

    model = LowerLevels()
    guide = EncoderGuide(cfg, model=model)
    trace = pyro.poutine.trace(guide).get_trace(torch.rand(3, 1, 28, 28))
    assert model.seen is trace.nodes[top_site(cfg)]["value"]
    assert trace.nodes["z1"]["fn"].batch_shape == (3,) and trace.nodes["z1"]["scale"] == 0.5
    assert all(name.startswith("encoder.") for name in guide.state_dict())


def test_training_with_svi_learns_to_reconstruct():
    cfg = small_config()
    model, guide = ConvVAE(cfg, target_params=100_000), EncoderGuide(cfg)
    images = rectangles(512)
    loss_fn = pyro.infer.Trace_ELBO()(model, guide)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)

    def reconstruction_error():
        guide.eval()
        with torch.no_grad():
            error = (model.decode(guide.encode(images)[0]).canvas - images).pow(2).mean()
        guide.train()
        return error

    before = reconstruction_error()
    losses = []
    for _ in range(100):
        loss = loss_fn(images[torch.randint(0, len(images), (64,))])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.25 * first
    assert reconstruction_error() < 0.5 * before
