"""Data-parallel training: two gloo processes on the CPU against one with the doubled batch."""

import pytest
import torch

from images import TINY_SIZE, tiny_strokes
from rnp_pyro import data
from rnp_pyro.config import ConfigError
from rnp_pyro.distributed import DataParallelError, Place, epoch_batches
from rnp_pyro.run import CHECKPOINT_FILE, CheckpointError, read_metrics
from rnp_pyro.train import fit, fit_in_processes

SIZE = TINY_SIZE


def small(**overrides):
    """tiny_strokes with 16 images per process and step."""
    return tiny_strokes(**{"batch_size": 16, **overrides})


@pytest.fixture(scope="module")
def strokes():
    return dict(train_set=data.load_images("strokes", image_size=SIZE, limit=512),
                test_set=data.load_images("strokes", train=False, image_size=SIZE, limit=128))


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
def two_processes(strokes, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "two"
    fit_in_processes(2, small(), out, epochs=2, device="cpu", progress=False, **strokes)
    return out


def test_two_processes_learn_like_one_with_the_doubled_batch(two_processes, strokes, tmp_path):
    one = fit(small(batch_size=32), tmp_path / "one", epochs=2, device="cpu", progress=False,
              **strokes)
    two, alone = read_metrics(two_processes), read_metrics(one.path)
    assert [(r["epoch"], r["step"]) for r in two] == [(r["epoch"], r["step"]) for r in alone] == [
        (1, 16), (2, 32)]
    # the same images in every step; only the draws of z differ (and, over more epochs,
    # training amplifies that as much as a change of seed would)
    for mine, theirs in zip(two, alone):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=0.03)
        assert mine["test_elbo"] == pytest.approx(theirs["test_elbo"], rel=0.05)
    assert two[-1]["train_loss"] < two[0]["train_loss"]  # and it learns


def test_a_data_parallel_run_resumes_on_two_processes_or_one(two_processes, strokes, tmp_path):
    run = fit_in_processes(2, small(), two_processes, epochs=3, device="cpu", progress=False,
                           resume=True, **strokes)
    assert (run.epoch, run.step) == (3, 48) and len(read_metrics(two_processes)) == 3
    alone = fit(small(), two_processes, epochs=4, device="cpu", progress=False, resume=True,
                **strokes)  # 32 steps of 16 images per epoch in one process
    assert (alone.epoch, alone.step) == (4, 80) and len(read_metrics(two_processes)) == 4


def test_a_stop_inside_an_epoch_resumes_at_the_same_image_on_one_process(strokes, tmp_path):
    out = tmp_path / "run"
    fit_in_processes(2, small(), out, max_steps=3, device="cpu", progress=False, **strokes)
    last = read_metrics(out)[-1]
    assert (last["epoch"], last["step"]) == (0, 3)
    # 3 steps of 2 x 16 images are 6 steps of 16: the epoch's other 26 remain
    run = fit(small(), out, epochs=1, device="cpu", progress=False, resume=True, **strokes)
    assert (run.epoch, run.step) == (1, 29)


def test_the_ladder_guide_and_the_baseline_train_data_parallel(strokes, tmp_path):
    # every parameter must take part in every step, or DDP fails on the next one
    for name, cfg in (("ladder", small(guide="ladder", stochastic_levels=True)),
                      ("convvae", small(model="convvae"))):
        run = fit_in_processes(2, cfg, tmp_path / name, max_steps=3, device="cpu",
                               progress=False, **strokes)
        assert run.step == 3 and run.config.guide == cfg.guide


def test_data_parallel_errors_say_what_to_do(two_processes, strokes, tmp_path):
    with pytest.raises(ConfigError, match="one process"):
        fit_in_processes(2, small(objective="iwae"), tmp_path / "a", device="cpu")
    with pytest.raises(ConfigError, match="one process"):
        fit_in_processes(2, small(guide="refined"), tmp_path / "b", device="cpu")
    with pytest.raises(CheckpointError, match="--resume"):
        fit_in_processes(2, small(), two_processes, device="cpu")
    with pytest.raises(DataParallelError, match="process 0 of 2 failed: DataError: unknown"):
        fit_in_processes(2, small(dataset="nope"), tmp_path / "c", epochs=1, device="cpu")
    assert not (tmp_path / "c" / CHECKPOINT_FILE).exists()
