"""Swappable inference: guides by name, objectives, log-likelihood bounds, refinement, transfer."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from rnp_pyro import data, guides, presets
from rnp_pyro.errors import ConfigError, DataError
from rnp_pyro.metrics import evaluate
from rnp_pyro.infer.bounds import log_likelihood_bounds, log_weights
from rnp_pyro.infer.fitting import fit_guide
from rnp_pyro.infer.objectives import make_objective
from rnp_pyro.plates import data_plate
from rnp_pyro.run import _init_from, build, fit, guide_for, load_run, read_config


@pytest.fixture(scope="module")
def strokes(tiny_config):
    size = tiny_config().model.image_size
    return (data.load_images("strokes", image_size=size, limit=128),
            data.load_images("strokes", train=False, image_size=size, limit=32))


@pytest.fixture(scope="module")
def trained(strokes, tmp_path_factory, tiny_config):
    """A run of 40 steps with the encoder guide (refined guides of it refine 5 steps)."""
    train_set, test_set = strokes
    out = tmp_path_factory.mktemp("run") / "encoder"
    return fit(tiny_config(refine_steps=5), out, max_steps=40, device="cpu", progress=False,
               train_set=train_set, test_set=test_set)


# ---------------------------------------------------------------------------- bounds
def gaussian_model(x, indices=None, dataset_size=None):
    """z ~ N(0, 1), every pixel of x ~ N(z, 1): log p(x) is known in closed form."""
    with data_plate(x, indices, dataset_size):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample("x", dist.Normal(z[..., None, None, None], 1.0).to_event(3), obs=x)


def offset_guide(x, indices=None, dataset_size=None):
    """A deliberately imperfect q(z | x): the right family, the wrong mean."""
    with data_plate(x, indices, dataset_size):
        pyro.sample("z", dist.Normal(x.flatten(-3).sum(-1) / 5 + 0.5, 0.6))


def test_importance_weighted_bound_tends_to_the_exact_log_likelihood():
    pyro.set_rng_seed(0)
    x = torch.randn(3, 1, 2, 2)  # 4 pixels: x ~ N(0, I + 1 1^T)
    exact = dist.MultivariateNormal(torch.zeros(4), torch.eye(4) + 1).log_prob(x.flatten(1))
    elbo, bound = log_likelihood_bounds(log_weights(gaussian_model, offset_guide, x,
                                                    num_samples=20000))
    assert bound.shape == elbo.shape == (3,)
    torch.testing.assert_close(bound.float(), exact, atol=0.02, rtol=0)
    assert (elbo < exact - 0.05).all()  # the guide is off: the ELBO is strictly looser
    small_k = log_likelihood_bounds(log_weights(gaussian_model, offset_guide, x, num_samples=5))
    assert (small_k[1] >= small_k[0]).all()


# ---------------------------------------------------------------------------- objectives
@pytest.mark.parametrize("objective, particles", [("elbo", 1), ("meanfield", 1), ("iwae", 4),
                                                  ("tracegraph", 1)])
def test_every_objective_trains(objective, particles, strokes, tmp_path, tiny_config):
    train_set, test_set = strokes
    cfg = tiny_config(objective=objective, num_particles=particles)
    run = fit(cfg, tmp_path / objective, max_steps=8, device="cpu", progress=False,
              train_set=train_set, test_set=test_set)
    assert math.isfinite(run.metrics["train_elbo"]) and run.metrics["skipped_steps"] == 0


def test_iwae_objective_is_renyi_alpha_zero_and_at_least_the_elbo(trained, strokes):
    assert isinstance(make_objective("iwae", 8), pyro.infer.RenyiELBO)
    x = strokes[1].images[:16]
    with torch.no_grad():
        pyro.set_rng_seed(0)
        iwae = make_objective("iwae", 64).loss(trained.model, trained.guide, x)
        pyro.set_rng_seed(0)
        elbo = make_objective("elbo", 64).loss(trained.model, trained.guide, x)
    assert iwae < elbo  # losses: the importance-weighted bound is the tighter one


def test_per_image_guides_refuse_the_importance_weighted_objective(tiny_config):
    with pytest.raises(ConfigError, match="per-image"):
        tiny_config(guide="normal", objective="iwae", num_particles=4)


# ---------------------------------------------------------------------------- guides
@pytest.mark.parametrize("name", ["normal", "delta"])
def test_per_image_guide_keeps_parameters_per_dataset_image(name, trained, strokes):
    images = strokes[1].images
    guide = guides.build(trained.config.guide.replace(kind=name), trained.model, example=images,
                         dataset_size=len(images))
    indices = torch.tensor([3, 7, 8])
    means = guides.posterior_means(guide, images[indices], indices, len(images))
    top, z_dim = trained.config.model.top_site, trained.config.model.z_dim
    assert means[top].shape == (3, z_dim)
    trace = pyro.poutine.trace(guide).get_trace(images[indices], indices, len(images))
    site = trace.nodes[top]
    assert site["value"].shape == (3, z_dim)
    assert site["scale"] == pytest.approx(len(images) / 3)  # the subsampled plate's scale

    before = {k: v.clone() for k, v in trained.model.state_dict().items()}
    losses = fit_guide(trained.model, guide, images, steps=60, batch_size=16)
    assert sum(losses[-10:]) < sum(losses[:10])
    assert all(torch.equal(before[k], v) for k, v in trained.model.state_dict().items())
    assert all(p.requires_grad for p in trained.model.parameters())  # unfrozen afterwards


def test_refinement_improves_each_image_elbo_on_average(trained, strokes):
    x = strokes[1].images
    refined = guides.build(trained.config.guide.replace(kind="refined", refine_steps=50,
                                                        refine_lr=0.02), trained.model)
    refined.encoder.load_state_dict(trained.guide.encoder.state_dict())
    encoder_metrics = evaluate(trained.model, trained.guide, x, iwae_samples=64)
    refined_metrics = evaluate(trained.model, refined.eval(), x, iwae_samples=64)
    assert refined_metrics["elbo_nats_per_image"] > encoder_metrics["elbo_nats_per_image"]
    assert all(p.grad is None for p in trained.model.parameters())  # networks held fixed


def test_evaluate_any_guide_of_a_run(trained, strokes):
    images = strokes[1].images
    for name in ("encoder", "refined", "normal", "delta"):
        guide, fitted = guide_for(trained, images, name, fit_steps=5)
        metrics = evaluate(trained.model, guide, images, iwae_samples=8)
        # equal for the point-mass guide, up to float64 rounding
        assert metrics["log_likelihood_bound_nats_per_image"] >= \
            metrics["elbo_nats_per_image"] - 1e-9
        assert ("fit_steps" in fitted) == (name in ("normal", "delta"))


def test_a_run_trained_with_a_per_image_guide_loads_back(strokes, tmp_path, tiny_config):
    train_set, test_set = strokes
    run = fit(tiny_config(guide="normal"), tmp_path / "normal", max_steps=4, device="cpu",
              progress=False, train_set=train_set, test_set=test_set)
    loaded = load_run(tmp_path / "normal")
    assert loaded.guide.per_image
    torch.testing.assert_close(loaded.guide.locs.z2, run.guide.locs.z2)
    assert loaded.guide.locs.z2.shape == (len(train_set), run.config.model.z_dim)


# ---------------------------------------------------------------------------- transfer
def test_transfer_freezes_what_it_names_and_starts_from_the_source(trained, strokes, tmp_path,
                                                                  tiny_config):
    train_set, test_set = strokes
    cfg = tiny_config(init_from=str(trained.path), freeze=("hyper_state", "hyper_policy"),
                      classes=(2,))
    run = fit(cfg, tmp_path / "adapted", max_steps=6, device="cpu", progress=False,
              train_set=train_set, test_set=test_set)
    source = trained.model.state_dict()
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, source[name]), name  # both hypernetworks frozen
    moved = [name for name, value in run.guide.state_dict().items()
             if not torch.equal(value, trained.guide.state_dict()[name])]
    assert moved  # the encoder adapted


def test_transfer_with_fresh_parts_keeps_h_state_and_starts_the_rest_anew(trained, tiny_config):
    # the PNAS paper's transfer: H_state kept (and frozen), a new encoder and H_policy
    cfg = tiny_config(init_from=str(trained.path), freeze=("hyper_state",),
                      fresh=("hyper_policy", "encoder"))
    torch.manual_seed(5)
    model, guide = build(cfg)
    untouched = {name: value.clone() for name, value in model.state_dict().items()}
    new_guide = {name: value.clone() for name, value in guide.state_dict().items()}
    _init_from(model, guide, cfg.train.init_from, fresh=cfg.train.fresh)
    source = trained.model.state_dict()
    for name, value in model.state_dict().items():
        expected = untouched[name] if name.startswith("hyper_policy.") else source[name]
        assert torch.equal(value, expected), name
    assert all(torch.equal(value, new_guide[name]) for name, value in guide.state_dict().items())
    with pytest.raises(ConfigError, match="never train"):
        tiny_config(init_from=str(trained.path), freeze=("encoder",), fresh=("encoder",))
    with pytest.raises(ConfigError, match="give init_from"):
        tiny_config(fresh=("encoder",))


def test_truncation_starts_from_the_subtree_with_a_fresh_guide(trained, strokes, tmp_path):
    cfg = presets.truncation(read_config(trained.path), trained.path, 1, epochs=1)
    assert (cfg.model.taus, cfg.train.truncate, cfg.train.init_from) == (
        (2,), 1, str(trained.path.resolve()))
    assert cfg.train.freeze == ("hyper_state", "hyper_policy")
    assert cfg.model.z_dim == trained.config.model.z_dim
    model, guide = build(cfg, example=strokes[0].images)
    fresh = {name: value.clone() for name, value in guide.state_dict().items()}
    _init_from(model, guide, cfg.train.init_from, cfg.train.truncate)
    assert all(torch.equal(value, fresh[name]) for name, value in guide.state_dict().items())
    z = torch.randn(5, cfg.model.z_dim)
    with torch.no_grad():
        torch.testing.assert_close(model.eval().decode(z).canvas,
                                   trained.model.decode(z, depth=1).canvas)

    run = fit(cfg, tmp_path / "truncated", max_steps=4, device="cpu", progress=False,
              train_set=strokes[0], test_set=strokes[1])
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, trained.model.state_dict()[name]), name  # frozen
    assert load_run(run.path).config.model.taus == (2,)


def test_truncation_errors_say_what_fits(trained, tmp_path, tiny_config):
    with pytest.raises(ConfigError, match="truncate 1 to 1"):
        presets.truncation(read_config(trained.path), trained.path, 2)
    with pytest.raises(ConfigError, match="init_from"):
        tiny_config(truncate=1)
    model, guide = build(tiny_config(taus=(3,)))
    with pytest.raises(ConfigError, match=r"leaves taus \(2,\)"):
        _init_from(model, guide, trained.path, 1)


def test_class_filters_keep_and_exclude_labels(strokes):
    train_set, _ = strokes
    kept = train_set.filter_classes(None, exclude=(1,))
    assert len(kept) and not (kept.labels == 1).any()
    with pytest.raises(DataError, match="no image"):
        train_set.filter_classes((1,), exclude=()).filter_classes((2,))


@pytest.mark.parametrize("name", ["normal", "delta"])
def test_per_image_guides_start_where_the_encoder_puts_each_image(name, trained, strokes):
    images = strokes[1].images
    guide, _ = guide_for(trained, images, name, fit_steps=1, lr=1e-9)
    with torch.no_grad():
        loc, _ = trained.guide.eval().encode(images)
        means = guides.posterior_means(guide, images, torch.arange(len(images)), len(images))
    torch.testing.assert_close(means[trained.config.model.top_site], loc, atol=1e-4, rtol=0)


def test_slow_work_says_how_long_it_will_take(caplog):
    from rnp_pyro.eta import LONG_SECONDS, announce_if_long, duration

    with caplog.at_level("INFO", logger="rnp_pyro"):
        assert announce_if_long("quick", 0.1, 1, 10) == pytest.approx(1.0)
        assert announce_if_long("slow", 2.0, 1, 300) == pytest.approx(600.0)
    assert [record.message for record in caplog.records] == ["slow: about 10 min in all"]
    assert LONG_SECONDS < 600
    assert [duration(s) for s in (45, 720, 12600)] == ["45 s", "12 min", "3.5 h"]
