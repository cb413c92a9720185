"""Pareto fronts and hypervolumes over any objectives and directions (pure functions).

Definitions (Deb 2001, "Multi-Objective Optimization using Evolutionary Algorithms", Sec. 2.4):
row a dominates row b when a is no worse than b in every objective and strictly better in at
least one. The front is the set of rows no other row dominates. Consequences, on purpose:
- ties in one objective are broken by the others (equal FID, fewer parameters dominates);
- exact duplicates (equal in every objective) do not dominate each other, so all copies are on
  the front together, or all are dominated;
- a row with a NaN or +-inf objective is never compared: it is excluded and reported, not
  silently dropped (a diverged trial has no FID; an errored one may have no size).
Dominance itself is study.results.non_dominated, the one mask the study's own choices use too.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from study import results as R

MINIMIZE = "min"
MAXIMIZE = "max"


class Objective(NamedTuple):
    column: str
    direction: str = MINIMIZE


@dataclass(frozen=True)
class ParetoFront:
    objectives: tuple[Objective, ...]
    front: tuple[Hashable, ...]  # index labels of non-dominated rows, in the frame's order
    dominated: tuple[Hashable, ...]
    excluded: tuple[Hashable, ...]  # rows with a NaN/inf objective, compared with nothing


class Hypervolume(NamedTuple):
    volume: float  # in the objectives' own units (product of their ranges)
    reference: tuple[float, ...]  # in the objectives' own units and directions
    n_counted: int  # finite rows strictly better than the reference in every objective
    n_beyond_reference: int  # finite rows that are not, and add nothing
    n_excluded: int  # rows with a NaN/inf objective


def _check(frame: pd.DataFrame, objectives: Sequence[Objective]) -> tuple[Objective, ...]:
    objectives = tuple(Objective(*o) if not isinstance(o, Objective) else o for o in objectives)
    if not objectives:
        raise ValueError("give at least one objective, e.g. Objective('test_fid', 'min').")
    for o in objectives:
        if o.direction not in (MINIMIZE, MAXIMIZE):
            raise ValueError(f"objective {o.column!r}: direction {o.direction!r} must be {MINIMIZE!r} "
                             f"or {MAXIMIZE!r}.")
        if o.column not in frame.columns:
            raise ValueError(f"objective {o.column!r} is not a column; available: "
                             f"{sorted(map(str, frame.columns))}.")
    return objectives


def _signs(objectives: Sequence[Objective]) -> np.ndarray:
    """+1 for a minimised objective, -1 for a maximised one: multiplying turns every one into a minimum."""
    return np.array([1.0 if o.direction == MINIMIZE else -1.0 for o in objectives])


def as_minimization(frame: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """[n_rows, n_objectives] float array where smaller is better in every column."""
    objectives = _check(frame, objectives)
    values = frame[[o.column for o in objectives]].to_numpy(dtype=float, na_value=np.nan)
    return values * _signs(objectives)


def pareto_front(frame: pd.DataFrame, objectives: Sequence[Objective]) -> ParetoFront:
    """The non-dominated rows of `frame` under `objectives`; NaN/inf rows excluded and listed."""
    objectives = _check(frame, objectives)
    points = as_minimization(frame, objectives)
    finite = np.isfinite(points).all(axis=1)
    on_front = R.non_dominated(points) if len(points) else np.zeros(0, dtype=bool)  # NaN/inf rows: off
    labels = frame.index
    return ParetoFront(
        objectives=objectives,
        front=tuple(labels[on_front]),
        dominated=tuple(labels[finite & ~on_front]),
        excluded=tuple(labels[~finite]),
    )


def hypervolume(frame: pd.DataFrame, objectives: Sequence[Objective],
                reference: Sequence[float]) -> Hypervolume:
    """Volume of objective space dominated by the rows and bounded by `reference` (Zitzler &
    Thiele 1998, the S metric). Exact for any number of objectives by slicing; meant for the small
    sets a study produces (cost grows as n^d)."""
    objectives = _check(frame, objectives)
    if len(reference) != len(objectives):
        raise ValueError(f"reference {tuple(reference)} needs one value per objective ({len(objectives)}).")
    points = as_minimization(frame, objectives)
    ref = np.asarray(reference, dtype=float) * _signs(objectives)
    if not np.isfinite(ref).all():
        raise ValueError(f"reference {tuple(reference)} must be finite.")
    finite = np.isfinite(points).all(axis=1)
    inside = finite & (points < ref).all(axis=1)
    return Hypervolume(
        volume=hypervolume_of_points(points[inside], ref),
        reference=tuple(float(r) for r in reference),
        n_counted=int(inside.sum()),
        n_beyond_reference=int((finite & ~inside).sum()),
        n_excluded=int((~finite).sum()),
    )


def hypervolume_of_points(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact hypervolume of minimisation points that are all strictly better than `reference`.

    Only the non-dominated, distinct points matter. Two objectives: a sweep over the staircase,
    O(n log n). More: slices along the last objective; between consecutive distinct values
    z_i < z_{i+1} the dominated region is the (d-1)-dimensional hypervolume of the points with
    z <= z_i times the slab height (While et al. 2006, "HSO"), O(n^(d-1) log n).
    """
    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return 0.0
    points = np.unique(points, axis=0)
    points = points[R.non_dominated(points)]
    if points.shape[1] == 1:
        return float(reference[0] - points[:, 0].min())
    if points.shape[1] == 2:
        stairs = points[np.argsort(points[:, 0])]  # x ascending, so y descending on a front
        widths = np.diff(np.append(stairs[:, 0], reference[0]))
        return float(np.dot(widths, reference[1] - stairs[:, 1]))
    levels = np.unique(points[:, -1])
    bounds = np.append(levels[1:], reference[-1])
    volume = 0.0
    for level, upper in zip(levels, bounds, strict=True):
        below = points[points[:, -1] <= level, :-1]
        volume += hypervolume_of_points(below, reference[:-1]) * (upper - level)
    return float(volume)


def nadir_reference(frame: pd.DataFrame, objectives: Sequence[Objective],
                    margin: float = 0.1) -> tuple[float, ...]:
    """A reference point just worse than every finite row: the worst value plus `margin` of the
    range in each objective (plus `margin` * |worst| when all rows share one value)."""
    points = as_minimization(frame, objectives)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise ValueError("no row has finite values in every objective, so no reference point exists.")
    worst, best = points.max(axis=0), points.min(axis=0)
    spread = np.where(worst > best, worst - best, np.abs(worst))
    spread = np.where(spread > 0, spread, 1.0)
    ref = worst + margin * spread
    return tuple(float(v) for v in ref * _signs(_check(frame, objectives)))
