"""Trade-off axes compared fairly: hypervolumes of usable trials, at equal trial counts, against a
reference point fixed by the protocol rather than by whatever was run (pure functions).

Why: a hypervolume grows with the number of trials, and min-max scaling over the trials run
lets a study of cheap failures define the box it wins in (issue 9). Here:
- only trials that pass `analysis.quality.is_usable` count (validation FID, never test);
- sizes and times span decades, so they enter as log10 (the volume's units are FID x decades);
- the reference point is (FID bound, PARAMS_FACTOR x the largest seed configuration's parameter
  count, SECONDS_FACTOR x the time the slowest seed configuration needs for the protocol's max
  epochs). The FID bound is the quality threshold itself (the largest of the compared studies'
  bounds), so a trial at the threshold adds nothing. The factor 20 covers the search space's
  widest networks (width x4 is about x16 parameters and time) with room to spare;
- two groups are compared at n = the smaller group's trial count: the estimate is the mean
  difference over `resamples` draws of n trials without replacement from each group (the
  smaller group is then always whole), and the 95 % interval is the percentile interval of the
  difference over `resamples` bootstrap draws of n trials with replacement from each group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis import columns as C
from analysis.pareto import MINIMIZE, Objective, hypervolume_of_points
from analysis.quality import seed_mask, study_fid_bound
from analysis.selection import SELECT
from analysis.stats import Interval, percentile_interval
from study import results as R

PARAMS_FACTOR = 20.0
SECONDS_FACTOR = 20.0
LOG_COLUMNS = (R.PARAMS_TOTAL, R.TRAIN_SECONDS)
DEFAULT_RESAMPLES = 2000


class Comparison(NamedTuple):
    n: int  # trials per group in every draw
    volumes: tuple[float, float]  # mean equal-count volume of each group
    difference: Interval  # first minus second, with the bootstrap interval


def _seed_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """The seed configurations (all rows when there are none, so a bound still exists)."""
    seeds = trials[seed_mask(trials).to_numpy()]
    return seeds if len(seeds) else trials


def reference_point(trials: pd.DataFrame, select: str = SELECT) -> dict[str, float]:
    """{column: bound} for the FID column `select`, total parameters and training seconds."""
    seeds = _seed_rows(trials)
    bounds = [b for b in study_fid_bound(trials, select).values() if np.isfinite(b)]
    params = seeds[R.PARAMS_TOTAL].to_numpy(dtype=float, na_value=np.nan)
    seconds = seeds[R.TRAIN_SECONDS].to_numpy(dtype=float, na_value=np.nan)
    epochs = seeds[R.EPOCHS_RUN].to_numpy(dtype=float, na_value=np.nan)
    planned = trials[R.hp_column("epochs")] if R.hp_column("epochs") in trials else trials[R.EPOCHS_RUN]
    max_epochs = float(np.nanmax(planned.to_numpy(dtype=float, na_value=np.nan)))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_epoch = np.where(epochs > 0, seconds / epochs, np.nan)
    return {select: max(bounds) if bounds else float("nan"),
            R.PARAMS_TOTAL: PARAMS_FACTOR * float(np.nanmax(params)) if np.isfinite(params).any() else np.nan,
            R.TRAIN_SECONDS: (SECONDS_FACTOR * float(np.nanmax(per_epoch)) * max_epochs
                              if np.isfinite(per_epoch).any() else np.nan)}


def _points(rows: pd.DataFrame, objectives: Sequence[Objective], reference: dict[str, float]):
    """Minimisation points (log10 where due) of the usable rows, and the reference in the same space."""
    if any(o.direction != MINIMIZE for o in objectives):
        raise ValueError("trade-off hypervolumes take minimised objectives only.")
    usable = rows[C.USABLE].to_numpy(dtype=bool) if C.USABLE in rows else np.ones(len(rows), dtype=bool)
    points = rows[[o.column for o in objectives]].to_numpy(dtype=float, na_value=np.nan, copy=True)
    ref = np.array([reference[o.column] for o in objectives], dtype=float)
    for j, o in enumerate(objectives):
        if o.column in LOG_COLUMNS:
            with np.errstate(divide="ignore", invalid="ignore"):
                points[:, j] = np.where(points[:, j] > 0, np.log10(points[:, j]), np.nan)
            ref[j] = np.log10(ref[j])
    keep = usable & np.isfinite(points).all(axis=1)
    return points, keep, ref


def _volume(points: np.ndarray, keep: np.ndarray, ref: np.ndarray) -> float:
    inside = keep & (points < ref).all(axis=1)
    return hypervolume_of_points(points[inside], ref)


def volume(rows: pd.DataFrame, objectives: Sequence[Objective], reference: dict[str, float]) -> float:
    """Hypervolume of the usable rows against the fixed reference (0 when none is inside it)."""
    points, keep, ref = _points(rows, objectives, reference)
    return _volume(points, keep, ref) if np.isfinite(ref).all() else float("nan")


def mean_volume(rows: pd.DataFrame, n: int, objectives: Sequence[Objective], reference: dict[str, float],
                resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> float:
    """Mean hypervolume of n of the rows drawn without replacement (exact when n is all of them)."""
    points, keep, ref = _points(rows, objectives, reference)
    if n == 0 or not np.isfinite(ref).all():
        return float("nan")
    if n >= len(rows):
        return _volume(points, keep, ref)
    rng = np.random.default_rng(seed)
    draws = [rng.choice(len(rows), size=n, replace=False) for _ in range(resamples)]
    return float(np.mean([_volume(points[i], keep[i], ref) for i in draws]))


def compare(a: pd.DataFrame, b: pd.DataFrame, objectives: Sequence[Objective], reference: dict[str, float],
            resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95) -> Comparison:
    """Equal-count hypervolume difference a - b (module docstring), with its bootstrap interval."""
    n = min(len(a), len(b))
    pa, ka, ref = _points(a, objectives, reference)
    pb, kb, _ = _points(b, objectives, reference)
    if n == 0 or not np.isfinite(ref).all():
        nan = float("nan")
        return Comparison(n, (nan, nan), Interval(nan, nan, nan, n))
    rng = np.random.default_rng(seed)

    def draw(points, keep, replace):
        idx = rng.choice(len(points), size=n, replace=replace)
        return _volume(points[idx], keep[idx], ref)

    def mean_at_n(points, keep):  # a group of exactly n trials is always drawn whole
        if len(points) == n:
            return _volume(points, keep, ref)
        return float(np.mean([draw(points, keep, False) for _ in range(resamples)]))

    va, vb = mean_at_n(pa, ka), mean_at_n(pb, kb)
    boot = np.array([draw(pa, ka, True) - draw(pb, kb, True) for _ in range(resamples)])
    return Comparison(n, (va, vb), percentile_interval(va - vb, boot, n, level))
