"""Budget curves: the expected test FID of the trial a study would have picked among k trials.

Dodge et al. 2019 ("Show Your Work: Improved Reporting of Experimental Results", Sec. 3):
draw k of the n finished trials without replacement, pick the one with the best VALIDATION
score, and report its TEST score; the curve is the expectation over all C(n, k) subsets,
computed exactly. Order the trials by validation FID, best first (rank i = 1..n, ties kept in
the frame's order; a failed trial - diverged, errored, no validation FID - ranks last). Rank i
is picked when it is in the subset and the other k - 1 trials all rank below it:

    P(pick rank i) = C(n - i, k - 1) / C(n, k),    E_k = sum_i P(pick rank i) * y_i

with y_i the picked trial's test FID. A failed trial counts as the worst value (Dodge et al.'s
treatment of failures): y is the largest finite test value of the group, so a study whose trials
often fail pays for them. The band is the exact [(1-level)/2, (1+level)/2] quantile range of
the picked trial's test value over the C(n, k) subsets; no resampling anywhere.

The second axis is cumulative training seconds: k trials cost k times the study's mean training
seconds per trial (a failed trial without a time counts as 0 s), as Dodge et al. plot budgets
in hours. This is Lucic et al.'s (2018) protocol only when the trials were drawn at random and
run to the end (`random` sampler, no scheduler); a TPE study cut short by ASHA gives a curve
over the trials that sampler and scheduler produced, and the caption says so (`protocol_caption`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln

from analysis import columns as C
from analysis.selection import SELECT, group_column, selection_values
from study import results as R

DEFAULT_LEVEL = 0.95
RANDOM_SAMPLER = "random"
NO_SCHEDULER = "none"


@dataclass(frozen=True)
class BudgetCurve:
    label: str  # the group: a family, or a study name when a family has two studies
    metric: str  # the column reported, e.g. test_fid
    select: str  # the column that picks the trial, e.g. final_val_fid
    budgets: tuple[int, ...]  # k = number of trials
    expected_best: tuple[float, ...]  # exact E[metric of the best-by-select trial among k]
    low: tuple[float, ...]  # exact lower quantile of that value over the C(n, k) subsets
    high: tuple[float, ...]
    seconds: tuple[float, ...]  # k * mean training seconds per trial
    n_trials: int  # every trial, failed ones included
    n_failed: int  # trials without a finite select value, counted as the worst
    level: float


def pick_probabilities(n: int, k: int) -> np.ndarray:
    """[n] P(the rank-i trial, i = 1..n, is the best of a uniform k-subset) = C(n-i, k-1) / C(n, k)."""
    if not 1 <= k <= n:
        raise ValueError(f"k={k} trials cannot be drawn without replacement from n={n}.")
    if n <= 60:  # exact integers where they stay small
        total = math.comb(n, k)
        return np.array([math.comb(n - i, k - 1) / total for i in range(1, n + 1)])
    i = np.arange(1, n + 1)
    m = n - i  # C(m, k-1) is zero where m < k-1; log-gamma form elsewhere
    with np.errstate(invalid="ignore"):
        log_p = (gammaln(m + 1) - gammaln(k) - gammaln(np.maximum(m - k + 2, 1))
                 - (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)))
    return np.where(m >= k - 1, np.exp(log_p), 0.0)


def validation_order(frame: pd.DataFrame, select: str = SELECT) -> np.ndarray:
    """Positions of the rows, best `select` first, failed (non-finite) last, stable on ties."""
    return np.argsort(selection_values(frame, select), kind="stable")


def pick_weights(frame: pd.DataFrame, k: int, select: str = SELECT) -> pd.Series:
    """Per row (index label), the probability that it is the trial picked among k drawn at random.
    Depends on `select` only: permuting any test column leaves it unchanged."""
    order = validation_order(frame, select)
    weights = np.empty(len(frame))
    weights[order] = pick_probabilities(len(frame), k)
    return pd.Series(weights, index=frame.index)


def reported_values(frame: pd.DataFrame, metric: str) -> np.ndarray:
    """`metric` with every non-finite value replaced by the worst (largest) finite one."""
    y = frame[metric].to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(y)
    worst = y[finite].max() if finite.any() else np.nan
    return np.where(finite, y, worst)


def expected_pick(frame: pd.DataFrame, k: int, metric: str = R.TEST_FID, select: str = SELECT) -> float:
    """E[`metric` of the lowest-`select` trial among k drawn without replacement] (formula above)."""
    return float(np.dot(pick_weights(frame, k, select).to_numpy(), reported_values(frame, metric)))


def _quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose cumulative probability reaches q (a discrete distribution's quantile)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    at = min(int(np.searchsorted(cumulative, q - 1e-12)), len(order) - 1)
    return float(values[order][at])


def budget_curve(frame: pd.DataFrame, *, label: str = "", metric: str = R.TEST_FID, select: str = SELECT,
                 budgets: Sequence[int] | None = None, level: float = DEFAULT_LEVEL) -> BudgetCurve:
    """The exact expected-pick curve of one group's trials over k = 1..n (or `budgets`)."""
    n = len(frame)
    y = reported_values(frame, metric) if n else np.zeros(0)
    if n == 0 or not np.isfinite(y).any():
        raise ValueError(f"{label or 'study'}: no trial has a finite {metric}, so there is no budget curve.")
    budgets = tuple(range(1, n + 1)) if budgets is None else tuple(int(k) for k in budgets)
    if not budgets or min(budgets) < 1 or max(budgets) > n:
        raise ValueError(f"budgets {budgets} must be trial counts between 1 and the {n} trials run.")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be in (0, 1).")
    tail = (1 - level) / 2
    expected, low, high = [], [], []
    for k in budgets:
        w = pick_weights(frame, k, select).to_numpy()
        expected.append(float(np.dot(w, y)))
        low.append(_quantile(y, w, tail))
        high.append(_quantile(y, w, 1 - tail))
    seconds = (frame[R.TRAIN_SECONDS].to_numpy(dtype=float, na_value=np.nan) if R.TRAIN_SECONDS in frame
               else np.zeros(n))
    per_trial = float(np.where(np.isfinite(seconds), seconds, 0.0).mean())
    failed = int((~np.isfinite(selection_values(frame, select))).sum())
    return BudgetCurve(label=label, metric=metric, select=select, budgets=budgets,
                       expected_best=tuple(expected), low=tuple(low), high=tuple(high),
                       seconds=tuple(k * per_trial for k in budgets), n_trials=n, n_failed=failed,
                       level=level)


def budget_curves(trials: pd.DataFrame, metric: str = R.TEST_FID, by: str | None = None,
                  select: str = SELECT, **kwargs) -> dict[str, BudgetCurve]:
    """One curve per group (C.GROUP when the rows have it, else the family), each over all its trials."""
    by = by or group_column(trials)
    return {str(name): budget_curve(group, label=str(name), metric=metric, select=select, **kwargs)
            for name, group in trials.groupby(by, sort=True)
            if np.isfinite(group[metric].to_numpy(dtype=float, na_value=np.nan)).any()}


def budget_table(curves: dict[str, BudgetCurve]) -> pd.DataFrame:
    """The curves as one tidy frame: group, budget k, its training seconds, expected pick, band."""
    columns = [C.GROUP, C.BUDGET, C.BUDGET_SECONDS, C.EXPECTED_BEST, C.BAND_LOW, C.BAND_HIGH]
    rows = [dict(zip(columns, (c.label, k, s, e, lo, hi), strict=True)) for c in curves.values()
            for k, s, e, lo, hi in zip(c.budgets, c.seconds, c.expected_best, c.low, c.high, strict=True)]
    return pd.DataFrame(rows, columns=columns)


def protocol_caption(sampler: str | None, scheduler: str | None) -> str:
    """What produced the trials behind a curve, and whether it is Lucic et al.'s protocol."""
    made_by = f"trials proposed by the {sampler or 'unknown'} sampler, scheduler {scheduler or 'unknown'}"
    if sampler == RANDOM_SAMPLER and scheduler == NO_SCHEDULER:
        return f"{made_by}: random configurations run to the end, Lucic et al. 2018's protocol"
    return f"{made_by}: not Lucic et al.'s protocol (it needs random sampling and no early stopping)"
