"""The papers' variants of one model: what a program step reads, one hypernetwork or
two, the depth of the program encoder, parts decoded at every level. Each fast path
must draw what the literal depth-first algorithm draws."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from rnp_pyro.config import RunConfig
from rnp_pyro.encoder import BasicBlock
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


@pytest.mark.parametrize("form", ["composite", "patch", "patch_vs_composite"])
def test_the_part_loss_in_each_of_its_three_forms_is_eq_2_written_out(form, exact_config):
    cfg = exact_config(z_dim=5, taus=(3, 2), decode_parts=True, part_loss=form)
    model = RNP(cfg.model).double()
    x = torch.rand(4, 1, 12, 12, dtype=torch.float64)
    tree = model.decode(torch.randn(4, cfg.model.z_dim, dtype=torch.float64))
    parts = tree.levels[1]
    crops = model.crop(x.unsqueeze(1).expand(-1, 3, -1, -1, -1), parts.actions)
    own = torch.nn.functional.interpolate(parts.decoded.flatten(0, 1), size=(12, 12),
                                          mode="bilinear", align_corners=True).unflatten(0, (4, 3))
    drawn, target = {"composite": (parts.canvases, crops), "patch": (own, crops),
                     "patch_vs_composite": (own, parts.canvases)}[form]
    by_hand = sum((drawn[:, t] - target[:, t]).square().sum((-1, -2, -3)) for t in range(3)) / 3
    loss = part_loss(tree, x, cfg.model.scale_offset, cfg.model.rotation_range, form)
    assert loss.shape == (4,)
    torch.testing.assert_close(loss, by_hand)


def _factor(model, x, name):
    """The log-factor of the model's site ``name`` on images x."""
    with pyro.poutine.trace() as tracer:
        model(x)
    return tracer.trace.nodes[name]["fn"].log_factor


def _parts_factor_and_eq_2(model, x, seed):
    """The model's "parts" factor on images x (float64) and eq. 2 of the tree of the
    same prior draw of z, computed apart."""
    pyro.set_rng_seed(seed)
    factor = _factor(model, x, "parts")
    pyro.set_rng_seed(seed)
    zeros = torch.zeros(len(x), model.config.z_dim, dtype=torch.float64)
    z = dist.Normal(zeros, 1).to_event(1).sample()
    config = model.config
    eq_2 = part_loss(model.decode(z), x, config.scale_offset, config.rotation_range,
                     config.part_loss)
    return factor, eq_2


@pytest.mark.parametrize("form", ["composite", "patch", "patch_vs_composite"])
def test_the_part_loss_weighs_as_in_the_papers_loss(form, exact_config):
    """lambda = 0.3 against the squared error with beta = 0.1 (obs_scale sqrt(0.05)):
    the negative ELBO is (squared error + 0.1 KL + 0.3 eq. 2) / 0.1, so the factor is
    -3 eq. 2 nats per image."""
    cfg = exact_config(z_dim=5, taus=(3, 2), decode_parts=True, part_loss=form,
                       part_loss_lambda=0.3, obs_scale=0.05 ** 0.5)
    model = RNP(cfg.model).double()
    factor, eq_2 = _parts_factor_and_eq_2(model, torch.rand(4, 1, 12, 12, dtype=torch.float64), 1)
    torch.testing.assert_close(factor, -3.0 * eq_2)


def test_runs_saved_with_the_old_part_loss_weight_load_with_the_same_loss(exact_config):
    """Before the papers' units, part_loss_weight w multiplied eq. 2 in nats: a run saved
    so (w = 0.5 at obs_scale 0.2) has lambda = w * 2 * 0.2^2 = 0.04 and the same factor."""
    cfg = exact_config(z_dim=5, taus=(3, 2), obs_scale=0.2)
    saved = cfg.to_dict()
    del saved["model"]["part_loss_lambda"]
    saved["model"]["part_loss_weight"] = 0.5
    loaded = RunConfig.from_dict(saved)
    assert loaded.model.part_loss_lambda == pytest.approx(0.04, rel=1e-12)
    model = RNP(loaded.model).double()
    factor, eq_2 = _parts_factor_and_eq_2(model, torch.rand(3, 1, 12, 12, dtype=torch.float64), 2)
    torch.testing.assert_close(factor, -0.5 * eq_2, rtol=1e-12, atol=1e-12)
    flat = {"model": "rnp", "part_loss_weight": 0.5, "obs_scale": 0.2}  # the oldest, flat form
    assert RunConfig.from_dict(flat).model.part_loss_lambda == pytest.approx(0.04, rel=1e-12)
    with pytest.raises(ConfigError, match="retrain"):
        RunConfig.from_dict({**flat, "obs_scale": None})


@pytest.mark.parametrize("shared", [True, False])
def test_the_hypernetworks_norm_penalty_is_the_authors_regulariser(shared, exact_config):
    """lambda * sum over hypernetworks of ||theta_H|| (not squared), in nats 1/beta = 10
    times that; Pyro's own ELBO moves by exactly that much, and only the hypernetworks'
    gradients change."""
    cfg = exact_config(z_dim=5, taus=(2, 2), shared_hypernetworks=shared,
                       hyper_norm_lambda=1e-2, obs_scale=0.05 ** 0.5)
    model = RNP(cfg.model)
    guide = EncoderGuide(model, cfg.guide)
    networks = [*model.hyper_state, *model.hyper_policy]
    assert len(networks) == (2 if shared else 4)
    norms = sum(torch.nn.utils.parameters_to_vector(h.double().parameters()).norm().item()
                for h in networks)
    model.float()
    x = torch.rand(3, 1, 12, 12)
    assert _factor(model, x, "hyper_norm").item() == pytest.approx(-0.1 * norms, rel=1e-6)

    def loss_and_grads(lam):
        model.config = cfg.model.replace(hyper_norm_lambda=lam)
        model.zero_grad()
        guide.zero_grad()
        pyro.set_rng_seed(3)
        loss = Trace_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in [*model.named_parameters(),
                                                              *guide.named_parameters()]
                              if p.grad is not None}

    (with_penalty, grads), (without, plain) = loss_and_grads(1e-2), loss_and_grads(0.0)
    assert with_penalty - without == pytest.approx(0.1 * norms, rel=1e-4)
    changed = {n for n in grads if not torch.equal(grads[n], plain[n])}
    assert changed and all(n.startswith("hyper_") for n in changed)


def test_the_papers_loss_weights_need_the_squared_error(exact_config):
    for bad in (dict(likelihood="laplace"), dict(obs_scale=None)):
        with pytest.raises(ConfigError, match="fixed obs_scale"):
            exact_config(z_dim=5, hyper_norm_lambda=1e-4, **bad)


def test_the_workshop_preset_is_the_workshop_model():
    cfg = presets.get("workshop")
    model = RNP(cfg.model)
    assert cfg.model.hypernetworks == 1 and not hasattr(model, "hyper_state")
    assert cfg.model.program_input == "patch" and cfg.model.parent_input == "child_output"
    assert len(cfg.model.program_encoder) == 3 and cfg.model.hyper_state_layers + 1 == 6
    heads = {name.split("_")[0].split(".")[-1] for name in model.hyper[0].layout}
    assert len(model.hyper) == 1 and {"enc", "rnn", "h0", "dec", "first", "start"} <= heads
    assert cfg.train.lr == 4e-5 and cfg.model.z_dim == 32
    # its eq. 1: the part loss with weight 1 on each part's drawing (the child's program)
    assert (cfg.model.part_loss_lambda, cfg.model.part_loss) == (1.0, "composite")
    # decoders D and T of three layers each; an encoder of five blocks and four dense layers
    programs = model.program(torch.randn(2, 32), 0)
    assert len(programs.patches.hidden) == 2 and len(programs.action_hidden) == 2
    encoder = EncoderGuide(model, cfg.guide).encoder
    assert sum(isinstance(m, BasicBlock) for m in encoder.modules()) == 5
    assert sum(isinstance(m, torch.nn.Linear) for m in encoder.dense) == 4


@pytest.mark.parametrize("bad, message", [
    (dict(program_encoder=(8, 8, 8, 8)), "one to three"),
    (dict(hypernetworks=3), "hypernetworks must be 1"),
    (dict(program_input="pixels"), "program_input must be one of"),
    (dict(parent_input="child_output"), "set program_input='patch'"),
    (dict(program_input="patch", parent_input="child_output", stochastic_levels=True),
     "depth-first"),
    (dict(part_loss="patch", part_loss_lambda=0.1), "set decode_parts=True"),
    (dict(part_loss="patch_vs_composite", part_loss_lambda=0.1), "set decode_parts=True"),
    (dict(part_loss="own"), "part_loss must be one of"),
])
def test_variants_that_cannot_be_are_refused_with_the_fix(bad, message, exact_config):
    with pytest.raises(ConfigError, match=message):
        exact_config(z_dim=5, **bad)
