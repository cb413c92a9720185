"""The walk-through notebook runs end to end (nbclient) against studies made by the real launcher."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from analysis.load import load_studies
from analysis.pareto import Objective, pareto_front
from analysis.quality import is_usable
from study import results as R

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "analysis" / "notebooks" / "pareto_fronts.ipynb"


@pytest.mark.slow  # launched_studies: two real launcher runs (Ray)
def test_pareto_notebook_executes_against_launched_studies(launched_studies, monkeypatch):
    dirs = [launched_studies.gan, launched_studies.vae]
    monkeypatch.setenv("PARETO_STUDY_DIRS", os.pathsep.join(map(str, dirs)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = {
        i: cell.get("outputs", []) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
    }
    assert not [o for cell in outputs.values() for o in cell if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for cell in outputs.values() for o in cell)

    # the notebook prints exactly what the library computes from the same files
    trials = load_studies(dirs).trials
    usable = is_usable(trials)
    for family, group in trials.groupby(R.FAMILY):  # validation chooses: fronts of usable trials on val FID
        front = pareto_front(
            group[usable[group.index]], (Objective(R.FINAL_VAL_FID), Objective(R.PARAMS_TOTAL))
        )
        # a front exactly when the family has a usable trial (smoke trials may cover too few classes)
        assert bool(front.front) == bool(usable[group.index].any()), f"{family}: front vs usable trials"
        ids = list(trials.loc[list(front.front), R.TRIAL_ID])
        assert (
            f"{family}: front {ids}, {len(front.dominated)} dominated, "
            f"{len(front.excluded)} without a finite value"
        ) in text
    assert sum("image/png" in o.get("data", {}) for cell in outputs.values() for o in cell) == 2
    assert "quality:" in text and "budget:" in text
