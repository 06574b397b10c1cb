"""Bad input, as a new user gives it, from the shell and from Python: each gets a clear
error that names what was wrong (or the right behaviour), never a traceback, and loses
nothing."""

import json

import numpy as np
import pyro
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from rnp_pyro import data, guides, presets, spatial
from rnp_pyro.cli import main
from rnp_pyro.config import DataConfig, RunConfig, TrainConfig
from rnp_pyro.errors import CheckpointError, ConfigError, DataError
from rnp_pyro.guides import EncoderGuide, GuideConfig
from rnp_pyro.hyper import HyperNetwork
from rnp_pyro.metrics import evaluate
from rnp_pyro.model import RNP, ModelConfig
from rnp_pyro.run import build, fit, load_run


def one_error_line(result, *words):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word in errors[0], errors[0]


CLI_CASES = {
    "lr nan": (["--lr", "nan"], ["lr", "nan"]),
    "lr inf": (["--lr", "inf"], ["lr", "inf"]),
    "grad-clip nan": (["--set", "grad_clip=nan"], ["grad_clip"]),
    "seed negative": (["--seed", "-5"], ["--seed"]),
    "seed huge": (["--seed", "1e23"], ["--seed"]),
    "epochs 0": (["--epochs", "0"], ["epochs", "at least 1"]),
    "max-steps 0": (["--max-steps", "0"], ["--max-steps"]),
    "unknown objective": (["--objective", "nope"], ["'nope'", "elbo"]),
    "unknown guide": (["--guide", "nope"], ["'nope'", "encoder"]),
    "ladder without levels": (["--guide", "ladder"], ["stochastic_levels"]),
    "iwae of one particle": (["--objective", "iwae"], ["at least 2 particles"]),
    "set a negative z_dim": (["--set", "z_dim=-1"], ["z_dim"]),
    "set an unknown name": (["--set", "wings=2"], ["'wings'"]),
    "set without a value": (["--set", "z_dim"], ["NAME=VALUE"]),
    "set fractional taus": (["--set", "taus=[2.5]"], ["taus", "whole numbers"]),
    "set fractional batch": (["--set", "batch_size=2.5"], ["batch_size", "whole number"]),
    "set text for a flag": (["--set", "stochastic_levels=yes"], ["stochastic_levels"]),
    "unknown freeze": (["--freeze", "wings"], ["wings"]),
    "unknown fresh part": (["--fresh", "wings"], ["wings"]),
    "fresh without a source": (["--fresh", "encoder"], ["init_from"]),
    "unknown primitive": (["--set", "primitives=dot"], ["dot"]),
    "labels not numbers": (["--classes", "a,b"], ["--classes"]),
    "speed not on or off": (["--speed", "cuda_graphs=yes"], ["cuda_graphs=yes"]),
    "resume and overwrite": (["--resume", "--overwrite"], ["give one of them"]),
    "unknown dataset": (["--dataset", "nope"], ["nope"]),
    "missing image folder": (["--dataset", "folder:/no/such/folder"], ["/no/such/folder"]),
    "unknown preset": (["--preset", "nope"], ["nope"]),
    "data-parallel tracegraph": (["--devices", "2", "--objective", "tracegraph"], ["one process"]),
    "image size too small": (["--image-size", "4"], ["--image-size"]),
    "unknown device": (["--device", "tpu"], ["tpu"]),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_fit_options_are_one_error_line(case, tmp_path):
    options, words = CLI_CASES[case]
    if "--dataset" not in options:
        options = ["--dataset", "strokes", *options]
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["fit", *options, "--out", str(out), "--no-progress"])
    one_error_line(result, *words)
    assert not out.exists()


def test_bad_config_files_are_one_error_line(tmp_path):
    broken, listed = tmp_path / "broken.json", tmp_path / "list.json"
    broken.write_text("{z_dim: 3")
    listed.write_text("[1, 2]")
    for path, words in ((broken, ["cannot read it as JSON"]), (listed, ["JSON object"]),
                        (tmp_path / "missing.json", ["--config"])):
        result = CliRunner().invoke(main, ["fit", "--dataset", "strokes", "--config", str(path),
                                           "--out", str(tmp_path / "run")])
        one_error_line(result, *words)


def test_bad_run_folders_are_one_error_line_and_keep_the_users_files(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.png").write_bytes(b"mine")
    for out, words in (("", ["choose another --out"]), (a_file, ["is a file"]),
                       (mine, ["not a run's"]), (a_file / "run", ["cannot write"])):
        result = CliRunner().invoke(main, ["fit", "--dataset", "strokes", "--out", str(out)])
        one_error_line(result, *words)
    assert a_file.read_text() == "mine" and (mine / "photo.png").read_bytes() == b"mine"


def test_commands_on_a_missing_run_are_one_error_line(tmp_path):
    for command in (["evaluate"], ["ppc"], ["figures"]):
        one_error_line(CliRunner().invoke(main, [*command, str(tmp_path / "none")]),
                       "no run folder")
    one_error_line(CliRunner().invoke(main, ["evaluate", str(tmp_path), "--iwae-samples", "0"]),
                   "--iwae-samples")


# ---------------------------------------------------------------------------- Python
SETTINGS_CASES = {
    "infinite lr": dict(lr=float("inf")),
    "nan lr": dict(lr=float("nan")),
    "boolean lr": dict(lr=True),
    "fractional batch": dict(batch_size=2.5),
    "negative grad_clip": dict(grad_clip=-1.0),
    "text z_dim": dict(z_dim="8"),
    "fractional taus": dict(taus=(2.5, 2)),
    "empty taus": dict(taus=()),
    "one-pixel patches": dict(patch_size=1),
    "negative kl_weight": dict(kl_weight=-1.0),
    "lr decay of 0": dict(lr_decay=0.0),
    "overlapping classes": dict(classes=(1, 2), exclude_classes=(2,)),
    "unknown guide": dict(guide="nope"),
    "unknown likelihood": dict(likelihood="poisson"),
    "unknown setting": dict(wings=2),
    "freeze as text": dict(freeze="encoder"),
    "encoder too deep": dict(encoder_convs=7),
    "truncate without a source": dict(truncate=1),
}


@pytest.mark.parametrize("case", list(SETTINGS_CASES))
def test_bad_settings_are_value_errors_naming_the_setting(case):
    change = SETTINGS_CASES[case]
    with pytest.raises(ConfigError) as caught:
        RunConfig().replace(**change)
    assert isinstance(caught.value, ValueError)
    named = next(iter(change))
    assert named in str(caught.value) or {"guide": "'nope'", "encoder_convs": "convolutions",
                                           "classes": "overlap"}.get(named, "?") in str(caught.value)


def test_the_parts_check_their_own_fields():
    for make in (lambda: ModelConfig(z_dim=0), lambda: GuideConfig(kind="nope"),
                 lambda: TrainConfig(lr=-1.0), lambda: DataConfig(dataset=""),
                 lambda: RunConfig.from_dict({"model": {"z_dim": "x"}}),
                 lambda: RunConfig.from_dict([1, 2]), lambda: presets.get("nope")):
        with pytest.raises(ConfigError):
            make()


@pytest.fixture(scope="module")
def pair(tiny_config):
    torch.manual_seed(0)
    return build(tiny_config(bf16_decoder=False))


def test_images_of_any_usual_type_are_read_as_a_user_means_them(pair):
    model, guide = pair
    images = torch.rand(4, 1, 16, 16)
    reference = evaluate(model, guide, images)["mse_per_pixel"]
    as_bytes = (images * 255).round().byte()
    assert evaluate(model, guide, as_bytes)["mse_per_pixel"] == pytest.approx(reference, rel=0.05)
    for dtype in (torch.float64, torch.float16):
        got = evaluate(model, guide, images.to(dtype))["mse_per_pixel"]
        assert got == pytest.approx(reference, rel=0.01)


BAD_IMAGES = {
    "NaN pixels": (torch.full((2, 1, 16, 16), float("nan")), "NaN"),
    "0..255 floats": (torch.rand(2, 1, 16, 16) * 255, "divide by 255"),
    "an empty batch": (torch.rand(0, 1, 16, 16), "no images"),
    "a numpy array": (np.random.rand(2, 1, 16, 16), "torch.Tensor"),
    "a list": ([[0.5]], "torch.Tensor"),
    "another size": (torch.rand(2, 1, 12, 12), "12x12"),
    "three channels": (torch.rand(2, 3, 16, 16), "3 channels"),
    "one image, 3-D": (torch.rand(1, 16, 16), "4-D"),
    "integers": (torch.ones(2, 1, 16, 16, dtype=torch.int64), "floating point"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_images_to_evaluate_are_data_errors_saying_what_to_do(pair, case):
    images, words = BAD_IMAGES[case]
    with pytest.raises(DataError, match=words):
        evaluate(*pair, images)


def test_bad_counts_and_budgets_are_errors(pair, tiny_config, tmp_path):
    x = torch.rand(2, 1, 16, 16)
    for options in (dict(iwae_samples=0), dict(batch_size=0), dict(iwae_samples=2.5)):
        with pytest.raises(ValueError, match=next(iter(options))):
            evaluate(*pair, x, **options)
    for options in (dict(epochs=-1), dict(max_steps=0), dict(seed=-5), dict(checkpoint_every=0)):
        with pytest.raises(ConfigError, match=next(iter(options))):
            fit(tiny_config(), tmp_path / "run", device="cpu", **options)
    with pytest.raises(ConfigError, match="must be named"):
        fit(tiny_config(), "", device="cpu")
    assert not (tmp_path / "run").exists()


def test_misused_building_blocks_say_how_to_use_them(pair, tiny_config, tmp_path):
    model, _ = pair
    with pytest.raises(TypeError, match="takes the model it guides first"):
        EncoderGuide(tiny_config())
    with pytest.raises(TypeError, match="subclass of rnp_pyro.guides.Guide"):
        guides.register(nn.Linear)
    with pytest.raises(ValueError, match="last dimension of 6"):
        spatial.affine_matrices(torch.zeros(2, 5), 2.0, 3.14)
    with pytest.raises(ValueError, match="prefix of its layout"):
        HyperNetwork(4, 8, 1, {"a": (2,), "b": (3,)})(torch.zeros(1, 4), ["b"])
    with pytest.raises(ValueError, match=r"images of shape \(\*B, 1, 16, 16\)"):
        model(torch.rand(2, 1, 10, 10))
    with pytest.raises(ConfigError, match="kind 'rnp'"):
        RNP(tiny_config(model="convvae").model)
    with pytest.raises(CheckpointError, match="no run folder"):
        load_run(tmp_path / "none")
    with pytest.raises(DataError, match="unknown dataset"):
        data.load_images("nope")


def test_a_run_config_json_with_a_wrongly_typed_field_is_named(tiny_config, tmp_path):
    saved = tiny_config().to_dict()
    saved["train"]["batch_size"] = "64"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="batch_size must be a whole number"):
        RunConfig.load(tmp_path / "config.json")


def test_the_model_and_encoder_name_what_images_they_take(pair):
    model, guide = pair
    for wrong, words in ((np.zeros((2, 1, 16, 16)), "torch.Tensor"), ([[0.0]], "torch.Tensor"),
                         (torch.zeros(2, 1, 16, 16, dtype=torch.uint8), r"x.float\(\) / 255")):
        for call in (guide.encode, model):
            with pytest.raises(TypeError, match=words):
                call(wrong)


class Payload:
    """An object a pickle would rebuild, and could run code while doing so."""


def test_a_checkpoint_holding_arbitrary_objects_is_refused_as_unsafe(tiny_config, tmp_path):
    tiny_config().save(tmp_path / "config.json")
    torch.save({"model": Payload()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        load_run(tmp_path)


def test_more_clusters_than_images_is_one_error_line(tmp_path):
    result = CliRunner().invoke(main, ["figures", str(tmp_path), "--images", "10",
                                       "--clusters", "40"])
    one_error_line(result, "40 clusters", "10 images")


def test_starting_from_a_run_of_another_model_names_the_difference(tiny_config, tmp_path):
    strokes = dict(train_set=data.load_images("strokes", image_size=16, limit=64),
                   test_set=data.load_images("strokes", train=False, image_size=16, limit=16))
    source = fit(tiny_config(), tmp_path / "source", max_steps=1, device="cpu", progress=False,
                 **strokes)
    other = tiny_config(z_dim=5, init_from=str(source.path))
    with pytest.raises(ConfigError, match=r"holds another model: z_dim \(6 there, 5 here\)"):
        fit(other, tmp_path / "new", max_steps=1, device="cpu", progress=False, **strokes)


def test_posterior_predictive_checks_and_guides_for_a_run_take_the_same_images(pair, tiny_config,
                                                                              tmp_path):
    from rnp_pyro import ppc
    from rnp_pyro.run import Run, guide_for

    model, guide = pair
    x = torch.rand(3, 1, 16, 16)
    check = ppc.posterior_predictive(model, guide, (x * 255).round().byte(), num_samples=4)
    torch.testing.assert_close(check.observed, (x * 255).round() / 255)
    with pytest.raises(DataError, match="NaN"):
        ppc.posterior_predictive(model, guide, x * float("nan"), num_samples=4)
    with pytest.raises(ValueError, match="num_samples"):
        ppc.posterior_predictive(model, guide, x, num_samples=0)
    run = Run(model, guide, tiny_config(bf16_decoder=False), tmp_path)
    with pytest.raises(ValueError, match="fit_steps"):
        guide_for(run, x, "normal", fit_steps=0)
    with pytest.raises(DataError, match="12x12"):
        guide_for(run, torch.rand(3, 1, 12, 12), "normal")


def test_a_learning_rate_that_breaks_the_model_skips_steps_instead_of_crashing(tmp_path,
                                                                                monkeypatch):
    load_images = data.load_images
    monkeypatch.setattr(data, "load_images",
                        lambda name, **options: load_images(name, **{**options, "limit": 64}))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["fit", "--dataset", "strokes", "--max-steps", "3",
                                       "--lr", "10", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "steps were skipped" in result.output and (out / "checkpoint.pt").exists()


def test_no_images_and_latents_of_the_wrong_size_are_named(pair):
    model, guide = pair
    for call in (model, guide.encode):
        with pytest.raises(ValueError, match=r"no images \(shape \(0, 1, 16, 16\)\)"):
            call(torch.zeros(0, 1, 16, 16))
    z_dim = model.config.z_dim
    with pytest.raises(ValueError, match=rf"latents must have shape \(\*B, {z_dim}\).*\(2, 3\)"):
        model.decode(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="float torch.Tensor"):
        model.decode(torch.zeros(2, z_dim, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size must be a whole number"):
        model(None, batch_size=0)


@pytest.mark.parametrize("case", ["nan", "0..255"])
def test_bad_pixel_values_are_named_while_pyros_validation_is_on(pair, case):
    # checked as Pyro checks a distribution's arguments: in a user's calls, not inside
    # training steps, which turn validation off to read nothing back from the device
    model, guide = pair
    x = torch.rand(2, 1, 16, 16)
    x, words = (x.masked_fill(x > 0.5, float("nan")), "NaN") if case == "nan" else (x * 255, "255")
    for call in (model, guide.encode):
        with pyro.validation_enabled(True), pytest.raises(DataError, match=words):
            call(x)
        with pyro.validation_enabled(False):
            call(x)  # unchecked: no host read


def test_absurd_importance_sample_counts_are_refused_before_any_work(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "none"),
                                       "--iwae-samples", "1000000"])
    one_error_line(result, "1,000,000", "100,000")


def test_a_full_disk_while_checkpointing_is_one_error_naming_space_and_the_last_checkpoint(
        tiny_config, tmp_path, monkeypatch):
    import collections
    import errno
    import os
    import shutil

    from rnp_pyro import folder

    config = tiny_config()
    train = data.load_images("strokes", image_size=16, limit=64)
    test = data.load_images("strokes", train=False, image_size=16, limit=8)
    out = tmp_path / "run"
    options = dict(progress=False, train_set=train, test_set=test, checkpoint_every=1)
    fit(config, out, max_steps=1, **options)
    good = (out / "checkpoint.pt").read_bytes()

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 2000, 2000))
    with pytest.raises(CheckpointError) as caught:
        fit(config, out, max_steps=2, resume=True, **options)
    message = str(caught.value)
    assert f"cannot write the checkpoint {out / 'checkpoint.pt'}" in message
    assert "MB and the disk has 2.0 kB free" in message
    assert "last good checkpoint" in message and "(step 1)" in message and "--resume" in message
    assert sorted(p.name for p in out.glob("*.partial")) == []
    assert (out / "checkpoint.pt").read_bytes() == good

    # the disk fills while the file is written: the partial file goes too
    monkeypatch.undo()

    def full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match="step 1"):
        folder.save_checkpoint(out, folder.read_checkpoint(out))
    assert not (out / ("checkpoint.pt" + folder.PARTIAL_SUFFIX)).exists()
    monkeypatch.undo()
    assert fit(config, out, max_steps=2, resume=True, **options).step == 2
