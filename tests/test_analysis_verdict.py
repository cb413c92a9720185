"""The verdict (which family wins on which axis, at what budget) against hand-computed cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.budget import BudgetCurve, budget_curves
from analysis.pareto import Objective
from analysis.verdict import (
    AXIS_ALL,
    AXIS_QUALITY,
    AXIS_SIZE,
    AXIS_SPEED,
    AXIS_TIME,
    HIGHER,
    LOWER,
    AxisVerdict,
    BudgetPoint,
    Verdict,
    budget_points,
    budget_sentence,
    decide,
    normalised_hypervolumes,
    verdict_table,
)
from study import results as R

FID, SIZE, SECONDS = Objective(R.TEST_FID), Objective(R.PARAMS_TOTAL), Objective(R.TRAIN_SECONDS)


def hand_trials() -> pd.DataFrame:
    """GAN a (FID 10, 1e3 params, 1e2 s), GAN b (30, 1e4, 1e3; dominated), GAN c diverged;
    VAE d (24, 1e2, 1e1).
    Scaled (log10 for size/time, min-max over all): a (0, .5, .5), b (1, 1, 1), d (.7, 0, 0)."""
    return pd.DataFrame({
        R.FAMILY: ["gan", "gan", "gan", "vae"],
        R.TEST_FID: [10.0, 30.0, math.nan, 24.0],
        R.FINAL_VAL_FID: [11.0, 31.0, math.nan, 25.0],
        R.PARAMS_TOTAL: [1e3, 1e4, 1e3, 1e2],
        R.TRAIN_SECONDS: [1e2, 1e3, 5.0, 1e1],
        R.IMAGES_PER_S: [500.0, 700.0, 900.0, 2000.0],
    })


def test_normalised_hypervolumes_by_hand():
    trials = hand_trials()
    # size: a dominates [0, 1.1] x [0.5, 1.1] = 1.1 * 0.6; d: [0.7, 1.1] x [0, 1.1] = 0.4 * 1.1
    expected = {"gan": pytest.approx(0.66), "vae": pytest.approx(0.44)}
    assert normalised_hypervolumes(trials, (FID, SIZE)) == expected
    assert normalised_hypervolumes(trials, (FID, SIZE, SECONDS)) == {
        "gan": pytest.approx(1.1 * 0.6 * 0.6), "vae": pytest.approx(0.4 * 1.1 * 1.1)}


def test_decide_whole_verdict():
    trials = hand_trials()
    curves = budget_curves(trials, resamples=2000, seed=0)  # GAN pool {10, 30}, VAE pool {24}
    approx = pytest.approx
    expected = Verdict(
        axes=(
            AxisVerdict(AXIS_QUALITY, "test_fid of the trial with the lowest final_val_fid", LOWER,
                        (("gan", 10.0), ("vae", 24.0)), "gan"),
            AxisVerdict(AXIS_SIZE, "normalised hypervolume of (test_fid, params_total)", HIGHER,
                        (("gan", approx(0.66)), ("vae", approx(0.44))), "gan"),
            AxisVerdict(AXIS_TIME, "normalised hypervolume of (test_fid, train_seconds)", HIGHER,
                        (("gan", approx(0.66)), ("vae", approx(0.44))), "gan"),
            AxisVerdict(AXIS_ALL, "normalised hypervolume of (test_fid, params_total, train_seconds)", HIGHER,
                        (("gan", approx(0.396)), ("vae", approx(0.484))), "vae"),
            AxisVerdict(AXIS_SPEED, "median images_per_s over trials", HIGHER,
                        (("gan", 700.0), ("vae", 2000.0)), "vae"),
        ),
        # k = 1: GAN expects (10 + 30) / 2 = 20 < 24, but its band [10, 30] reaches above 24: not clear
        budget=(BudgetPoint(1, (("gan", 20.0), ("vae", 24.0)), "gan", False),),
        summary=(
            "quality: GAN wins (GAN 10 vs VAE 24; test_fid of the trial with the lowest final_val_fid, lower "
            "is better).",
            "size vs quality: GAN wins (GAN 0.66 vs VAE 0.44; normalised hypervolume of (test_fid, "
            "params_total), "
            "higher is better).",
            "training time vs quality: GAN wins (GAN 0.66 vs VAE 0.44; normalised hypervolume of (test_fid, "
            "train_seconds), higher is better).",
            "size, time and quality: VAE wins (GAN 0.396 vs VAE 0.484; normalised hypervolume of (test_fid, "
            "params_total, train_seconds), higher is better).",
            "training speed: VAE wins (GAN 700 vs VAE 2000; median images_per_s over trials, higher is "
            "better).",
            "budget: lower expected best FID with k trials, k = 1: GAN (bootstrap bands overlap).",
        ),
    )
    assert decide(trials, curves) == expected
    table = verdict_table(decide(trials, curves))
    assert table[[R.AXIS, R.WINNER]].values.tolist() == [
        [AXIS_QUALITY, "gan"], [AXIS_SIZE, "gan"], [AXIS_TIME, "gan"], [AXIS_ALL, "vae"], [AXIS_SPEED, "vae"]]


def test_one_family_only_has_no_winners():
    trials = hand_trials().iloc[:3]
    verdict = decide(trials, budget_curves(trials, resamples=50))
    assert all(a.winner is None for a in verdict.axes)
    assert verdict.budget == ()
    assert verdict.summary[-1] == "budget: not compared (needs two families with finite FIDs)."


def curve(label, expected, low, high) -> BudgetCurve:
    return BudgetCurve(label, R.TEST_FID, tuple(range(1, len(expected) + 1)), tuple(expected), tuple(low),
                       tuple(high),
                       n_trials=len(expected), n_excluded=0, level=0.95, resamples=100, seed=0)


def test_budget_points_clear_only_when_bands_separate_and_ties_have_no_winner():
    curves = {
        "gan": curve("gan", [50, 30, 20, 10], [20, 15, 10, 5], [90, 60, 40, 15]),
        "vae": curve("vae", [40, 30, 25, 22], [35, 28, 24, 21], [45, 33, 27, 23]),
    }
    points = budget_points(curves)
    assert points == (
        BudgetPoint(1, (("gan", 50), ("vae", 40)), "vae", False),
        BudgetPoint(2, (("gan", 30), ("vae", 30)), None, False),
        BudgetPoint(3, (("gan", 20), ("vae", 25)), "gan", False),
        BudgetPoint(4, (("gan", 10), ("vae", 22)), "gan", True),  # GAN's band tops out at 15 < 21
    )
    assert budget_sentence(points) == ("budget: lower expected best FID with k trials, k = 1: VAE "
                                       "(bootstrap bands "
                                       "overlap); k = 2: tie; k = 3-4: GAN (bands separate at k = 4).")


def test_budget_points_stop_at_the_smaller_study():
    curves = {"gan": curve("gan", [5, 4, 3], [1, 1, 1], [9, 9, 9]), "vae": curve("vae", [6], [6], [6])}
    assert [p.budget for p in budget_points(curves)] == [1]
