"""Budget curves: the expected best FID of a study that could afford only k trials.

Protocol of Lucic et al. 2018 ("Are GANs Created Equal? A Large-Scale Study", Sec. 5): compare
model families at equal computational budget, i.e. by the minimum FID reached over k randomly
drawn hyperparameter settings, not by one lucky run. Here the k settings are drawn with
replacement from the n finished trials of one study (a bootstrap), which estimates the
distribution of that minimum:

    E[min of k draws] = sum_i x_(i) * [((n - i + 1) / n)^k - ((n - i) / n)^k]

for sorted values x_(1) <= ... <= x_(n) (i = 1..n), since P(min >= x_(i)) = ((n - i + 1) / n)^k.
We report that exact expectation (the bootstrap mean's limit, free of resampling noise) and a
seeded percentile band from `resamples` bootstrap draws. Trials without a finite value
(diverged, errored) are excluded and counted; the curve describes the trials that produced a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import columns as C
from study import results as R

DEFAULT_RESAMPLES = 5000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class BudgetCurve:
    label: str  # e.g. the family
    metric: str  # the column minimised, e.g. test_fid
    budgets: tuple[int, ...]  # k = number of trials
    expected_best: tuple[float, ...]  # exact E[min of k draws with replacement]
    low: tuple[float, ...]  # lower end of the bootstrap band (an observed value)
    high: tuple[float, ...]  # upper end of the band (an observed value)
    n_trials: int  # trials with a finite value, the bootstrap pool
    n_excluded: int  # trials without one
    level: float  # band coverage, e.g. 0.95
    resamples: int
    seed: int


def expected_minimum(values: Sequence[float], k: int) -> float:
    """Exact expected minimum of k draws with replacement from `values` (formula above)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0 or k < 1:
        raise ValueError(f"need at least one value and k >= 1 (got {n} values, k={k}).")
    i = np.arange(1, n + 1)
    weights = ((n - i + 1) / n) ** k - ((n - i) / n) ** k
    return float(np.dot(weights, x))


def budget_curve(values: Sequence[float] | pd.Series, *, label: str = "", metric: str = R.TEST_FID,
                 budgets: Sequence[int] | None = None, resamples: int = DEFAULT_RESAMPLES,
                 level: float = DEFAULT_LEVEL, seed: int = 0) -> BudgetCurve:
    """Expected best (minimum) `values` as a function of the number of trials k, with a band.

    `budgets` defaults to 1..n (drawing more trials than were run would extrapolate). The band is
    the [(1-level)/2, (1+level)/2] percentile interval of the bootstrap minima, taken as observed
    values (numpy's 'lower'/'higher' methods), so it is exact for small hand-checked cases.
    """
    raw = np.asarray(values, dtype=float)
    finite = raw[np.isfinite(raw)]
    n = len(finite)
    if n == 0:
        raise ValueError(f"{label or 'study'}: no trial has a finite {metric}, so there is no budget curve.")
    budgets = tuple(range(1, n + 1)) if budgets is None else tuple(int(k) for k in budgets)
    if not budgets or min(budgets) < 1:
        raise ValueError(f"budgets {budgets} must be positive trial counts.")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be in (0, 1).")
    rng = np.random.default_rng(seed)
    draws = finite[rng.integers(0, n, size=(resamples, max(budgets)))]
    running_min = np.minimum.accumulate(draws, axis=1)  # column k-1: min of the first k draws
    tail = (1 - level) / 2
    chosen = running_min[:, [k - 1 for k in budgets]]
    return BudgetCurve(
        label=label,
        metric=metric,
        budgets=budgets,
        expected_best=tuple(expected_minimum(finite, k) for k in budgets),
        low=tuple(float(v) for v in np.quantile(chosen, tail, axis=0, method="lower")),
        high=tuple(float(v) for v in np.quantile(chosen, 1 - tail, axis=0, method="higher")),
        n_trials=n,
        n_excluded=int(len(raw) - n),
        level=level,
        resamples=resamples,
        seed=seed,
    )


def budget_curves(trials: pd.DataFrame, metric: str = R.TEST_FID, by: str = R.FAMILY, **kwargs) -> dict[str, BudgetCurve]:
    """One curve per group (family by default), each over that group's trials."""
    return {str(name): budget_curve(group[metric], label=str(name), metric=metric, **kwargs)
            for name, group in trials.groupby(by, sort=True)
            if np.isfinite(group[metric].to_numpy(dtype=float, na_value=np.nan)).any()}


def budget_table(curves: dict[str, BudgetCurve]) -> pd.DataFrame:
    """The curves as one tidy frame: family, budget k, expected best, band."""
    rows = [{R.FAMILY: c.label, C.BUDGET: k, C.EXPECTED_BEST: e, C.BAND_LOW: lo, C.BAND_HIGH: hi}
            for c in curves.values() for k, e, lo, hi in zip(c.budgets, c.expected_best, c.low, c.high, strict=True)]
    return pd.DataFrame(rows, columns=[R.FAMILY, C.BUDGET, C.EXPECTED_BEST, C.BAND_LOW, C.BAND_HIGH])
