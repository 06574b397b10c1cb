"""Real training progress: the fashion preset on real Fashion-MNIST images."""

import pytest
import torch

import rnp_pyro
from rnp_pyro.data import DEBIAN_FASHION_MNIST, load_images

pytestmark = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")


def test_fashion_preset_learns_to_reconstruct(tmp_path):
    torch.manual_seed(0)
    train = load_images("fashion", train=True, limit=9600)
    test = load_images("fashion", train=False, limit=1000)
    cfg = rnp_pyro.presets.get("fashion", lr=1e-3)
    untrained = rnp_pyro.evaluate(*rnp_pyro.run.build(cfg), test.images)

    run = rnp_pyro.fit(cfg, tmp_path, max_steps=150, progress=False,
                       train_set=train, test_set=test)
    trained = rnp_pyro.evaluate(run.model, run.guide, test.images)

    # Predicting the mean image gives about 0.09; an untrained tree draws almost nothing.
    assert untrained["mse_per_pixel"] > 0.15
    assert trained["mse_per_pixel"] < 0.07
    assert trained["elbo_nats_per_image"] > untrained["elbo_nats_per_image"] + 500
    parts = run.model.decode(run.guide.encode(test.images[:4])[0]).levels[1].placed
    assert (parts.flatten(2).amax(-1) > 0.05).all(), "every part draws something"
