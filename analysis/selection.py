"""The selection rule, in one place: validation chooses, test only describes what was chosen.

Every choice in analysis/ (each family's best trial, Pareto membership, the trial behind a
budget point, the best replicated configuration) goes through `SELECT` and these helpers, so
the rule can be swapped for study/results.py's shared constant in one line.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd

from analysis import columns as C
from study import results as R
from study.quality_gate import is_seed_config  # noqa: F401  (one rule: the search's scoring uses it too)

SELECT = R.SELECTION_METRIC  # the best trial is the lowest final validation FID (the reported model)


def selection_values(frame: pd.DataFrame, select: str = SELECT) -> np.ndarray:
    """`select` as floats where a trial without a finite value (diverged, errored) is +inf: worst."""
    values = frame[select].to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(values), values, np.inf)


def best_label(frame: pd.DataFrame, select: str = SELECT) -> Hashable | None:
    """Index label of the row with the lowest finite `select` (the first on ties), or None: the
    study's own selection rule (study.results.best_trial) on any validation column."""
    best = R.best_trial(frame, select)
    return None if best is None else best.name


def group_column(frame: pd.DataFrame) -> str:
    """The column rows are compared by: C.GROUP when loaded rows have it, else the family."""
    return C.GROUP if C.GROUP in frame else R.FAMILY


def family_of(frame: pd.DataFrame) -> dict[str, str]:
    """Each group's family (a group is a family, or a study of one)."""
    by = group_column(frame)
    return {str(g): str(f) for g, f in frame[[by, R.FAMILY]].drop_duplicates().itertuples(index=False)}


def best_per_group(frame: pd.DataFrame, by: str, select: str = SELECT) -> dict[str, Hashable]:
    """Per group, the index label of its best row (groups without a finite value are left out)."""
    best = {}
    for name, group in frame.groupby(by, sort=True):
        label = best_label(group, select)
        if label is not None:
            best[str(name)] = label
    return best
