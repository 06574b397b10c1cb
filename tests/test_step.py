"""The training step: Pyro's ELBO kept on the device, no host reads, the same update."""

import pyro
import pytest
import torch
from pyro.infer.util import is_validation_enabled
from torch.utils._python_dispatch import TorchDispatchMode

from rnp_pyro import data
from rnp_pyro.infer.objectives import Trace_ELBO
from rnp_pyro.run import build
from rnp_pyro.step import TrainStep


class HostReads(TorchDispatchMode):
    """Counts the operators that copy a tensor's value to the host."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def images(tiny_config):
    return data.load_images("strokes", image_size=tiny_config().model.image_size, limit=64).images


def train_step(cfg, model, guide, dataset_size, cuda_graphs=False):
    """The training loop's step for ``cfg``'s model and guide, on all their parameters."""
    parameters = list(model.parameters()) + list(guide.parameters())
    step = TrainStep(model, guide, parameters, dataset_size, cfg.train,
                     bf16_autocast=cfg.speed.bf16_autocast, cuda_graphs=cuda_graphs)
    return step, parameters


@pytest.mark.parametrize("overrides", [{}, {"stochastic_levels": True}, {"model": "convvae"}])
def test_the_device_elbo_has_pyros_value_and_gradient(images, overrides, tiny_config):
    cfg = tiny_config(**overrides)
    pyro.set_rng_seed(0)
    model, guide = build(cfg)
    results = []
    for elbo in (pyro.infer.Trace_ELBO(), Trace_ELBO()):
        pyro.set_rng_seed(1)  # the same draws
        loss = elbo.differentiable_loss(model, guide, images)
        gradients = torch.autograd.grad(loss, list(model.parameters()) + list(guide.parameters()))
        results.append((loss, gradients))
    torch.testing.assert_close(results[1], results[0])


def test_after_the_first_step_a_step_reads_nothing_back_from_the_device(images, tiny_config):
    cfg = tiny_config()
    model, guide = build(cfg)
    step, _ = train_step(cfg, model, guide, dataset_size=len(images))
    indices = torch.arange(32)
    with HostReads() as first:
        step(images[indices], indices)
    with HostReads() as later:
        loss, taken = step(images[indices], indices)
    assert first.count > 0  # the first step validates Pyro's arguments
    assert later.count == 0
    assert is_validation_enabled()  # the user's setting is left as it was
    assert loss.isfinite() and taken


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_captured_step_takes_the_eager_steps_values(images, tiny_config):
    cfg = tiny_config()
    x = images.cuda()
    steps = []
    for graphs in (False, True):
        pyro.set_rng_seed(0)
        model, guide = (module.cuda() for module in build(cfg))
        steps.append(train_step(cfg, model, guide, len(x), cuda_graphs=graphs))
    full, last = torch.arange(32, device="cuda"), torch.arange(16, device="cuda")
    # three eager, the capture, two replays, a smaller batch (eager), one more replay
    for number, indices in enumerate([full] * 6 + [last, full]):
        pyro.set_rng_seed(number)
        eager = steps[0][0](x[indices], indices)
        pyro.set_rng_seed(number)
        captured = steps[1][0](x[indices], indices)
        torch.testing.assert_close(captured, eager)
    assert steps[1][0].graph[1].shape[0] == 32  # captured once, for the full batch
    torch.testing.assert_close(steps[1][1], steps[0][1])


def test_the_step_trains_the_encoders_convolutions_channels_last_and_gives_them_back_contiguous(
        images, tiny_config):
    cfg = tiny_config()
    model, guide = build(cfg)
    convs = [m.weight for m in guide.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    before = [w.detach().clone() for w in convs]
    step, parameters = train_step(cfg, model, guide, dataset_size=len(images))
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert all(any(w is p for p in parameters) for w in convs)  # the same parameters, laid out
    indices = torch.arange(32)
    step(images[indices], indices)
    assert all(not torch.equal(w, b) for w, b in zip(convs, before))  # they trained
    step.close()
    assert all(w.is_contiguous() for w in convs)  # as Pyro's param store keeps them
