"""Budget curves (analysis/budget.py): the exact expected test FID of the lowest-validation-FID trial
among k drawn without replacement (Dodge et al. 2019), checked against enumerating every subset.

Behaviour changed by issue 9 (the old tests checked draws WITH replacement over test FID with
failed trials dropped): the pick is now made on validation FID, subsets are drawn without
replacement, failed trials count as the worst value, and the band is exact."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis import columns as C
from analysis.budget import (
    budget_curve,
    budget_curves,
    budget_table,
    expected_pick,
    pick_probabilities,
    pick_weights,
    protocol_caption,
)
from study import results as R

NAN = math.nan


def small_study() -> pd.DataFrame:
    """Six trials: validation and test disagree on the order, one validation tie, one diverged trial
    (no FID at all) and one early-stopped trial with a validation FID but no test FID."""
    return pd.DataFrame({
        R.FINAL_VAL_FID: [30.0, 20.0, 25.0, NAN, 20.0, 40.0],
        R.TEST_FID: [28.0, 26.0, 22.0, NAN, 35.0, NAN],
        R.TRAIN_SECONDS: [10.0, 20.0, 30.0, NAN, 10.0, 50.0],
        R.FAMILY: "gan",
    })


def brute_force(frame: pd.DataFrame, k: int) -> list[float]:
    """The reported test FID for every k-subset: the first lowest validation FID in frame order, a
    failed validation ranking last; a missing test FID counts as the worst finite one (35)."""
    worst = frame[R.TEST_FID].max()
    picked = []
    for subset in itertools.combinations(range(len(frame)), k):
        val = [frame[R.FINAL_VAL_FID].iloc[i] for i in subset]
        val = [math.inf if math.isnan(v) else v for v in val]
        chosen = subset[int(np.argmin(val))]
        y = frame[R.TEST_FID].iloc[chosen]
        picked.append(worst if math.isnan(y) else y)
    return picked


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_expected_pick_equals_the_mean_over_every_subset(k):
    frame = small_study()
    assert expected_pick(frame, k) == pytest.approx(np.mean(brute_force(frame, k)))


def test_pick_probabilities_by_hand_and_they_sum_to_one():
    # n = 4, k = 2: rank 1 is picked in 3 of the 6 pairs, rank 2 in 2, rank 3 in 1, rank 4 never
    assert pick_probabilities(4, 2) == pytest.approx([3 / 6, 2 / 6, 1 / 6, 0.0])
    for n, k in ((7, 1), (7, 3), (7, 7)):
        assert pick_probabilities(n, k).sum() == pytest.approx(1.0)
    for k in (1, 7, 80, 120):  # the log-gamma form used beyond 60 trials agrees with exact integers
        exact = [math.comb(120 - i, k - 1) / math.comb(120, k) for i in range(1, 121)]
        assert pick_probabilities(120, k) == pytest.approx(exact, rel=1e-9, abs=1e-300)
    with pytest.raises(ValueError, match="without replacement"):
        pick_probabilities(3, 4)


def test_the_band_is_the_exact_quantile_range_over_subsets():
    frame = small_study()
    curve = budget_curve(frame, label="gan")
    for k, low, high in zip(curve.budgets, curve.low, curve.high, strict=True):
        picked = np.sort(brute_force(frame, k))
        cumulative = np.arange(1, len(picked) + 1) / len(picked)
        assert low == picked[np.searchsorted(cumulative, 0.025 - 1e-12)]
        assert high == picked[np.searchsorted(cumulative, 0.975 - 1e-12)]
    # all six drawn: always trial 1 (first of the validation tie at 20), test FID 26
    assert (curve.expected_best[-1], curve.low[-1], curve.high[-1]) == (26.0, 26.0, 26.0)
    assert (curve.n_trials, curve.n_failed) == (6, 1)
    # seconds axis: k times the mean seconds per trial, the diverged trial's missing time as 0
    assert curve.seconds == pytest.approx(tuple(k * 120.0 / 6 for k in range(1, 7)))


def test_failed_trials_cost_the_worst_value():
    frame = small_study()
    without = frame.drop(index=3)
    # dropping the failed trial (the old behaviour) makes small budgets look better than they were
    assert expected_pick(frame, 2) > expected_pick(without, 2)


def test_pick_weights_depend_on_validation_only():
    frame = small_study()
    shuffled = frame.assign(**{R.TEST_FID: frame[R.TEST_FID].to_numpy()[::-1]})
    pd.testing.assert_series_equal(pick_weights(frame, 3), pick_weights(shuffled, 3))
    assert pick_weights(frame, 3).idxmax() == 1


def test_budget_curves_per_group_and_table():
    trials = pd.concat([small_study(), small_study().assign(**{R.FAMILY: "vae", R.TEST_FID: NAN})])
    trials[C.GROUP] = trials[R.FAMILY]
    curves = budget_curves(trials)
    assert list(curves) == ["gan"]  # no finite test FID in the VAE group: no curve
    table = budget_table(curves)
    assert list(table.columns) == [C.GROUP, C.BUDGET, C.BUDGET_SECONDS, C.EXPECTED_BEST, C.BAND_LOW,
                                   C.BAND_HIGH]
    assert table[C.BUDGET].tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="no trial has a finite test_fid"):
        budget_curve(small_study().assign(**{R.TEST_FID: NAN}), label="vae")
    with pytest.raises(ValueError, match="between 1 and the 6 trials"):
        budget_curve(small_study(), budgets=[7])


def test_the_caption_calls_it_lucic_only_for_random_sampling_without_early_stopping():
    assert "Lucic et al. 2018's protocol" in protocol_caption("random", "none")
    for sampler, scheduler in (("tpe", "asha"), ("random", "asha"), ("tpe", "none"), (None, None)):
        caption = protocol_caption(sampler, scheduler)
        assert "not Lucic et al.'s protocol" in caption and f"{sampler or 'unknown'} sampler" in caption
