"""docs/tutorial.ipynb is stored without outputs and runs from top to bottom (nbclient, the python3 kernel)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_the_tutorial_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_the_tutorial_runs_and_its_networks_learn(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.outputs if output.get("output_type") == "stream")
    images = sum("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
                 for output in cell.outputs)
    assert images >= 5
    scores = re.search(r"before the update ([\d.]+), after one e-prop update ([\d.]+)", text)
    before, after = map(float, scores.groups())
    assert after < before
    first, last = map(float, re.search(r"e-prop 1 on your task: loss ([\d.]+) -> ([\d.]+)", text).groups())
    assert last < 0.1 * first
    finals = {k: float(v) for k, v in re.findall(r"'([a-z ]+)': ([\d.]+)", text)}
    assert finals.keys() == {"eprop symmetric", "eprop random", "bptt"} and max(finals.values()) < 1.0
