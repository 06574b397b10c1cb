import pytest
import pyro
import torch
from images import rectangles

from rnp_pyro import presets
from rnp_pyro.baselines import ConvVAE
from rnp_pyro.encoder import ResNetEncoder
from rnp_pyro.guides import EncoderGuide


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_encoder_handles_any_leading_dims(channels, size):
    cfg = presets.get("fashion", channels=channels, image_size=size)
    encoder = ResNetEncoder(cfg.model.image_shape, cfg.model.z_dim,
                            **cfg.guide.encoder_options()).eval()
    x = torch.rand(2, 3, channels, size, size)
    loc, scale = encoder(x)
    assert loc.shape == scale.shape == (2, 3, cfg.model.z_dim)
    assert (scale > 0).all()
    flat_loc, flat_scale = encoder(x.reshape(6, channels, size, size))
    torch.testing.assert_close(loc.reshape(6, -1), flat_loc)
    torch.testing.assert_close(scale.reshape(6, -1), flat_scale)


def test_encoder_refuses_images_of_the_wrong_shape():
    cfg = presets.get("fashion")
    encoder = ResNetEncoder(cfg.model.image_shape, cfg.model.z_dim, **cfg.guide.encoder_options())
    with pytest.raises(ValueError, match="shape"):
        encoder(torch.rand(4, 3, 28, 28))


def test_guide_samples_the_top_site_per_image(tiny_config, rnp, fashion_config):
    cfg = fashion_config(kl_weight=0.5)
    guide = EncoderGuide(rnp(cfg), cfg.guide)
    trace = pyro.poutine.trace(guide).get_trace(torch.rand(5, 1, 28, 28))
    site = trace.nodes[cfg.model.top_site]
    assert site["fn"].batch_shape == (5,) and site["fn"].event_shape == (cfg.model.z_dim,)
    assert site["value"].shape == (5, cfg.model.z_dim)
    assert site["scale"] == 0.5
    assert [f.name for f in site["cond_indep_stack"]] == ["data"]


def test_guide_parameters_are_the_encoders(tiny_config, rnp, fashion_config):
    cfg = fashion_config()
    guide = EncoderGuide(rnp(cfg), cfg.guide)
    assert {name for name, _ in guide.named_parameters()} == {
        "encoder." + name for name, _ in guide.encoder.named_parameters()}


def test_vectorized_particles_give_finite_loss_and_encoder_gradients(tiny_config, fashion_config):
    cfg = fashion_config(model="convvae")
    model = ConvVAE(cfg.model)
    guide = EncoderGuide(model, cfg.guide)
    elbo = pyro.infer.Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(model, guide, torch.rand(6, 1, 28, 28))
    assert torch.isfinite(loss)
    loss.backward()
    for name, parameter in guide.encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_parallel_predictive_draws_one_latent_per_sample_and_image(tiny_config, fashion_config):
    cfg = fashion_config(model="convvae")
    model = ConvVAE(cfg.model)
    guide = EncoderGuide(model, cfg.guide)
    predictive = pyro.infer.Predictive(model, guide=guide, num_samples=3, parallel=True,
                                       return_sites=[cfg.model.top_site])
    draws = predictive(torch.rand(4, 1, 28, 28))
    assert draws[cfg.model.top_site].shape == (3, 4, cfg.model.z_dim)


def test_a_guide_takes_the_model_it_guides_first(tiny_config, fashion_config):
    cfg = fashion_config(stochastic_levels=True)
    for wrong in (cfg, cfg.guide, None):
        with pytest.raises(TypeError, match="takes the model it guides first"):
            EncoderGuide(wrong)


def test_stochastic_levels_are_drawn_by_the_model_inside_the_plate(tiny_config, fashion_config):
    cfg = fashion_config(stochastic_levels=True, kl_weight=0.5)

    class LowerLevels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = cfg.model
            self.weights = torch.nn.Linear(1, 1)  # must not show up among the guide's

        def sample_lower_levels(self, z_top):
            self.seen = z_top
            return pyro.sample("z1", pyro.distributions.Normal(z_top, 0.1).to_event(1))

    model = LowerLevels()
    guide = EncoderGuide(model, cfg.guide)
    trace = pyro.poutine.trace(guide).get_trace(torch.rand(3, 1, 28, 28))
    assert model.seen is trace.nodes[cfg.model.top_site]["value"]
    assert trace.nodes["z1"]["fn"].batch_shape == (3,) and trace.nodes["z1"]["scale"] == 0.5
    assert all(name.startswith("encoder.") for name in guide.state_dict())


def test_training_with_svi_learns_to_reconstruct(tiny_config, fashion_config):
    cfg = fashion_config(model="convvae")
    model = ConvVAE(cfg.model, target_params=100_000)
    guide = EncoderGuide(model, cfg.guide)
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
