"""Which family wins on which axis, and at what budget (pure functions over the trials frame).

Axes:
- quality: test FID of each family's best trial, the one selected on validation FID;
- size / time / all three trade-offs: hypervolume of each family's trials in the plane (or
  space) of FID vs total parameters and/or training seconds. Sizes and times span decades, so
  they enter as log10; every objective is then min-max scaled over both families together and
  the reference point is 1.1 in each, so volumes are comparable across families and in [0, 1.1^d].
  A larger volume means the family's Pareto front reaches better trade-offs;
- training speed: median images per second (higher is better);
- budget: the family with the lower expected best FID at each number of trials k (budget.py);
  'clear' when its bootstrap band lies entirely below the others'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import columns as C
from analysis.budget import BudgetCurve
from analysis.pareto import MINIMIZE, Objective, hypervolume_of_points
from analysis.tables import best_trials
from study import results as R

AXIS_QUALITY = "quality"
AXIS_SIZE = "size vs quality"
AXIS_TIME = "training time vs quality"
AXIS_ALL = "size, time and quality"
AXIS_SPEED = "training speed"
LOWER = "lower"
HIGHER = "higher"
NORMALISED_REFERENCE = 1.1


@dataclass(frozen=True)
class AxisVerdict:
    axis: str
    measure: str  # what was compared
    better: str  # LOWER or HIGHER
    values: tuple[tuple[str, float], ...]  # (family, value), families sorted
    winner: str | None  # None: fewer than two families with a value, or a tie


@dataclass(frozen=True)
class BudgetPoint:
    budget: int
    expected_best: tuple[tuple[str, float], ...]
    winner: str | None
    clear: bool  # the winner's band lies entirely below every other family's band


@dataclass(frozen=True)
class Verdict:
    axes: tuple[AxisVerdict, ...]
    budget: tuple[BudgetPoint, ...]
    summary: tuple[str, ...]  # one sentence per axis, plus the budget sentence


def _winner(values: Sequence[tuple[str, float]], better: str) -> str | None:
    finite = [(f, v) for f, v in values if np.isfinite(v)]
    if len(finite) < 2:
        return None
    pick = min if better == LOWER else max
    best = pick(v for _, v in finite)
    winners = [f for f, v in finite if np.isclose(v, best, rtol=1e-9, atol=0.0)]
    return winners[0] if len(winners) == 1 else None


def normalised_hypervolumes(trials: pd.DataFrame, objectives: Sequence[Objective],
                            log_columns: Sequence[str] = (R.PARAMS_TOTAL, R.TRAIN_SECONDS)) -> dict[str, float]:
    """Per family, the hypervolume of its rows after log10 (for `log_columns`) and min-max scaling
    over all families' finite rows; reference 1.1 in every objective. Minimised objectives only."""
    if any(o.direction != MINIMIZE for o in objectives):
        raise ValueError("normalised_hypervolumes takes minimised objectives only.")
    values = trials[[o.column for o in objectives]].to_numpy(dtype=float, na_value=np.nan, copy=True)
    for j, o in enumerate(objectives):
        if o.column in log_columns:
            with np.errstate(divide="ignore", invalid="ignore"):
                values[:, j] = np.where(values[:, j] > 0, np.log10(values[:, j]), np.nan)
    finite = np.isfinite(values).all(axis=1)
    if not finite.any():
        return {}
    low, high = values[finite].min(axis=0), values[finite].max(axis=0)
    scaled = (values - low) / np.where(high > low, high - low, 1.0)
    reference = np.full(len(objectives), NORMALISED_REFERENCE)
    families = trials[R.FAMILY].to_numpy()
    return {str(f): hypervolume_of_points(scaled[finite & (families == f)], reference)
            for f in sorted(set(families[finite]))}


def decide(trials: pd.DataFrame, curves: Mapping[str, BudgetCurve], quality: str = R.TEST_FID,
           select: str = R.FINAL_VAL_FID) -> Verdict:
    families = sorted(map(str, trials[R.FAMILY].dropna().unique()))
    best = best_trials(trials, select)
    axes = [AxisVerdict(
        AXIS_QUALITY, f"{quality} of the trial with the lowest {select}", LOWER,
        tuple((f, float(trials.loc[best[f], quality]) if f in best else float("nan")) for f in families), None)]
    fid = Objective(quality, MINIMIZE)
    for axis, objectives in ((AXIS_SIZE, (fid, Objective(R.PARAMS_TOTAL))), (AXIS_TIME, (fid, Objective(R.TRAIN_SECONDS))),
                             (AXIS_ALL, (fid, Objective(R.PARAMS_TOTAL), Objective(R.TRAIN_SECONDS)))):
        volumes = normalised_hypervolumes(trials, objectives)
        names = ", ".join(o.column for o in objectives)
        axes.append(AxisVerdict(axis, f"normalised hypervolume of ({names})", HIGHER,
                                tuple((f, volumes.get(f, float("nan"))) for f in families), None))
    speed = trials.groupby(R.FAMILY)[R.IMAGES_PER_S].median() if R.IMAGES_PER_S in trials else pd.Series(dtype=float)
    axes.append(AxisVerdict(AXIS_SPEED, f"median {R.IMAGES_PER_S} over trials", HIGHER,
                            tuple((f, float(speed.get(f, np.nan))) for f in families), None))
    axes = tuple(AxisVerdict(a.axis, a.measure, a.better, a.values, _winner(a.values, a.better)) for a in axes)
    budget = budget_points(curves)
    return Verdict(axes=axes, budget=budget, summary=tuple(_sentence(a) for a in axes) + (budget_sentence(budget),))


def budget_points(curves: Mapping[str, BudgetCurve]) -> tuple[BudgetPoint, ...]:
    """At each budget every family reaches (k up to the smallest study), who has the lower expected best."""
    if len(curves) < 2:
        return ()
    shared = sorted(set.intersection(*(set(c.budgets) for c in curves.values())))
    points = []
    for k in shared:
        at = {f: c.budgets.index(k) for f, c in curves.items()}
        expected = tuple((f, curves[f].expected_best[at[f]]) for f in sorted(curves))
        winner = _winner(expected, LOWER)
        clear = winner is not None and all(curves[winner].high[at[winner]] < curves[f].low[at[f]]
                                           for f in curves if f != winner)
        points.append(BudgetPoint(k, expected, winner, clear))
    return tuple(points)


def _sentence(axis: AxisVerdict) -> str:
    shown = " vs ".join(f"{f.upper()} {v:.4g}" for f, v in axis.values)
    if axis.winner is None:
        return f"{axis.axis}: no winner ({shown}; {axis.measure}, {axis.better} is better)."
    return f"{axis.axis}: {axis.winner.upper()} wins ({shown}; {axis.measure}, {axis.better} is better)."


def budget_sentence(points: Sequence[BudgetPoint]) -> str:
    """Runs of equal winners, e.g. 'k = 1-3: VAE (clear from k = 2); k = 4-8: GAN'."""
    if not points:
        return "budget: not compared (needs two families with finite FIDs)."
    runs: list[list[BudgetPoint]] = []
    for p in points:
        if runs and runs[-1][-1].winner == p.winner:
            runs[-1].append(p)
        else:
            runs.append([p])
    parts = []
    for run in runs:
        span = f"k = {run[0].budget}" + (f"-{run[-1].budget}" if len(run) > 1 else "")
        who = run[0].winner.upper() if run[0].winner else "tie"
        clear = [p.budget for p in run if p.clear]
        detail = f" (bands separate at k = {', '.join(map(str, clear))})" if clear else " (bootstrap bands overlap)"
        parts.append(f"{span}: {who}{detail if run[0].winner else ''}")
    return ("budget: lower expected best FID with k trials, " + "; ".join(parts) + ".")


def verdict_table(verdict: Verdict) -> pd.DataFrame:
    """One row per axis: what was compared, each family's value, the winner."""
    rows = []
    for a in verdict.axes:
        row = {C.AXIS: a.axis, C.MEASURE: f"{a.measure} ({a.better} is better)"}
        row.update({family: value for family, value in a.values})
        row[C.WINNER] = a.winner or "none"
        rows.append(row)
    return pd.DataFrame(rows)
