"""Pareto fronts and hypervolumes against hand-computed cases (analysis/pareto.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.pareto import (
    MAXIMIZE,
    MINIMIZE,
    Hypervolume,
    Objective,
    ParetoFront,
    hypervolume,
    hypervolume_of_points,
    nadir_reference,
    pareto_front,
)
from study import results as R

FID, SIZE, SECONDS = Objective(R.TEST_FID), Objective(R.PARAMS_TOTAL), Objective(R.TRAIN_SECONDS)


def frame(rows: dict[str, tuple], columns=(R.TEST_FID, R.PARAMS_TOTAL)) -> pd.DataFrame:
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(columns), dtype=float)


def test_ties_are_broken_by_the_other_objective_and_nan_inf_rows_are_excluded():
    trials = frame({
        "a": (10, 500),  # same FID as b but larger: dominated by b
        "b": (10, 300),
        "c": (5, 900),
        "d": (20, 100),
        "e": (25, 100),  # same size as d, worse FID: dominated by d
        "f": (math.nan, 50),  # diverged: no FID
        "g": (3, math.inf),  # impossible size
        "h": (-math.inf, 10),
    })
    assert pareto_front(trials, (FID, SIZE)) == ParetoFront(
        objectives=(FID, SIZE), front=("b", "c", "d"), dominated=("a", "e"), excluded=("f", "g", "h"))


def test_exact_duplicates_are_on_the_front_together_or_dominated_together():
    trials = frame({"a": (10, 300), "b": (10, 300), "c": (5, 900), "d": (12, 400), "e": (12, 400)})
    assert pareto_front(trials, (FID, SIZE)) == ParetoFront(
        objectives=(FID, SIZE), front=("a", "b", "c"), dominated=("d", "e"), excluded=())


def test_mixed_directions_maximise_inception_score_minimise_size():
    trials = frame({"a": (9.0, 300), "b": (8.0, 100), "c": (7.0, 200), "d": (9.0, 400)},
                   columns=(R.TEST_SAMPLE_IS, R.PARAMS_TOTAL))
    objectives = (Objective(R.TEST_SAMPLE_IS, MAXIMIZE), Objective(R.PARAMS_TOTAL, MINIMIZE))
    assert pareto_front(trials, objectives) == ParetoFront(
        objectives=objectives, front=("a", "b"), dominated=("c", "d"), excluded=())


def test_a_single_objective_front_is_every_row_at_the_optimum():
    trials = pd.DataFrame({R.TEST_FID: [4.0, 2.0, 2.0, np.nan]}, index=[10, 11, 12, 13])
    assert pareto_front(trials, [FID]) == ParetoFront(objectives=(FID,), front=(11, 12), dominated=(10,),
                                                      excluded=(13,))


def test_three_objectives_keep_rows_that_win_on_any_axis():
    trials = frame({"a": (10, 100, 50), "b": (5, 500, 50), "c": (20, 300, 5), "d": (20, 300, 60)},
                   columns=(R.TEST_FID, R.PARAMS_TOTAL, R.TRAIN_SECONDS))
    front = pareto_front(trials, (FID, SIZE, SECONDS))
    assert (front.front, front.dominated) == (("a", "b", "c"), ("d",))


def test_every_row_non_finite_gives_an_empty_front():
    trials = frame({"a": (math.nan, 1), "b": (1, math.nan)})
    assert pareto_front(trials, (FID, SIZE)) == ParetoFront((FID, SIZE), (), (), ("a", "b"))


def test_bad_objectives_are_refused_with_the_available_columns():
    trials = frame({"a": (1, 2)})
    with pytest.raises(ValueError, match="not a column"):
        pareto_front(trials, [Objective("fid")])
    with pytest.raises(ValueError, match="direction 'down'"):
        pareto_front(trials, [Objective(R.TEST_FID, "down")])
    with pytest.raises(ValueError, match="at least one objective"):
        pareto_front(trials, [])


def test_hypervolume_2d_by_hand_counts_rows_beyond_the_reference_and_nan_rows():
    # staircase (1,5), (2,3), (3,1) against (4,6): 1*1 + 1*3 + 1*5 = 9; (5, 1) lies beyond x = 4;
    # (2, 6) touches the reference (not strictly better) and adds nothing.
    trials = frame({"a": (1, 5), "b": (2, 3), "c": (3, 1), "dup": (2, 3), "far": (5, 1), "edge": (2, 6),
                    "nan": (math.nan, 1)})
    assert hypervolume(trials, (FID, SIZE), (4, 6)) == Hypervolume(
        volume=9.0, reference=(4.0, 6.0), n_counted=4, n_beyond_reference=2, n_excluded=1)


def test_hypervolume_with_a_maximised_objective():
    # IS maximised against reference IS = 1: (IS 9, size 2) and (IS 5, size 1), size reference 4.
    # In minimisation terms (-9, 2), (-5, 1) vs (-1, 4): 4*2 (from -9 to -5, size 2..4) + 4*3 = 20.
    trials = frame({"a": (9, 2), "b": (5, 1)}, columns=(R.TEST_SAMPLE_IS, R.PARAMS_TOTAL))
    result = hypervolume(trials, (Objective(R.TEST_SAMPLE_IS, MAXIMIZE), SIZE), (1, 4))
    assert result == Hypervolume(volume=20.0, reference=(1.0, 4.0), n_counted=2, n_beyond_reference=0,
                                 n_excluded=0)


def test_hypervolume_3d_by_hand():
    # boxes [1,3]x[1,3]x[2,3] (volume 4) and [2,3]x[2,3]x[1,3] (volume 2) overlap in a unit cube: 5
    points = np.array([[1.0, 1.0, 2.0], [2.0, 2.0, 1.0], [2.5, 2.5, 2.5]])  # the third is dominated
    assert hypervolume_of_points(points, np.array([3.0, 3.0, 3.0])) == 5.0


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_agrees_with_optunas_exact_implementation(dims):
    from optuna._hypervolume import compute_hypervolume  # private, but Optuna's own exact WFG code

    rng = np.random.default_rng(dims)
    for _ in range(5):
        points = rng.random((25, dims))
        reference = np.full(dims, 1.2)
        expected = compute_hypervolume(points, reference)
        assert hypervolume_of_points(points, reference) == pytest.approx(expected, rel=1e-12)


def test_nadir_reference_is_worst_plus_a_tenth_of_the_range_in_each_direction():
    trials = frame({"a": (10, 2), "b": (30, 8), "c": (math.nan, 100)}, columns=(R.TEST_FID, R.TEST_SAMPLE_IS))
    objectives = (FID, Objective(R.TEST_SAMPLE_IS, MAXIMIZE))
    assert nadir_reference(trials, objectives) == pytest.approx((32.0, 1.4))
    assert hypervolume(trials, objectives, nadir_reference(trials, objectives)).n_counted == 2


def test_the_fronts_benchmark_smoke_test_prints_its_figures(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_analysis.py"
    spec = importlib.util.spec_from_file_location("analysis_fronts_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke-test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "trials" and [line.split()[0] for line in lines[1:]] == ["16", "64"]
