"""The example notebooks run from top to bottom, as a user opens them."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from rnp_pyro import data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_posterior_predictive_notebook_runs_on_the_shipped_model(tmp_path, monkeypatch):
    # as a user opens it, in a folder of its own with no run in it: the shipped model
    try:
        data.load_images("fashion", train=False, limit=1, download=False)
    except data.DataError:
        pytest.skip("the notebook reads Fashion-MNIST's test images: apt-get install "
                    "dataset-fashion-mnist (as .ci/run does)")
    for name in ("RNP_PPC_RUN", "RNP_PPC_IMAGES", "RNP_PPC_SAMPLES"):
        monkeypatch.delenv(name, raising=False)
    notebook = nbformat.read(EXAMPLES / "posterior_predictive.ipynb", as_version=4)
    sources = "".join(cell.source for cell in notebook.cells)
    assert "catch_warnings" not in sources and "simplefilter" not in sources
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    text = "".join(output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
                   for cell in notebook.cells for output in cell.get("outputs", []))
    assert "fashion: 32 test images, 100 replicas each" in text
    assert "edge_energy" in text and "deviance" in text and "part_mass" in text
    assert "untrained" in text and "elpd_diff" in text
    for name in ("images.png", "p_values.png", "statistics.png"):
        assert (tmp_path / "runs" / "pretrained-fashion" / "ppc" / name).stat().st_size > 500


def test_every_example_script_explains_itself_with_help():
    for script in sorted(EXAMPLES.glob("*.py")):
        done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.startswith("usage:"), (script, done.stderr)
