"""Intervals over seeds (analysis/stats.py) against scipy's own numbers, and the winner rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis.stats import PROVISIONAL, TOO_CLOSE, WINS, Interval, call, mean_ci, welch_difference


def test_mean_ci_is_scipys_student_t_interval():
    x = [34.1, 36.0, 33.2, 35.5, 37.9]
    low, high = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert mean_ci(x) == pytest.approx(Interval(np.mean(x), low, high, 5))
    # by hand for n = 2: mean 2, s = sqrt(2), t_{0.975, 1} = 12.706
    expected = Interval(2.0, 2 - 12.7062 * 1.0, 2 + 12.7062 * 1.0, 2)
    assert mean_ci([1.0, 3.0]) == pytest.approx(expected, rel=1e-4)


def test_mean_ci_of_one_value_has_no_interval_and_non_finite_values_are_ignored():
    one = mean_ci([5.0, math.nan, math.inf])
    assert (one.estimate, one.n) == (5.0, 1) and math.isnan(one.low) and math.isnan(one.high)
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).estimate)
    assert one.text() == "5"


def test_welch_difference_is_scipys_welch_interval():
    a, b = [30.0, 32.5, 31.0, 29.0, 33.0], [40.0, 36.0, 45.0, 38.5]
    expected = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    got = welch_difference(a, b)
    assert got == pytest.approx(Interval(np.mean(a) - np.mean(b), expected.low, expected.high, 4))
    assert got.excludes_zero()


def test_call_needs_replicates_and_an_interval_that_excludes_zero():
    assert call(Interval(-3.0, -5.0, -1.0, 5), replicated=True) == WINS
    assert call(Interval(-3.0, -5.0, 1.0, 5), replicated=True) == TOO_CLOSE
    assert call(Interval(-3.0, math.nan, math.nan, 1), replicated=True) == TOO_CLOSE
    assert call(Interval(-3.0, -5.0, -1.0, 5), replicated=False) == PROVISIONAL
