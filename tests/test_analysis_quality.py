"""The quality gate (analysis/quality.py) and the fair trade-off comparison (analysis/tradeoff.py):
fixed reference point, usable trials only, equal trial counts with a bootstrap interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import columns as C
from analysis.pareto import Objective, hypervolume
from analysis.quality import QUALITY_FACTOR, VAL_CLASS_COVERAGE, VAL_SAMPLE_IS, fid_bounds, is_usable
from analysis.tradeoff import (
    PARAMS_FACTOR,
    SECONDS_FACTOR,
    compare,
    mean_volume,
    reference_point,
    volume,
)
from study import results as R

NAN = math.nan
FID, SIZE = Objective(R.FINAL_VAL_FID), Objective(R.PARAMS_TOTAL)


def gate_frame() -> pd.DataFrame:
    """Study s: seed configuration at validation FID 40, so its bound is 1.5 x 40 = 60. Study t has no
    seed configuration: its best trial (100) is the reference, bound 150."""
    return pd.DataFrame({
        R.STUDY: ["s", "s", "s", "s", "s", "s", "t", "t"],
        R.SEED_CONFIG: [True, False, False, False, False, False, False, False],
        R.FINAL_VAL_FID: [40.0, 59.9, 60.1, NAN, 45.0, 120.0, 100.0, 149.0],
        R.STOP_REASON: [R.STOP_COMPLETED, R.STOP_EARLY, R.STOP_COMPLETED, R.STOP_ERROR, R.STOP_DIVERGED,
                        R.STOP_COMPLETED, R.STOP_COMPLETED, R.STOP_COMPLETED],
    })


def test_the_bound_is_relative_to_the_studys_own_seed_configuration():
    assert QUALITY_FACTOR == 1.5
    trials = gate_frame()
    assert fid_bounds(trials).tolist() == [60.0] * 6 + [150.0] * 2
    # usable: ended with a model (not errored or diverged), validation FID within the bound
    assert is_usable(trials).tolist() == [True, True, False, False, False, False, True, True]


def test_the_bound_follows_the_feature_networks_scale():
    trials = gate_frame()
    rescaled = trials.assign(**{R.FINAL_VAL_FID: trials[R.FINAL_VAL_FID] * 7.0})  # a retrained network
    assert is_usable(rescaled).tolist() == is_usable(trials).tolist()


def test_class_coverage_is_applied_when_the_rows_have_it():
    trials = gate_frame().assign(**{VAL_CLASS_COVERAGE: [1.0, 0.5, 1.0, NAN, 1.0, 1.0, 0.9, NAN]})
    assert is_usable(trials).tolist() == [True, False, False, False, False, False, True, False]


def test_samples_without_a_readable_digit_are_not_usable_even_when_class_coverage_passes():
    # row 1 (within the FID bound): the quick GAN study's grey texture, class coverage 0.9 and sample
    # IS 1.09; rows 6 and 7 sit on either side of the minimum IS of 2
    trials = gate_frame().assign(**{VAL_CLASS_COVERAGE: [1.0, 0.9, 1.0, NAN, 1.0, 1.0, 1.0, 1.0],
                                    VAL_SAMPLE_IS: [4.6, 1.09, 3.4, NAN, 5.0, 5.0, 1.99, 2.0]})
    assert is_usable(trials).tolist() == [True, False, False, False, False, False, False, True]


def tradeoff_frame() -> pd.DataFrame:
    """Two seed configurations (1e6 and 5e5 parameters; 50 and 30 s per epoch) and the others;
    max epochs 4. A blob trial (FID 150 after 0.3 s) and a huge, slow, good trial."""
    return pd.DataFrame({
        R.STUDY: "s", R.FAMILY: "gan",
        R.SEED_CONFIG: [True, True, False, False, False, False],
        R.FINAL_VAL_FID: [40.0, 50.0, 35.0, 55.0, 150.0, 30.0],
        R.PARAMS_TOTAL: [1e6, 5e5, 2e5, 1e4, 1e3, 1e9],
        R.TRAIN_SECONDS: [100.0, 30.0, 80.0, 10.0, 0.3, 1e6],
        R.EPOCHS_RUN: [2, 1, 4, 4, 1, 4],
        R.hp_column("epochs"): 4,
        R.STOP_REASON: R.STOP_COMPLETED,
    })


def test_the_reference_point_is_fixed_by_the_protocol_not_by_what_was_run():
    trials = tradeoff_frame()
    expected = {R.FINAL_VAL_FID: 60.0, R.PARAMS_TOTAL: PARAMS_FACTOR * 1e6,
                R.TRAIN_SECONDS: SECONDS_FACTOR * 50 * 4}
    assert reference_point(trials) == pytest.approx(expected)
    # more (or more extreme) non-seed trials do not move it, unlike a min-max or nadir reference
    more = pd.concat([trials, trials.iloc[[5]].assign(**{R.PARAMS_TOTAL: 1e12})], ignore_index=True)
    assert reference_point(more) == pytest.approx(expected)


def test_a_blob_adds_no_volume_and_volumes_use_log_sizes():
    trials = tradeoff_frame().assign(**{C.USABLE: lambda f: is_usable(f)})
    ref = reference_point(trials)
    assert trials[C.USABLE].tolist() == [True, True, True, True, False, True]
    with_blob = volume(trials, (FID, SIZE), ref)
    assert with_blob == volume(trials.drop(index=4), (FID, SIZE), ref)
    # by hand in (FID, log10 params): the 1e9 trial lies beyond the 2e7 bound and adds nothing
    logs = trials.drop(index=[4, 5]).assign(**{R.PARAMS_TOTAL: lambda f: np.log10(f[R.PARAMS_TOTAL])})
    by_hand = hypervolume(logs, (FID, SIZE), (60.0, math.log10(2e7))).volume
    assert with_blob == pytest.approx(by_hand)


def random_study(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        R.STUDY: "s", R.FAMILY: "gan", R.SEED_CONFIG: [True] + [False] * (n - 1),
        R.FINAL_VAL_FID: np.r_[50.0, rng.uniform(20, 60, n - 1)],
        R.PARAMS_TOTAL: np.r_[1e6, 10 ** rng.uniform(4, 6.5, n - 1)],
        R.TRAIN_SECONDS: np.r_[100.0, 10 ** rng.uniform(0, 3, n - 1)],
        R.EPOCHS_RUN: 4, R.hp_column("epochs"): 4, R.STOP_REASON: R.STOP_COMPLETED,
    })


def test_hypervolumes_are_compared_at_equal_trial_counts():
    """Two studies drawn from one distribution, 6 and 30 trials: the raw volume favours the bigger
    study; at 6 trials each the interval of the difference covers zero."""
    small, big = random_study(6, 1), random_study(30, 2)
    ref = reference_point(pd.concat([small, big]))
    objectives = (FID, SIZE)
    assert volume(big, objectives, ref) > volume(small, objectives, ref)  # the bias: more trials, more volume
    result = compare(big, small, objectives, ref, resamples=400, seed=0)
    assert result.n == 6
    assert result.volumes[1] == pytest.approx(volume(small, objectives, ref))  # the smaller study whole
    subsampled = mean_volume(big, 6, objectives, ref, resamples=400, seed=0)
    assert result.volumes[0] == pytest.approx(subsampled, rel=0.1)
    assert result.difference.low < 0 < result.difference.high
    # a study compared with itself: estimate exactly zero
    same = compare(small, small, objectives, ref, resamples=200, seed=0)
    assert same.difference.estimate == 0.0 and same.difference.low <= 0 <= same.difference.high


def test_a_clearly_better_front_wins_at_equal_counts():
    good = random_study(10, 3).assign(**{R.FINAL_VAL_FID: lambda f: f[R.FINAL_VAL_FID] * 0.5})
    bad = random_study(10, 4)
    ref = reference_point(pd.concat([good, bad]))
    result = compare(good, bad, (FID, SIZE), ref, resamples=400, seed=0)
    assert result.difference.low > 0
