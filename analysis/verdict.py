"""Which group (family, or study when a family has two) wins on which axis, and at what budget.

Every choice is made on validation metrics (analysis.selection.SELECT); test metrics only
describe what was chosen. Every axis compares the leader with the runner-up through a 95 %
interval of their difference (analysis.stats.call): a winner only when it excludes zero,
otherwise "too close to call"; without replicates every axis is "single seed, provisional".

Axes:
- quality: test FID of each group's best configuration. With replicates (replicates.parquet),
  the replicated configuration with the lowest mean validation FID over seeds, as mean +- 95 % CI
  over its seeds, compared by Welch's interval; without, the trial with the lowest validation FID;
- size / time / all three trade-offs: hypervolume of each group's usable trials (validation FID
  vs log10 parameters and/or log10 training seconds), at equal trial counts, against a reference
  point fixed by the protocol, with a bootstrap interval of the difference (analysis.tradeoff);
- training speed: median images per second over trials, bootstrap interval of the difference;
- budget: the group with the lower expected test FID of its lowest-validation-FID trial among k
  (analysis.budget); 'bands separate' when the exact 95 % ranges over subsets do not overlap.

`Verdict.luck` says what the quality interval covers (the picked configurations' seed noise, not the
search's luck) and, given a learning-curve table (analysis.search_luck), how far a repeat of an
n-trial search could move each family's pick; where the families' ranges overlap it says
"search-limited, a repeat could reverse it".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import columns as C
from analysis import stats
from analysis.budget import BudgetCurve
from analysis.pareto import Objective
from analysis.quality import is_usable
from analysis.search_luck import Spread, luck_sentence, search_spreads
from analysis.selection import SELECT, best_label, group_column
from analysis.stats import Interval
from analysis.tradeoff import DEFAULT_RESAMPLES, compare, mean_volume, reference_point
from study import results as R

AXIS_QUALITY = "quality"
AXIS_SIZE = "size vs quality"
AXIS_TIME = "training time vs quality"
AXIS_ALL = "size, time and quality"
AXIS_SPEED = "training speed"
LOWER = "lower"
HIGHER = "higher"
NOT_COMPARED = "not compared"
NAN = float("nan")
NO_INTERVAL = Interval(NAN, NAN, NAN, 0)


@dataclass(frozen=True)
class AxisVerdict:
    axis: str
    measure: str  # what was compared
    better: str  # LOWER or HIGHER
    values: tuple[tuple[str, Interval], ...]  # (group, value with its interval over seeds), groups sorted
    leader: str | None  # the best value; None with fewer than two groups or a tie
    difference: Interval  # leader minus runner-up, with its 95 % interval
    call: str  # stats.WINS / stats.TOO_CLOSE / stats.PROVISIONAL / NOT_COMPARED

    @property
    def winner(self) -> str | None:
        return self.leader if self.call == stats.WINS else None


@dataclass(frozen=True)
class BudgetPoint:
    budget: int
    expected_best: tuple[tuple[str, float], ...]
    winner: str | None  # the lower expected value (None on a tie)
    clear: bool  # the winner's exact 95 % range lies entirely below every other group's


@dataclass(frozen=True)
class Verdict:
    axes: tuple[AxisVerdict, ...]
    budget: tuple[BudgetPoint, ...]
    summary: tuple[str, ...]  # one sentence per axis, plus the budget sentence
    replicated: bool  # every group has replicates
    luck: str = ""  # what the quality interval covers, and the search's luck from a table (search_luck)
    spreads: tuple[Spread, ...] = ()  # per family: best-of-n spread of a repeated search, from a table


def best_configuration(group_trials: pd.DataFrame, group_replicates: pd.DataFrame, quality: str = R.TEST_FID,
                       select: str = SELECT) -> tuple[str | None, Interval, np.ndarray]:
    """(source trial id, `quality` as mean +- CI over seeds, the per-seed values) of a group's best
    configuration: among replicated configurations the lowest mean `select` over seeds, else the
    single trial with the lowest `select`."""
    if len(group_replicates):
        means = group_replicates.groupby(R.SOURCE_TRIAL_ID)[select].mean()
        means = means[np.isfinite(means.to_numpy(dtype=float, na_value=np.nan))]
        if len(means):
            source = str(means.idxmin())
            values = group_replicates.loc[group_replicates[R.SOURCE_TRIAL_ID] == source, quality]
            values = values.to_numpy(dtype=float, na_value=np.nan)
            return source, stats.mean_ci(values), values[np.isfinite(values)]
    label = best_label(group_trials, select)
    if label is None:
        return None, NO_INTERVAL, np.zeros(0)
    value = float(group_trials.loc[label, quality])
    return str(group_trials.loc[label, R.TRIAL_ID]), stats.mean_ci([value]), np.array([value])


def _leader(values: Sequence[tuple[str, Interval]], better: str) -> tuple[str | None, str | None]:
    """(leader, runner-up) by estimate; leader None on a tie or with fewer than two finite values."""
    finite = sorted(((v.estimate, g) for g, v in values if np.isfinite(v.estimate)), reverse=better == HIGHER)
    if len(finite) < 2:
        return None, None
    if np.isclose(finite[0][0], finite[1][0], rtol=1e-9, atol=0.0):
        return None, finite[1][1]
    return finite[0][1], finite[1][1]


def _axis(axis: str, measure: str, better: str, values, difference_of, replicated: bool) -> AxisVerdict:
    """An axis from per-group values and a function (leader, runner-up) -> Interval of the difference."""
    values = tuple(values)
    leader, runner = _leader(values, better)
    if runner is None:
        return AxisVerdict(axis, measure, better, values, None, NO_INTERVAL, NOT_COMPARED)
    if leader is None:
        return AxisVerdict(axis, measure, better, values, None, Interval(0.0, NAN, NAN, 0),
                           stats.PROVISIONAL if not replicated else stats.TOO_CLOSE)
    difference = difference_of(leader, runner)
    return AxisVerdict(axis, measure, better, values, leader, difference, stats.call(difference, replicated))


def _bootstrap_median_difference(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> Interval:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return NO_INTERVAL
    rng = np.random.default_rng(seed)
    draws = [np.median(rng.choice(a, len(a))) - np.median(rng.choice(b, len(b))) for _ in range(resamples)]
    return stats.percentile_interval(float(np.median(a) - np.median(b)), draws, min(len(a), len(b)))


def decide(trials: pd.DataFrame, curves: Mapping[str, BudgetCurve], quality: str = R.TEST_FID,
           select: str = SELECT, replicates: pd.DataFrame | None = None,
           resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
           lab_table: pd.DataFrame | None = None) -> Verdict:
    """The verdict over the search trials (and their replicates, when given); `lab_table`
    (search_luck.table_finals) measures the search's luck at each family's trials per study."""
    by = group_column(trials)
    replicates = replicates if replicates is not None else pd.DataFrame(columns=[by, R.SOURCE_TRIAL_ID])
    groups = sorted(map(str, trials[by].dropna().unique()))
    trials = trials.assign(**{C.USABLE: is_usable(trials, select=select)})
    per_group = {g: trials[trials[by] == g] for g in groups}
    reps = {g: replicates[replicates[by] == g] if by in replicates else replicates.iloc[:0] for g in groups}
    replicated = len(groups) > 1 and all(reps[g][R.SOURCE_TRIAL_ID].nunique() > 0 for g in groups)

    best = {g: best_configuration(per_group[g], reps[g], quality, select) for g in groups}
    seeds_note = "mean over seeds of " if replicated else ""
    axes = [_axis(AXIS_QUALITY, f"{seeds_note}{quality} of the configuration with the lowest {select}", LOWER,
                  ((g, best[g][1]) for g in groups),
                  lambda a, b: stats.welch_difference(best[a][2], best[b][2]), replicated)]

    reference = reference_point(trials, select)
    fid = Objective(select)
    for axis, objectives in ((AXIS_SIZE, (fid, Objective(R.PARAMS_TOTAL))),
                             (AXIS_TIME, (fid, Objective(R.TRAIN_SECONDS))),
                             (AXIS_ALL, (fid, Objective(R.PARAMS_TOTAL), Objective(R.TRAIN_SECONDS)))):
        def difference_of(a, b, objectives=objectives):
            return compare(per_group[a], per_group[b], objectives, reference, resamples, seed).difference

        n = min((len(per_group[g]) for g in groups), default=0)  # equal trial counts
        volumes = [(g, Interval(mean_volume(per_group[g], n, objectives, reference, resamples, seed),
                                NAN, NAN, n)) for g in groups]
        names = ", ".join(o.column for o in objectives)
        axes.append(_axis(axis, f"hypervolume of usable trials in ({names}; log10 size/time) at {n} trials "
                                f"per group, fixed reference", HIGHER, volumes, difference_of, replicated))

    speed = {g: per_group[g][R.IMAGES_PER_S].to_numpy(dtype=float, na_value=np.nan)
             if R.IMAGES_PER_S in trials else np.zeros(0) for g in groups}
    medians = [(g, Interval(float(np.nanmedian(v)) if np.isfinite(v).any() else NAN, NAN, NAN, len(v)))
               for g, v in speed.items()]
    axes.append(_axis(AXIS_SPEED, f"median {R.IMAGES_PER_S} over trials", HIGHER, medians,
                      lambda a, b: _bootstrap_median_difference(speed[a], speed[b], resamples, seed),
                      replicated))
    budget = budget_points(curves)
    summary = tuple(sentence(a) for a in axes) + (budget_sentence(budget, replicated),)
    spreads: list[Spread] = []
    if lab_table is not None and len(lab_table) and R.FAMILY in trials:
        keys = [R.FAMILY, R.STUDY] if R.STUDY in trials else [R.FAMILY]
        per_study = trials.groupby(keys).size()  # n: the trials of a family's study (median over its studies)
        n = {str(f): int(np.median(v)) for f, v in per_study.groupby(level=0)}
        spreads = search_spreads(lab_table, n, seed=seed)
    quality_axis = axes[0]
    gap = quality_axis.difference.estimate if quality_axis.leader else None
    luck = luck_sentence(spreads, gap, quality_axis.leader)
    return Verdict(axes=tuple(axes), budget=budget, summary=summary, replicated=replicated, luck=luck,
                   spreads=tuple(spreads))


def budget_points(curves: Mapping[str, BudgetCurve]) -> tuple[BudgetPoint, ...]:
    """At each budget every group reaches (k up to the smallest study), who has the lower expected value."""
    if len(curves) < 2:
        return ()
    shared = sorted(set.intersection(*(set(c.budgets) for c in curves.values())))
    points = []
    for k in shared:
        at = {f: c.budgets.index(k) for f, c in curves.items()}
        expected = tuple((f, curves[f].expected_best[at[f]]) for f in sorted(curves))
        finite = sorted((v, f) for f, v in expected if np.isfinite(v))
        winner = None
        if len(finite) >= 2 and not np.isclose(finite[0][0], finite[1][0], rtol=1e-9, atol=0.0):
            winner = finite[0][1]
        clear = winner is not None and all(curves[winner].high[at[winner]] < curves[f].low[at[f]]
                                           for f in curves if f != winner)
        points.append(BudgetPoint(k, expected, winner, clear))
    return tuple(points)


def sentence(axis: AxisVerdict) -> str:
    """One line per axis: the call, each group's value (with its interval), the difference."""
    shown = " vs ".join(f"{g.upper()} {v.text()}" + (f" (n = {v.n} seeds)" if np.isfinite(v.low) else "")
                        for g, v in axis.values)
    what = f"{axis.measure}, {axis.better} is better"
    if axis.call == NOT_COMPARED:
        return f"{axis.axis}: not compared ({shown}; {what}; needs two groups with a value)."
    d = axis.difference
    interval = f", 95 % CI [{d.low:.4g}, {d.high:.4g}]" if np.isfinite(d.low) else ""
    diff = f"difference {d.estimate:.4g}{interval}" if axis.leader else "tied"
    if axis.call == stats.WINS:
        return f"{axis.axis}: {axis.leader.upper()} wins ({shown}; {diff}, excludes 0; {what})."
    if axis.call == stats.TOO_CLOSE:
        return f"{axis.axis}: too close to call ({shown}; {diff}; {what})."
    ahead = f"{axis.leader.upper()} ahead, " if axis.leader else ""
    return f"{axis.axis}: {ahead}single seed, provisional ({shown}; {diff}; {what})."


def budget_sentence(points: Sequence[BudgetPoint], replicated: bool = False) -> str:
    """Runs of equal winners, e.g. 'k = 1-3: VAE (bands separate at k = 3); k = 4-8: GAN'."""
    if not points:
        return "budget: not compared (needs two groups with finite FIDs)."
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
        detail = (f" (95 % ranges separate at k = {', '.join(map(str, clear))})" if clear
                  else " (95 % ranges overlap)")
        parts.append(f"{span}: {who}{detail if run[0].winner else ''}")
    tail = "" if replicated else " Single seed, provisional."
    return ("budget: lower expected test FID of the lowest-validation-FID trial among k, "
            + "; ".join(parts) + "." + tail)


def verdict_table(verdict: Verdict) -> pd.DataFrame:
    """One row per axis: what was compared, each group's value, the difference and the call."""
    rows = []
    for a in verdict.axes:
        row = {C.AXIS: a.axis, C.MEASURE: f"{a.measure} ({a.better} is better)"}
        row.update({group: value.text() for group, value in a.values})
        row.update({C.DIFFERENCE: a.difference.estimate, C.DIFF_LOW: a.difference.low,
                    C.DIFF_HIGH: a.difference.high, C.CALL: a.call, C.WINNER: a.winner or "none"})
        rows.append(row)
    return pd.DataFrame(rows)
