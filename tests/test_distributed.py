"""Data-parallel training: two gloo processes on the CPU, checked against their two halves
computed in one process."""

import pyro
import pytest
import torch

from rnp_pyro import data
from rnp_pyro.distributed import Place, epoch_batches
from rnp_pyro.errors import CheckpointError, ConfigError, DataParallelError
from rnp_pyro.infer.objectives import make_objective
from rnp_pyro.folder import CHECKPOINT_FILE, read_checkpoint, read_metrics
from rnp_pyro.run import build, fit, fit_in_processes
from rnp_pyro.train import stream_seed


@pytest.fixture(scope="module")
def config(tiny_config):
    """The tiny config with 16 images per process and step."""
    return tiny_config(batch_size=16)


@pytest.fixture(scope="module")
def strokes(config):
    size = config.model.image_size
    return dict(train_set=data.load_images("strokes", image_size=size, limit=512),
                test_set=data.load_images("strokes", train=False, image_size=size, limit=128))


@pytest.mark.parametrize("count, batch", [(256, 16), (250, 16), (7, 2)])
def test_every_step_the_ranks_together_take_the_one_process_batch(count, batch):
    alone = epoch_batches(count, 2 * batch, seed=3, epoch=1, place=Place())
    ranks = [epoch_batches(count, batch, seed=3, epoch=1, place=Place(rank, 2)) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(alone)
    for step, together in enumerate(alone):
        joined = torch.cat([ranks[0][step], ranks[1][step]])
        # the last round is padded with the epoch's first indices, as DistributedSampler does
        assert set(joined.tolist()) >= set(together.tolist())
        assert len(joined) - len(together) <= 1
    order = torch.cat(alone)
    assert sorted(order.tolist()) == list(range(count))
    assert not torch.equal(order, torch.cat(epoch_batches(count, 2 * batch, 3, 2, Place())))


@pytest.fixture(scope="module")
def two_processes(strokes, tmp_path_factory, config):
    out = tmp_path_factory.mktemp("ddp") / "two"
    fit_in_processes(2, config, out, epochs=2, device="cpu", progress=False, **strokes)
    return out


def test_two_processes_step_with_the_average_of_their_halves_gradients(strokes, tmp_path, config):
    # What data-parallel training must make equal: each rank's gradient on its share
    # of the batch, with its own draws of z, averaged. Adam's first moment after one
    # step is 0.1 x the gradient it was given, so the checkpoint shows that gradient.
    fit_in_processes(2, config, tmp_path / "two", max_steps=1, device="cpu", progress=False,
                     **strokes)
    saved = read_checkpoint(tmp_path / "two")["optimizer"]["state"]

    images = strokes["train_set"].images
    pyro.set_rng_seed(0)  # fit's seed: the same first weights as every rank's
    model, guide = build(config, example=images, dataset_size=len(images))
    guide.encoder.to(memory_format=torch.channels_last)  # as the training step lays it out
    loss = make_objective(config.train.objective)(model, guide)
    for rank in (0, 1):
        place = Place(rank, 2)
        indices = epoch_batches(len(images), config.train.batch_size, stream_seed(0), 0, place)[0]
        pyro.set_rng_seed(stream_seed(0, rank))  # that rank's draws
        (loss(images[indices]) / len(indices) / place.world_size).backward()
    named = [pair for module in (model, guide) for pair in module.named_parameters()]
    assert len(named) == len(saved)
    # up to float rounding, which differs with the processes' thread counts
    for index, (name, parameter) in enumerate(named):
        expected = 0.1 * parameter.grad
        error = (saved[index]["exp_avg"] - expected).abs().max()
        assert error <= 1e-3 * expected.abs().max(), name


def test_two_processes_learn(two_processes):
    rows = read_metrics(two_processes)
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 16), (2, 32)]
    assert rows[-1]["train_elbo"] > rows[0]["train_elbo"]
    assert rows[-1]["test_elbo"] > rows[0]["test_elbo"]


def test_a_data_parallel_run_resumes_on_two_processes_or_one(two_processes, strokes, config):
    run = fit_in_processes(2, config, two_processes, epochs=3, device="cpu", progress=False,
                           resume=True, **strokes)
    assert (run.epoch, run.step) == (3, 48) and len(read_metrics(two_processes)) == 3
    alone = fit(config, two_processes, epochs=4, device="cpu", progress=False, resume=True,
                **strokes)  # 32 steps of 16 images per epoch in one process
    assert (alone.epoch, alone.step) == (4, 80) and len(read_metrics(two_processes)) == 4


def test_a_stop_inside_an_epoch_resumes_at_the_same_image_on_one_process(strokes, tmp_path,
                                                                         config):
    out = tmp_path / "run"
    fit_in_processes(2, config, out, max_steps=3, device="cpu", progress=False, **strokes)
    last = read_metrics(out)[-1]
    assert (last["epoch"], last["step"]) == (0, 3)
    # 3 steps of 2 x 16 images are 6 steps of 16: the epoch's other 26 remain
    run = fit(config, out, epochs=1, device="cpu", progress=False, resume=True, **strokes)
    assert (run.epoch, run.step) == (1, 29)


def test_the_ladder_guide_and_the_baseline_train_data_parallel(strokes, tmp_path, config):
    # every parameter must take part in every step, or DDP fails on the next one
    for name, cfg in (("ladder", config.replace(guide="ladder", stochastic_levels=True)),
                      ("convvae", config.replace(model="convvae"))):
        run = fit_in_processes(2, cfg, tmp_path / name, max_steps=3, device="cpu",
                               progress=False, **strokes)
        assert run.step == 3 and run.config.guide.kind == cfg.guide.kind


def test_data_parallel_errors_say_what_to_do(two_processes, tmp_path, config):
    with pytest.raises(ConfigError, match="one process"):
        fit_in_processes(2, config.replace(objective="iwae", num_particles=4), tmp_path / "a",
                         device="cpu")
    with pytest.raises(ConfigError, match="one process"):
        fit_in_processes(2, config.replace(guide="refined"), tmp_path / "b", device="cpu")
    with pytest.raises(CheckpointError, match="--resume"):
        fit_in_processes(2, config, two_processes, device="cpu")
    # both processes fail alike; which one is reported first is the scheduler's choice
    with pytest.raises(DataParallelError, match="process [01] of 2 failed: DataError: unknown"):
        fit_in_processes(2, config.replace(dataset="nope"), tmp_path / "c", epochs=1, device="cpu")
    assert not (tmp_path / "c" / CHECKPOINT_FILE).exists()
