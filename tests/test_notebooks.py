"""The example notebooks run from top to bottom, on a tiny model."""

import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from rnp_pyro import data
from rnp_pyro.train import fit

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_posterior_predictive_notebook(tmp_path, monkeypatch, tiny_config):
    cfg = tiny_config()
    size = cfg.model.image_size
    fit(cfg, tmp_path / "run", max_steps=3, device="cpu", progress=False,
        train_set=data.load_images("strokes", image_size=size, limit=64),
        test_set=data.load_images("strokes", train=False, image_size=size, limit=16))
    monkeypatch.setenv("RNP_PPC_RUN", str(tmp_path / "run"))
    monkeypatch.setenv("RNP_PPC_IMAGES", "8")
    monkeypatch.setenv("RNP_PPC_SAMPLES", "30")  # ArviZ 1.x's LOO needs 25 draws or more

    notebook = nbformat.read(EXAMPLES / "posterior_predictive.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    text = "".join(output.get("text", "") for cell in notebook.cells
                   for output in cell.get("outputs", []))
    assert "strokes: 8 test images, 30 replicas each" in text
    assert "LOO expected log predictive density" in text
    assert "edge_energy" in text and "part_mass" in text
    assert (tmp_path / "ppc_images.png").stat().st_size > 500
    assert (tmp_path / "ppc_statistics.png").stat().st_size > 1000


def test_every_example_script_explains_itself_with_help():
    for script in sorted(EXAMPLES.glob("*.py")):
        done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.startswith("usage:"), (script, done.stderr)
