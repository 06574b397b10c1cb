"""Pretrained models shipped with the package."""

import pytest

import rnp_pyro
from rnp_pyro import data, hub
from rnp_pyro.errors import ConfigError
from rnp_pyro.metrics import evaluate
from rnp_pyro.run import test_images as first_test_images


def test_an_exported_run_loads_offline_with_its_config_and_test_mse(tmp_path, tiny_config):
    config = tiny_config()
    size = config.model.image_size
    train = data.load_images("strokes", image_size=size, limit=128)
    test = data.load_images("strokes", train=False, image_size=size, limit=64)
    run = rnp_pyro.fit(config, tmp_path / "run", max_steps=4, progress=False,
                       train_set=train, test_set=test)
    path = hub.export(run.path, "tiny", folder=tmp_path / "weights")
    assert hub.names(tmp_path / "weights") == ["tiny"]
    shipped = hub.pretrained("tiny", folder=tmp_path / "weights")
    assert shipped.config == run.config and shipped.step == 4
    assert not shipped.model.training and path.stat().st_size < 0.6 * _full_size(run)
    images = first_test_images(run.config, limit=hub.CHECK_IMAGES)
    mse = evaluate(shipped.model, shipped.guide, images)["mse_per_pixel"]
    assert f"{mse:.3g}" == f"{shipped.metrics['check_mse']:.3g}"
    assert list(shipped.metrics)[:3] == ["epoch", "step", "train_elbo"]  # metrics.csv's names
    with pytest.raises(ConfigError, match="no pretrained model 'nope'.*tiny"):
        hub.pretrained("nope", folder=tmp_path / "weights")


def _full_size(run):
    return 4 * sum(t.numel() for m in (run.model, run.guide) for t in m.state_dict().values())


@pytest.mark.skipif(
    not (data.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
@pytest.mark.parametrize("name", hub.names())
def test_each_shipped_fashion_model_reproduces_its_long_runs_test_mse(name):
    run = rnp_pyro.pretrained(name)
    assert (run.config.data.dataset, run.config.model.taus, run.epoch) == ("fashion", (4, 4), 30)
    images = first_test_images(run.config, limit=run.metrics["check_images"])
    mse = evaluate(run.model, run.guide, images)["mse_per_pixel"]
    assert f"{mse:.3g}" == f"{run.metrics['check_mse']:.3g}"
    assert run.metrics["test_mse"] < 0.02  # the whole test set, as the long run ended


def test_each_shipped_model_has_a_card_whose_numbers_are_its_stored_metrics():
    from rnp_pyro.folder import METRICS_COLUMNS

    for name in hub.names():
        run = rnp_pyro.pretrained(name)
        assert list(run.metrics) == [*METRICS_COLUMNS, "check_mse", "check_images"]
        assert run.metrics["train_elbo"] > 0 and run.metrics["test_elbo"] > 0  # ELBOs, not losses
        card = (hub.WEIGHTS_DIR / f"{name}.md").read_text()
        rows = [line.split("|") for line in card.splitlines() if line.startswith("| ")]
        quoted = {cells[1].split()[0]: cells[2].strip() for cells in rows
                  if cells[1].split()[0] in run.metrics}
        assert set(quoted) == {"test_mse", "test_elbo", "train_elbo", "check_mse"}
        for key, text in quoted.items():
            decimals = len(text.partition(".")[2])
            assert text == f"{run.metrics[key]:.{decimals}f}", key
        assert f"({run.step:,} steps" in card and f"{run.epoch} epochs" in card
