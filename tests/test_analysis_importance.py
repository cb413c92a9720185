"""Optuna's parameter importances per study (analysis.importance) and their bar chart."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
from PIL import Image

from analysis import columns as C
from analysis.importance import MIN_COMPLETE_TRIALS, param_importances, study_importances
from analysis.plots import plot_importances
from study import results as R
from study.optuna_storage import open_storage


def write_study(study_dir, name: str, n_trials: int, fail_every: int = 0) -> None:
    """A real Optuna study in <study_dir>/optuna.db (as the launcher keeps it): validation FID
    depends strongly on lr, barely on batch_size, not at all on noise."""
    study_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=open_storage(str(study_dir)), study_name=name,
                                sampler=optuna.samplers.RandomSampler(seed=1))

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        batch = trial.suggest_categorical("batch_size", [64, 128])
        trial.suggest_float("noise", 0.0, 1.0)
        if fail_every and trial.number % fail_every == 0:
            raise optuna.TrialPruned()
        return 100 * (math.log10(lr) + 3) ** 2 + 0.5 * (batch == 64)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials)


def trials_of(name: str, family: str) -> pd.DataFrame:
    return pd.DataFrame({R.STUDY: [name], R.FAMILY: [family]})


def test_the_parameter_that_drives_validation_fid_comes_first(tmp_path):
    write_study(tmp_path / "s", "s", n_trials=30)
    frame = param_importances(optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s/optuna.db"))
    assert list(frame.columns) == [C.PARAMETER, C.IMPORTANCE]
    assert set(frame[C.PARAMETER]) == {"lr", "batch_size", "noise"}
    assert frame[C.PARAMETER].iloc[0] == "lr" and frame[C.IMPORTANCE].iloc[0] > 0.8
    assert frame[C.IMPORTANCE].sum() == pytest.approx(1.0)
    assert frame[C.IMPORTANCE].is_monotonic_decreasing


def test_studies_without_a_database_or_enough_complete_trials_are_skipped_with_a_note(tmp_path):
    write_study(tmp_path / "gan-a", "gan-a", n_trials=12)
    write_study(tmp_path / "vae-b", "vae-b", n_trials=MIN_COMPLETE_TRIALS, fail_every=2)  # 1 complete
    (tmp_path / "old").mkdir()
    trials = pd.concat([trials_of("gan-a", "gan"), trials_of("vae-b", "vae")])
    table, notes = study_importances([tmp_path / "gan-a", tmp_path / "vae-b", tmp_path / "old"], trials)
    assert list(table.columns) == [R.STUDY, R.FAMILY, C.PARAMETER, C.IMPORTANCE, C.N_TRIALS]
    assert set(table[R.STUDY]) == {"gan-a"} and set(table[R.FAMILY]) == {"gan"}
    assert set(table[C.N_TRIALS]) == {12}
    assert len(notes) == 2
    assert notes[0].startswith("vae-b: 1 complete trial(s)") and "skipped" in notes[0]
    assert notes[1].startswith("old: no optuna.db")
    path = plot_importances(table, tmp_path / "fig" / "importances.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= 300
