"""Intervals over seeds and the rule that turns a difference into a winner (pure functions).

- `mean_ci`: mean and two-sided Student-t interval, mean +- t_{(1+level)/2, n-1} * s / sqrt(n)
  (s the sample standard deviation, ddof=1);
- `welch_difference`: mean(a) - mean(b) with Welch's interval, which does not assume equal
  variances (Welch 1947): se = sqrt(s_a^2/n_a + s_b^2/n_b) and the Welch-Satterthwaite degrees
  of freedom df = se^4 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1));
- `call`: a winner only when the interval of the difference excludes zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

LEVEL = 0.95
WINS = "wins"
TOO_CLOSE = "too close to call"
PROVISIONAL = "single seed, provisional"


class Interval(NamedTuple):
    estimate: float
    low: float  # NaN when there is no interval (one value)
    high: float
    n: int  # values behind the estimate (for a difference: the smaller side)

    def excludes_zero(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high) and (self.low > 0 or self.high < 0))

    def text(self, digits: int = 4) -> str:
        """'34.9 [31.2, 38.6]' or '34.9' when there is no interval."""
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{self.estimate:.{digits}g}"
        return f"{self.estimate:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def mean_ci(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean of the finite values with a Student-t interval (NaN bounds for n < 2; NaN mean for n = 0)."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, float("nan"), float("nan"), n)
    half = stats.t.ppf((1 + level) / 2, n - 1) * x.std(ddof=1) / np.sqrt(n)
    return Interval(mean, float(mean - half), float(mean + half), n)


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """mean(a) - mean(b) with Welch's t interval; NaN bounds when either side has fewer than 2 values."""
    xa, xb = _finite(a), _finite(b)
    n = min(len(xa), len(xb))
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    diff = float(xa.mean() - xb.mean())
    if n < 2:
        return Interval(diff, float("nan"), float("nan"), n)
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    se = np.sqrt(va + vb)
    if se == 0:  # identical values on both sides: the difference is exact
        return Interval(diff, diff, diff, n)
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    half = stats.t.ppf((1 + level) / 2, df) * se
    return Interval(diff, float(diff - half), float(diff + half), n)


def percentile_interval(estimate: float, draws: Sequence[float], n: int, level: float = LEVEL) -> Interval:
    """`estimate` with the [(1-level)/2, (1+level)/2] percentiles of bootstrap `draws`."""
    d = _finite(draws)
    if len(d) == 0:
        return Interval(float(estimate), float("nan"), float("nan"), n)
    tail = (1 - level) / 2
    return Interval(float(estimate), float(np.quantile(d, tail)), float(np.quantile(d, 1 - tail)), n)


def call(difference: Interval, replicated: bool) -> str:
    """WINS when the interval of the difference excludes zero and the numbers rest on several seeds;
    TOO_CLOSE when it does not; PROVISIONAL when there are no replicates to say either."""
    if not replicated:
        return PROVISIONAL
    return WINS if difference.excludes_zero() else TOO_CLOSE
