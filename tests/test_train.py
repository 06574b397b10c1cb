"""Training runs: what a run writes, resuming, skipped steps, checkpoints, evaluation."""

import csv
import dataclasses
import json
import os
import shutil
import signal
from pathlib import Path

import pyro
import pytest
import torch
from PIL import Image

from rnp_pyro import data
from rnp_pyro import folder
from rnp_pyro import run as run_module
from rnp_pyro.config import RunConfig
from rnp_pyro.errors import CheckpointError, ConfigError, RunStopped, TrainingDiverged
from rnp_pyro.model import RNP
from rnp_pyro.step import TrainStep
from rnp_pyro.metrics import evaluate
from rnp_pyro.infer import objectives
from rnp_pyro.distributed import resolve_device
from rnp_pyro.folder import CONFIG_FILE, read_checkpoint, read_metrics, save_checkpoint
from rnp_pyro.run import build, fit, fit_depthwise, load_run


@pytest.fixture(scope="module")
def size(tiny_config):
    return tiny_config().model.image_size


@pytest.fixture(scope="module")
def strokes(size):
    """256 training and 64 test images: 8 steps per epoch at batch size 32."""
    return (data.load_images("strokes", image_size=size, limit=256),
            data.load_images("strokes", train=False, image_size=size, limit=64))


def train(cfg, out, strokes, **options):
    train_set, test_set = strokes
    return fit(cfg, out, device="cpu", progress=False, train_set=train_set, test_set=test_set,
               **options)


@pytest.fixture(scope="module")
def run20(strokes, tmp_path_factory, tiny_config):
    """One uninterrupted run of 20 steps (two epochs and a half)."""
    return train(tiny_config(), tmp_path_factory.mktemp("run") / "run20", strokes, max_steps=20)


def metrics_rows(out):
    with open(out / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def weights(run, buffers=True):
    """Parameters (and buffers: BatchNorm statistics) of a run's model and guide."""
    named = {}
    for name, module in (("model", run.model), ("guide", run.guide)):
        tensors = module.state_dict() if buffers else dict(module.named_parameters())
        named.update({f"{name}.{key}": value for key, value in tensors.items()})
    return named


def copy_run(run, tmp_path):
    return shutil.copytree(run.path, tmp_path / "copy")


# ---------------------------------------------------------------------------- a run's files
def test_a_run_writes_config_checkpoint_metrics_tensorboard_and_figures(run20, tiny_config):
    out = run20.path
    assert RunConfig.load(out / "config.json") == tiny_config()
    assert (out / "checkpoint.pt").stat().st_size > 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    for figure in ("reconstructions.png", "samples.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = metrics_rows(out)
    assert list(rows[0]) == ["epoch", "step", "train_elbo", "test_elbo", "test_mse", "lr",
                             "skipped_steps", "seconds"]
    # a row after each epoch, and one where max_steps stopped the third
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(1, 8), (2, 16), (2, 20)]
    assert all(0 < float(r["test_mse"]) < 1 and int(r["skipped_steps"]) == 0 for r in rows)
    assert float(rows[-1]["test_elbo"]) > float(rows[0]["test_elbo"])  # it learns
    assert (run20.epoch, run20.step) == (2, 20)
    assert run20.metrics["step"] == 20


def test_the_learning_rate_decays_every_few_epochs_across_a_resume(strokes, tmp_path,
                                                                   tiny_config):
    cfg = tiny_config(lr_decay_every=2, lr_decay=0.5)
    train(cfg, tmp_path / "run", strokes, epochs=1)
    run = train(cfg, tmp_path / "run", strokes, epochs=4, resume=True)
    assert [float(r["lr"]) for r in metrics_rows(run.path)] == [1e-3, 1e-3, 5e-4, 5e-4]


# ---------------------------------------------------------------------------- resuming
def test_an_interrupted_run_resumes_as_if_it_had_never_stopped(run20, strokes, tmp_path,
                                                               tiny_config):
    out = tmp_path / "run"
    train(tiny_config(), out, strokes, max_steps=10)
    resumed = train(tiny_config(), out, strokes, max_steps=20, resume=True)

    assert (resumed.epoch, resumed.step) == (2, 20)
    torch.testing.assert_close(weights(resumed), weights(run20))
    rows = metrics_rows(out)
    assert [int(r["step"]) for r in rows] == [8, 10, 16, 20]
    straight = {r["step"]: r for r in metrics_rows(run20.path)}
    for row in rows[2:]:
        assert float(row["test_elbo"]) == pytest.approx(float(straight[row["step"]]["test_elbo"]))


def test_resuming_with_more_epochs_trains_on(run20, strokes, tmp_path, tiny_config):
    out = copy_run(run20, tmp_path)
    resumed = train(tiny_config(), out, strokes, max_steps=24, resume=True)
    assert resumed.step == 24
    assert [int(r["step"]) for r in metrics_rows(out)] == [8, 16, 20, 24]


def test_rows_written_after_the_last_checkpoint_are_dropped_on_resume(run20, strokes, tmp_path,
                                                                      tiny_config):
    out = copy_run(run20, tmp_path)
    with open(out / "metrics.csv", "a") as file:  # a row whose checkpoint never got written
        file.write("3,24,1.0,1.0,1.0,0.001,0,1.0\n")
    train(tiny_config(), out, strokes, max_steps=22, resume=True)
    assert [int(r["step"]) for r in metrics_rows(out)] == [8, 16, 20, 22]


@pytest.mark.parametrize("change, named", [(dict(lr=5e-4), "lr"), (dict(z_dim=7), "z_dim")])
def test_resume_refuses_other_settings(run20, strokes, change, named, tiny_config):
    with pytest.raises(CheckpointError, match=f"{named} .*another --out"):
        train(tiny_config(**change), run20.path, strokes, max_steps=30, resume=True)


def test_a_run_resumes_with_its_performance_switches_changed(run20, strokes, tmp_path,
                                                             tiny_config):
    out = copy_run(run20, tmp_path)
    switched = tiny_config(bf16_decoder=False, materialize_weights=True, cuda_graphs=True)
    resumed = train(switched, out, strokes, max_steps=22, resume=True)
    assert resumed.step == 22 and not resumed.config.speed.bf16_decoder
    assert load_run(out).config.speed.materialize_weights  # and the run loads as it now is


def test_resume_refuses_another_seed(run20, strokes, tiny_config):
    with pytest.raises(CheckpointError, match=r"seed \(0 vs 1\)"):
        train(tiny_config(), run20.path, strokes, max_steps=30, resume=True, seed=1)


def test_an_existing_run_is_never_overwritten(run20, strokes, tiny_config):
    before = (run20.path / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="--resume"):
        train(tiny_config(), run20.path, strokes, max_steps=5)
    assert (run20.path / "checkpoint.pt").read_bytes() == before


def test_resume_with_no_checkpoint_yet_starts_afresh_with_a_note(strokes, tmp_path, tiny_config,
                                                                  caplog):
    with caplog.at_level("INFO", logger="rnp_pyro"):
        run = train(tiny_config(), tmp_path / "new", strokes, max_steps=5, resume=True)
    assert run.step == 5 and "starting the run afresh" in caplog.text


# ---------------------------------------------------------------------------- run folders
def test_a_folder_of_the_users_files_is_refused_and_left_as_it_was(strokes, tmp_path,
                                                                    tiny_config):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "samples.png").write_bytes(b"my picture")
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(ConfigError, match="not a run's.*new or empty folder"):
        train(tiny_config(), mine, strokes, max_steps=2)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "samples.png"]
    assert (mine / "samples.png").read_bytes() == b"my picture"


def test_overwrite_replaces_only_the_runs_own_files(run20, strokes, tmp_path, tiny_config):
    out = copy_run(run20, tmp_path)
    (out / "notes.txt").write_text("kept")
    run = train(tiny_config(), out, strokes, max_steps=3, overwrite=True)
    assert run.step == 3 and (out / "notes.txt").read_text() == "kept"
    assert [int(row["step"]) for row in metrics_rows(out)] == [3]
    with pytest.raises(ConfigError, match="give one of them"):
        train(tiny_config(), out, strokes, max_steps=3, overwrite=True, resume=True)


def test_a_second_writer_is_refused_while_the_first_lives(strokes, tmp_path, tiny_config):
    out = tmp_path / "run"
    out.mkdir()
    (out / "fit.lock").write_text(str(os.getppid()))  # a live process holds it
    with pytest.raises(ConfigError, match="another fit .* is writing"):
        train(tiny_config(), out, strokes, max_steps=2)
    (out / "fit.lock").write_text("999999999")  # one that is gone: taken over
    assert train(tiny_config(), out, strokes, max_steps=2).step == 2
    assert not (out / "fit.lock").exists()


def test_a_half_written_checkpoint_of_a_killed_run_is_cleared(run20, strokes, tmp_path,
                                                               tiny_config):
    out = copy_run(run20, tmp_path)
    (out / "checkpoint.pt.partial").write_bytes(b"half")
    train(tiny_config(), out, strokes, max_steps=21, resume=True)
    assert not (out / "checkpoint.pt.partial").exists()


def test_a_relative_image_folder_is_stored_absolute_and_may_not_hold_the_run(
        tmp_path, monkeypatch, tiny_config):
    images = tmp_path / "imgs"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i in range(8):
            pixels = (torch.rand(16, 16) * 255).byte().numpy()
            Image.fromarray(pixels).save(images / label / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(dataset="folder:imgs")
    run = fit(cfg, tmp_path / "run", max_steps=2, device="cpu", progress=False)
    assert run.config.data.dataset == f"folder:{images}"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["dataset"] == \
        f"folder:{images}"
    with pytest.raises(ConfigError, match="inside its data folder"):
        fit(cfg, images / "run", max_steps=2, device="cpu", progress=False)


# ---------------------------------------------------------------------------- bad steps
def poison_call(monkeypatch, call: int, where: str):
    """Make the ELBO's ``call``-th evaluation non-finite: in the loss, or only in its gradient."""
    elbo = objectives.Trace_ELBO
    clean = elbo.differentiable_loss
    calls = []

    def poisoned(self, model, guide, *args, **kwargs):
        loss = clean(self, model, guide, *args, **kwargs)
        calls.append(1)
        if len(calls) != call:
            return loss
        if where == "loss":
            return loss * float("nan")
        # sqrt at 0: the value stays finite, the gradient is inf * 0 = nan
        return loss + torch.sqrt(0 * next(model.parameters()).sum())

    monkeypatch.setattr(elbo, "differentiable_loss", poisoned)


@pytest.mark.filterwarnings("ignore:Encountered NaN")
@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_a_non_finite_step_is_skipped_counted_and_reported(strokes, tmp_path, monkeypatch,
                                                           capsys, where, tiny_config):
    clean = train(tiny_config(), tmp_path / "clean", strokes, max_steps=2)
    poison_call(monkeypatch, call=3, where=where)
    poisoned = train(tiny_config(), tmp_path / "poisoned", strokes, max_steps=3)

    # (the BatchNorm statistics of the skipped forward pass stay: finite inputs and weights
    # keep them finite)
    torch.testing.assert_close(weights(poisoned, buffers=False), weights(clean, buffers=False),
                               rtol=0, atol=0)
    adam = read_checkpoint(poisoned.path)["optimizer"]
    assert all(int(s["step"]) == 2 for s in adam["state"].values())  # Adam never saw it
    assert poisoned.metrics["skipped_steps"] == 1
    assert "step 3: the loss or its gradient is not finite" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_training_goes_on_after_a_skipped_step(strokes, tmp_path, monkeypatch, tiny_config):
    poison_call(monkeypatch, call=2, where="loss")
    run = train(tiny_config(), tmp_path / "run", strokes, max_steps=4)
    assert all(torch.isfinite(w).all() for w in weights(run).values())
    assert [int(r["skipped_steps"]) for r in metrics_rows(run.path)] == [1]
    assert run.metrics["train_elbo"] == run.metrics["train_elbo"]  # not nan: 3 good steps


# ---------------------------------------------------------------------------- checkpoints
def test_load_run_gives_back_the_trained_model(run20, size):
    loaded = load_run(run20.path)
    assert (loaded.epoch, loaded.step, loaded.config) == (2, 20, run20.config)
    assert not loaded.model.training and not loaded.guide.training
    images = data.load_images("strokes", train=False, image_size=size, limit=5).images
    with torch.no_grad():
        loc, scale = run20.guide.encode(images)
        loaded_loc, loaded_scale = loaded.guide.encode(images)
        torch.testing.assert_close((loaded_loc, loaded_scale), (loc, scale), rtol=0, atol=0)
        torch.testing.assert_close(loaded.model.decode(loc).canvas,
                                   run20.model.decode(loc).canvas, rtol=0, atol=0)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_checkpoint_is_a_clear_error(run20, strokes, tmp_path, damage, tiny_config):
    out = copy_run(run20, tmp_path)
    checkpoint = out / "checkpoint.pt"
    content = checkpoint.read_bytes()
    checkpoint.write_bytes({"garbage": b"not a checkpoint" * 10,
                            "truncated": content[: len(content) // 2], "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="damaged"):
        load_run(out)
    with pytest.raises(CheckpointError, match="damaged"):
        train(tiny_config(), out, strokes, max_steps=30, resume=True)


def test_load_run_refuses_a_checkpoint_of_another_config(run20, tmp_path):
    out = copy_run(run20, tmp_path)
    settings = json.loads((out / "config.json").read_text())
    settings["train"]["lr"] = 0.5
    (out / "config.json").write_text(json.dumps(settings))
    with pytest.raises(CheckpointError, match=r"lr \(0.001 vs 0.5\)"):
        load_run(out)


def test_load_run_needs_a_checkpoint(tmp_path, tiny_config):
    tiny_config().save(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_run(tmp_path)


def test_a_run_folder_with_a_flat_config_still_loads(run20, tmp_path, tiny_config):
    # config.json and the checkpoint's config as one flat object of every setting, the
    # kinds of model and guide under "model" and "guide"
    config = tiny_config()
    flat = config.flat()
    assert (flat["model"], flat["guide"], flat["z_dim"], flat["lr"]) == ("rnp", "encoder", 6, 1e-3)
    out = tmp_path / "flat"
    out.mkdir()
    (out / CONFIG_FILE).write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n")
    state = read_checkpoint(run20.path)
    save_checkpoint(out, {**state, "config": flat})

    assert RunConfig.load(out / CONFIG_FILE) == config
    loaded = load_run(out)
    assert (loaded.epoch, loaded.step, loaded.config) == (2, 20, config)
    saved = {f"{part}.{key}": value for part in ("model", "guide")
             for key, value in state[part].items()}
    torch.testing.assert_close(weights(loaded), saved, rtol=0, atol=0)


# ---------------------------------------------------------------------------- evaluation
def test_evaluate_measures_the_guide_mean_reconstruction(run20, size):
    images = data.load_images("strokes", train=False, image_size=size, limit=40).images
    run20.model.train()
    random_state = torch.get_rng_state()
    metrics = evaluate(run20.model, run20.guide, images, batch_size=16)

    assert run20.model.training and not run20.guide.training  # modes given back
    assert torch.equal(torch.get_rng_state(), random_state)  # training's stream untouched
    run20.model.eval()
    with torch.no_grad():
        canvas = run20.model.decode(run20.guide.encode(images)[0]).canvas
    assert metrics["mse_per_pixel"] == pytest.approx((canvas - images).square().mean().item(),
                                                     rel=1e-5)
    assert metrics["n_images"] == 40
    # the ELBO's samples come from a fixed seed: numbers of two epochs are comparable
    again = evaluate(run20.model, run20.guide, images, batch_size=16)
    assert {k: v for k, v in again.items() if k != "seconds"} == \
        {k: v for k, v in metrics.items() if k != "seconds"}


# ---------------------------------------------------------------------------- models, devices
def test_build_makes_the_model_the_config_names(tiny_config):
    model, guide = build(tiny_config())
    assert type(model).__name__ == "RNP"
    baseline, _ = build(tiny_config(model="convvae"))
    assert type(baseline).__name__ == "ConvVAE"
    assert callable(guide.encode)


def test_bf16_autocast_keeps_the_loss_and_trains(strokes, tmp_path, tiny_config):
    cfg = tiny_config(bf16_autocast=True)
    model, guide = build(cfg)
    x = strokes[0].images[:32]
    losses = []
    for autocast in (False, True):
        pyro.set_rng_seed(0)
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            losses.append(pyro.infer.Trace_ELBO().differentiable_loss(model, guide, x).item())
    assert losses[1] == pytest.approx(losses[0], rel=0.02) and losses[1] != losses[0]
    rows = metrics_rows(train(cfg, tmp_path / "run", strokes, epochs=3).path)
    assert float(rows[-1]["train_elbo"]) > float(rows[0]["train_elbo"])


def test_the_convvae_baseline_trains_too(strokes, tmp_path, tiny_config):
    run = train(tiny_config(model="convvae"), tmp_path / "vae", strokes, max_steps=3)
    assert run.step == 3 and (run.path / "samples.png").exists()
    assert load_run(run.path).config.model.kind == "convvae"


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


# ---------------------------------------------------------------------------- stops
def signal_at_step(monkeypatch, step: int, number=signal.SIGTERM):
    """Send this process ``number`` during the training step ``step``, as a scheduler would."""
    taken = []
    original = TrainStep.__call__

    def call(self, x, indices):
        taken.append(1)
        if len(taken) == step:
            os.kill(os.getpid(), number)
        return original(self, x, indices)

    monkeypatch.setattr(TrainStep, "__call__", call)


@pytest.mark.parametrize("number, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_a_signal_mid_epoch_saves_a_checkpoint_and_the_resumed_run_ends_as_if_never_stopped(
        run20, strokes, tmp_path, monkeypatch, tiny_config, number, name):
    out = tmp_path / "run"
    signal_at_step(monkeypatch, 13, number)  # in the second epoch of 8 steps
    with pytest.raises(RunStopped, match=f"stopped by {name}.*step 13.*--resume"):
        train(tiny_config(), out, strokes, max_steps=20)
    saved = read_checkpoint(out)
    assert (saved["step"], saved["epoch"], saved["epoch_step"]) == (13, 1, 5)
    assert not (out / "checkpoint.pt.partial").exists()
    monkeypatch.undo()
    resumed = train(tiny_config(), out, strokes, max_steps=20, resume=True)
    torch.testing.assert_close(weights(resumed), weights(run20), rtol=0, atol=0)
    def without_time(rows):
        return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]

    assert without_time(metrics_rows(out)) == without_time(metrics_rows(run20.path))


def test_a_run_checkpoints_every_few_steps_inside_an_epoch(strokes, tmp_path, tiny_config):
    train(tiny_config(), tmp_path / "run", strokes, max_steps=6, checkpoint_every=5)
    assert read_checkpoint(tmp_path / "run")["step"] == 6  # the last, after the 5th's
    signalled = []
    original = folder.save_checkpoint
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(folder, "save_checkpoint",
                      lambda out, state: (signalled.append(state["step"]), original(out, state)))
        train(tiny_config(), tmp_path / "again", strokes, max_steps=12, checkpoint_every=5)
    assert signalled == [5, 8, 10, 12]  # every 5 steps, and after each epoch of 8


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_steps_that_keep_failing_stop_the_run_with_the_last_good_checkpoint(
        strokes, tmp_path, monkeypatch, tiny_config, capsys):
    clean = train(tiny_config(), tmp_path / "clean", strokes, max_steps=2)
    elbo = objectives.Trace_ELBO
    finite = elbo.differentiable_loss
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        loss = finite(self, *args, **kwargs)
        return loss if len(calls) <= 2 else loss * float("nan")

    monkeypatch.setattr(elbo, "differentiable_loss", failing)
    with pytest.raises(TrainingDiverged, match="steps were all skipped.*--lr"):
        train(tiny_config(), tmp_path / "run", strokes, max_steps=1000)
    saved = read_checkpoint(tmp_path / "run")
    assert saved["skipped_steps"] >= 100 and saved["step"] < 1000
    fresh, _ = build(tiny_config())
    fresh.load_state_dict(saved["model"])
    for name, value in fresh.state_dict().items():
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(value, clean.model.state_dict()[name], rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_a_step_whose_canvas_is_not_finite_is_skipped_and_training_goes_on(
        strokes, tmp_path, monkeypatch, tiny_config, capsys):
    decode = RNP.decode
    calls = []

    def sometimes_broken(self, z, *args, **kwargs):
        tree = decode(self, z, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2 and self.training:
            root = tree.levels[0]
            tree.levels[0] = dataclasses.replace(root, drawn=root.drawn * float("nan"))
        return tree

    monkeypatch.setattr(RNP, "decode", sometimes_broken)
    run = train(tiny_config(), tmp_path / "run", strokes, max_steps=6)
    assert run.step == 6 and run.metrics["skipped_steps"] == 1
    assert all(torch.isfinite(w).all() for w in weights(run).values())
    assert "1 of 6 steps were skipped" in capsys.readouterr().out


def test_a_cut_metrics_row_is_reported_and_left_out_never_written_back(run20, strokes, tmp_path,
                                                                       tiny_config, caplog):
    out = copy_run(run20, tmp_path)
    with open(out / "metrics.csv", "a") as file:
        file.write("3,24,-81.5,-8")  # a row cut short by a crash
    with caplog.at_level("WARNING", logger="rnp_pyro"):
        loaded = load_run(out)
    assert loaded.metrics["step"] == 20 and "a damaged row" in caplog.text
    resumed = train(tiny_config(), out, strokes, max_steps=24, resume=True)
    assert resumed.step == 24
    assert [int(row["step"]) for row in metrics_rows(out)] == [8, 16, 20, 24]


def test_loaded_metrics_are_those_of_the_checkpoint_loaded(run20, tmp_path):
    out = copy_run(run20, tmp_path)
    with open(out / "metrics.csv", "a") as file:  # a row of a later checkpoint never written
        file.write("3,30,-80.0,-80.0,0.09,0.001,0,1.0\n")
    assert load_run(out).metrics["step"] == 20


def test_an_older_metrics_file_with_the_training_loss_reads_as_the_elbo(run20, tmp_path):
    out = copy_run(run20, tmp_path)
    rows = metrics_rows(out)
    with open(out / "metrics.csv", "w", newline="") as file:
        old = csv.DictWriter(file, ["epoch", "step", "train_loss", "test_elbo", "test_mse", "lr",
                                    "skipped_steps", "seconds"])
        old.writeheader()
        for row in rows:
            old.writerow({**{k: v for k, v in row.items() if k != "train_elbo"},
                          "train_loss": -float(row["train_elbo"])})
    assert [row["train_elbo"] for row in read_metrics(out)] == [float(r["train_elbo"]) for r in rows]


def test_depthwise_training_grows_the_tree_one_depth_at_a_time(strokes, tmp_path, tiny_config,
                                                               monkeypatch):
    started = []
    original = run_module._init_from

    def noting(model, guide, run_dir, *args, **kwargs):
        started.append((model.config.taus, Path(run_dir).name))
        original(model, guide, run_dir, *args, **kwargs)
        # the deeper tree starts with every weight of the shallower one
        source = load_run(run_dir)
        for name, value in model.state_dict().items():
            assert torch.equal(value, source.model.state_dict()[name]), name

    monkeypatch.setattr(run_module, "_init_from", noting)
    train_set, test_set = strokes
    final = fit_depthwise(tiny_config(taus=(3, 2)), tmp_path / "run", max_steps=4, device="cpu",
                          progress=False, train_set=train_set, test_set=test_set)
    assert started == [((3, 2), "depth-1")]
    assert final.path == tmp_path / "run" / "depth-2" and final.config.model.taus == (3, 2)
    assert load_run(tmp_path / "run" / "depth-1").config.model.taus == (3,)
    again = fit_depthwise(tiny_config(taus=(3, 2)), tmp_path / "run", max_steps=4, device="cpu",
                          progress=False, train_set=train_set, test_set=test_set, resume=True)
    assert again.step == 4  # nothing left to train
    with pytest.raises(ConfigError, match="shared"):
        fit_depthwise(tiny_config(shared_hypernetworks=False), tmp_path / "other", device="cpu")


def test_the_part_loss_lambda_reaches_the_model_ramped_up_epoch_by_epoch(strokes, tmp_path,
                                                                          tiny_config, rnp):
    cfg = tiny_config(part_loss_lambda=0.4, part_loss_ramp=4)
    model = rnp(cfg)
    for epoch, weight in ((0, 0.1), (1, 0.2), (3, 0.4), (9, 0.4)):
        model.set_epoch(epoch, part_loss_ramp=4)
        assert model.part_loss_lambda == pytest.approx(weight)
    model.set_epoch(0)  # no ramp: the whole weight at once
    assert model.part_loss_lambda == pytest.approx(0.4)
    # the loop sets each epoch's weight: after three epochs of 8 steps, the third's
    trained = train(cfg, tmp_path / "run", strokes, max_steps=24)
    assert trained.model.part_loss_lambda == pytest.approx(0.4 * 3 / 4)
