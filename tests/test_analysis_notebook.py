"""The walk-through notebook runs end to end (nbclient) against the fixture studies."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "analysis" / "notebooks" / "pareto_fronts.ipynb"


def test_pareto_notebook_executes_against_the_fixture_studies(tiny_study_dirs, monkeypatch):
    monkeypatch.setenv("PARETO_STUDY_DIRS", os.pathsep.join([str(tiny_study_dirs.gan), str(tiny_study_dirs.vae)]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    assert not [o for cell in outputs.values() for o in cell if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for cell in outputs.values() for o in cell)
    assert "gan: front ['gan_" in text and "vae: front ['vae_" in text
    assert "1 without a finite value" in text  # the errored GAN / the diverged VAE, counted not dropped
    assert sum("image/png" in o.get("data", {}) for cell in outputs.values() for o in cell) == 2
    assert "quality:" in text and "budget:" in text
