"""Optuna's hyperparameter importances of each study, from the Optuna study it kept in optuna.db.

`optuna.importance.get_param_importances` (fANOVA, Hutter et al. 2014: the share of the variance
of the objective that each parameter explains, over a random forest fit to the trials) on the
study's COMPLETE trials only, with validation FID (the first objective of a pareto study) as the
target: trials the scheduler stopped are PRUNED in optuna.db, with the FID of the epoch they
stopped at, which is not a final value, and diverged or errored ones are FAIL (docs/search.md).
Only parameters every complete trial has are assessed, so per-architecture widths drop out when
the trials mix architectures. Pure computation here; the bar chart is
analysis.plots.plot_importances.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna
import pandas as pd
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState

from analysis import columns as C
from study import results as R
from study.optuna_storage import load_study

MIN_COMPLETE_TRIALS = 3  # fewer complete trials leave the forest nothing to explain


def param_importances(study, seed: int = 0, min_complete: int = MIN_COMPLETE_TRIALS) -> pd.DataFrame:
    """One row per assessed parameter: PARAMETER, IMPORTANCE (shares summing to 1), most important
    first. Raises ValueError when the study has fewer than `min_complete` complete trials or no
    parameter shared by all of them."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < min_complete:
        raise ValueError(f"{len(complete)} complete trial(s), importances need at least {min_complete}")
    shared = set.intersection(*(set(t.params) for t in complete))
    if not shared:
        raise ValueError("no hyperparameter is shared by every complete trial")
    with _quiet():
        shares = optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=seed), params=sorted(shared),
            target=lambda t: t.values[0], normalize=True)
    frame = pd.DataFrame({C.PARAMETER: list(shares), C.IMPORTANCE: [float(v) for v in shares.values()]})
    return frame.sort_values(C.IMPORTANCE, ascending=False, ignore_index=True)


class _quiet:
    """Optuna's logging at warning level for the duration (importances log per call)."""

    def __enter__(self):
        self.level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    def __exit__(self, *exc):
        optuna.logging.set_verbosity(self.level)


def study_importances(study_dirs: Sequence[str | Path], trials: pd.DataFrame,
                      seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Importances of every study that kept an Optuna study: rows of STUDY, FAMILY, PARAMETER,
    IMPORTANCE, N_TRIALS (complete trials behind them); and a note per study skipped."""
    frames, notes = [], []
    for directory in study_dirs:
        study = load_study(directory)
        if study is None:
            notes.append(f"{Path(directory).name}: no {R.OPTUNA_DB} (a study launched before Optuna's "
                         "storage was kept, or not by study.launch): importances skipped.")
            continue
        rows = trials[trials[R.STUDY] == study.study_name]
        family = str(rows[R.FAMILY].iloc[0]) if len(rows) else ""
        try:
            frame = param_importances(study, seed=seed)
        except (ValueError, RuntimeError) as exc:
            notes.append(f"{study.study_name}: {exc}: importances skipped.")
            continue
        n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        frames.append(frame.assign(**{R.STUDY: study.study_name, R.FAMILY: family, C.N_TRIALS: n}))
    columns = [R.STUDY, R.FAMILY, C.PARAMETER, C.IMPORTANCE, C.N_TRIALS]
    table = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    return table, notes
