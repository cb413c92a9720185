"""Budget curves (expected best FID vs number of trials) against hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis.budget import BudgetCurve, budget_curve, budget_curves, budget_table, expected_minimum
from study import results as R


def test_expected_minimum_by_hand():
    # sorted 1, 2, 3, 5 and k = 2: weights 1-(3/4)^2, (3/4)^2-(2/4)^2, (2/4)^2-(1/4)^2, (1/4)^2
    assert expected_minimum([3, 1, 2, 5],
                            2) == pytest.approx(0.4375 * 1 + 0.3125 * 2 + 0.1875 * 3 + 0.0625 * 5)
    assert expected_minimum([3, 1, 2, 5], 1) == pytest.approx(11 / 4)
    assert expected_minimum([7.0, 7.0], 5) == 7.0


@pytest.mark.parametrize("k", [1, 2, 3])
def test_expected_minimum_equals_the_mean_over_every_possible_draw(k):
    values = [4.0, 1.0, 1.0, 9.0]  # with a tie
    minima = [min(draw) for draw in itertools.product(values, repeat=k)]
    assert expected_minimum(values, k) == pytest.approx(sum(minima) / len(minima))


def test_budget_curve_whole_with_a_failed_trial_excluded_and_counted():
    # pool {1, 2}: k=1 gives 1 or 2 (p = 1/2 each); k=2 gives 2 only with p = 1/4 > 2.5 %,
    # so both 95 % bands are [1, 2]; the NaN (a diverged trial) is not drawn.
    curve = budget_curve(pd.Series([1.0, 2.0, math.nan]), label="gan", resamples=4000, seed=3)
    assert curve == BudgetCurve(label="gan", metric=R.TEST_FID, budgets=(1, 2), expected_best=(1.5, 1.25),
                                low=(1.0, 1.0), high=(2.0, 2.0), n_trials=2, n_excluded=1, level=0.95,
                                resamples=4000, seed=3)


def test_band_closes_onto_the_best_value_when_missing_it_becomes_unlikely():
    # pool {1, 2, 3, 5}. k = 3: P(min >= 5) = (1/4)^3 < 2.5 % < P(min >= 3) = 1/8, so high = 3.
    # k = 12: P(min >= 2) = (3/4)^12 = 3.2 % > 2.5 %, high = 2; k = 20: (3/4)^20 = 0.3 %, high = 1.
    curve = budget_curve([3, 1, 2, 5], budgets=[1, 3, 12, 20], resamples=20000, seed=1)
    assert (curve.low, curve.high) == ((1.0, 1.0, 1.0, 1.0), (5.0, 3.0, 2.0, 1.0))
    assert curve.budgets == (1, 3, 12, 20)  # beyond n: extrapolation the caller asked for


def test_budget_curve_is_seeded():
    values = np.random.default_rng(0).gamma(2.0, 30.0, size=12)
    assert budget_curve(values, resamples=300, seed=5) == budget_curve(values, resamples=300, seed=5)


def test_budget_curve_refuses_no_finite_values_and_bad_arguments():
    with pytest.raises(ValueError, match="no trial has a finite test_fid"):
        budget_curve([math.nan, math.inf], label="vae")
    with pytest.raises(ValueError, match="positive trial counts"):
        budget_curve([1.0], budgets=[0])
    with pytest.raises(ValueError, match="level"):
        budget_curve([1.0], level=1.0)


def test_budget_curves_per_family_skip_a_family_without_values_and_tabulate():
    trials = pd.DataFrame({R.FAMILY: ["gan", "gan", "vae", "vae"],
                           R.TEST_FID: [4.0, 2.0, math.nan, math.nan]})
    curves = budget_curves(trials, resamples=50)
    assert list(curves) == ["gan"]
    assert curves["gan"].expected_best == (3.0, 2.5)
    table = budget_table(curves)
    assert list(table.columns) == [R.FAMILY, R.BUDGET, R.EXPECTED_BEST, R.BAND_LOW, R.BAND_HIGH]
    assert table[[R.FAMILY, R.BUDGET, R.EXPECTED_BEST]].values.tolist() == [["gan", 1, 3.0], ["gan", 2, 2.5]]
