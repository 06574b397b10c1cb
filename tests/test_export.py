"""The exported generative model runs with PyTorch alone and draws what the model draws."""

import json
import subprocess
import sys

import pytest
import torch

from rnp_pyro.errors import ConfigError
from rnp_pyro.export import DESCRIPTION_FILE, export_generator
from rnp_pyro.run import build

# run in a fresh interpreter where importing rnp_pyro or pyro fails
_WITHOUT_THE_LIBRARY = """
import sys
sys.modules["rnp_pyro"] = None
sys.modules["pyro"] = None
import torch
program, z, out = sys.argv[1:]
extra = {"rnp_pyro.json": ""}
generator = torch.export.load(program, extra_files=extra).module()
torch.save({"outputs": generator(torch.load(z)), "description": extra["rnp_pyro.json"]}, out)
"""


@pytest.mark.parametrize("kind", ["rnp", "convvae"])
def test_the_exported_generator_draws_the_models_canvases_and_tree_without_the_library(
        tmp_path, tiny_config, kind):
    torch.manual_seed(0)
    model, _ = build(tiny_config(model=kind))
    model.eval()
    path = export_generator(model, tmp_path / "model.pt2")
    z = torch.randn(5, model.config.z_dim)  # another batch size than the traced one
    torch.save(z, tmp_path / "z.pt")
    subprocess.run([sys.executable, "-c", _WITHOUT_THE_LIBRARY, str(path), str(tmp_path / "z.pt"),
                    str(tmp_path / "out.pt")], check=True, timeout=300)
    result = torch.load(tmp_path / "out.pt")
    outputs, description = result["outputs"], json.loads(result["description"])

    with torch.no_grad():
        tree = model.decode(z, stochastic=False)
    expected = [tree.canvas]
    for level in tree.levels[1:]:
        expected += [level.latents, level.actions, level.placed]
    assert len(outputs) == len(expected) == len(description["outputs"])
    for got, want in zip(outputs, expected):
        torch.testing.assert_close(got, want)
    assert description["z_dim"] == model.config.z_dim
    assert description["image_shape"] == list(model.config.image_shape)


def test_an_export_needs_a_pt2_file_name(tmp_path, tiny_config):
    model, _ = build(tiny_config())
    with pytest.raises(ConfigError, match="model.pt2"):
        export_generator(model, tmp_path / "model.pt")
    assert DESCRIPTION_FILE == "rnp_pyro.json"
