"""bench_search's pure computation on hand-made histories: anytime curves, budgets, figure of merit."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_search as B  # noqa: E402

from study import results as R  # noqa: E402


def history(rows: list[tuple[str, int, float, float]]) -> pd.DataFrame:
    """(trial, epoch, cumulative train seconds, val_fid) rows -> a history.parquet-like frame."""
    return pd.DataFrame(rows, columns=[R.TRIAL_ID, R.EPOCH, R.TRAIN_SECONDS, R.VAL_FID])


# trial a: 3 epochs of 2 s; trial b: stopped after 1 epoch of 1 s; trial c: 2 epochs of 4 s, one diverged
HISTORY = history([
    ("a", 1, 2.0, 50.0), ("a", 2, 4.0, 40.0), ("a", 3, 6.0, 45.0),
    ("b", 1, 1.0, 30.0),
    ("c", 1, 4.0, 35.0), ("c", 2, 8.0, math.nan),
])


def test_the_anytime_curve_adds_each_epochs_training_seconds_in_run_order():
    curve = B.anytime_curve(HISTORY)
    assert list(curve[B.COMPUTE_S]) == [2.0, 4.0, 6.0, 7.0, 11.0, 15.0]
    # best so far: 45 does not raise it, the diverged (NaN) epoch keeps it
    assert list(curve[B.BEST_SO_FAR]) == [50.0, 40.0, 40.0, 30.0, 30.0, 30.0]
    assert B.total_compute(curve) == 15.0 and B.final_best(curve) == 30.0


def test_compute_is_every_second_a_trial_spent_when_the_study_records_it():
    """trial_seconds (training, validation, checkpoints) per epoch, plus each trial's scoring after its
    last epoch (trials.parquet's trial_seconds beyond the history's); training seconds only for a
    study from before the column."""
    spent = HISTORY.assign(**{R.TRIAL_SECONDS: HISTORY[R.TRAIN_SECONDS] * 2})  # validation doubles it
    trials = pd.DataFrame({R.TRIAL_ID: ["a", "b", "c"], R.TRIAL_SECONDS: [12.0 + 3, 2.0 + 1, 16.0]})
    assert B.compute_column(spent) == R.TRIAL_SECONDS and B.compute_column(HISTORY) == R.TRAIN_SECONDS
    after = B.end_seconds(trials, spent)
    assert after == {"a": 3.0, "b": 1.0, "c": 0.0}
    curve = B.anytime_curve(spent, after_last=after)
    assert list(curve[B.COMPUTE_S]) == [4.0, 8.0, 15.0, 18.0, 26.0, 34.0]
    assert B.end_seconds(trials, HISTORY) == {}  # an old study: no end seconds to add


def test_the_trial_order_from_the_trials_table_decides_the_curve():
    curve = B.anytime_curve(HISTORY, trial_order=["c", "b", "a"])
    assert list(curve[R.TRIAL_ID]) == ["c", "c", "b", "a", "a", "a"]
    assert list(curve[B.COMPUTE_S]) == [4.0, 8.0, 9.0, 11.0, 13.0, 15.0]
    assert list(curve[B.BEST_SO_FAR]) == [35.0, 35.0, 30.0, 30.0, 30.0, 30.0]
    with pytest.raises(ValueError, match="not in trial_order"):
        B.anytime_curve(HISTORY, trial_order=["a", "b"])


def test_an_epoch_rerun_after_a_restore_counts_once():
    rerun = pd.concat([HISTORY.iloc[:2], history([("a", 2, 4.5, 41.0)]), HISTORY.iloc[2:]])
    curve = B.anytime_curve(rerun)
    assert list(curve[B.COMPUTE_S])[:3] == [2.0, 4.5, 6.0]  # the re-run's seconds, once
    assert list(curve[B.BEST_SO_FAR])[:3] == [50.0, 41.0, 41.0]


def test_best_at_a_budget_and_seconds_to_reach_a_target():
    curve = B.anytime_curve(HISTORY)
    assert math.isnan(B.best_at(curve, 1.9))  # nothing evaluated yet
    assert B.best_at(curve, 2.0) == 50.0 and B.best_at(curve, 6.9) == 40.0 and B.best_at(curve, 7.0) == 30.0
    assert B.seconds_to_reach(curve, 40.0) == 4.0
    assert B.seconds_to_reach(curve, 30.0) == 7.0
    assert B.seconds_to_reach(curve, 29.9) == math.inf


def test_the_figure_of_merit_is_the_share_of_random_searchs_compute_to_match_its_best():
    random = B.anytime_curve(history([("r1", 1, 10.0, 60.0), ("r1", 2, 20.0, 50.0),
                                      ("r2", 1, 10.0, 55.0), ("r2", 2, 20.0, 40.0)]))  # 40 after 40 s
    tpe = B.anytime_curve(history([("t1", 1, 5.0, 45.0), ("t2", 1, 5.0, 39.0), ("t2", 2, 10.0, 30.0)]))
    assert B.fraction_to_match(random, tpe) == pytest.approx(10.0 / 40.0)
    slow = B.anytime_curve(history([("t1", 1, 5.0, 45.0)]))
    assert B.fraction_to_match(random, slow) == math.inf
    curves = {B.BASELINE: [random, random], B.CHALLENGER: [tpe, slow]}
    assert B.figure_of_merit(curves) == [0.25, math.inf]
    assert B.describe_fractions([0.25, math.inf]) == (
        "0.25, not reached (median: not reached; reached in 1/2; goal <= 0.33)")
    assert B.describe_fractions([0.25, 0.5, 0.75]).startswith("0.25, 0.50, 0.75 (median 0.50; reached in 3/3")


def test_the_summary_compares_arms_at_the_smallest_total_compute():
    long = B.anytime_curve(HISTORY)  # 15 s, best 30
    short = B.anytime_curve(history([("x", 1, 3.0, 42.0), ("y", 1, 3.0, 36.0)]))  # 6 s, best 36
    table, budget = B.summarize({"random-none": [long, long], "tpe-asha": [short, B.anytime_curve(HISTORY)]})
    assert budget == 6.0
    rows = table.set_index(B.ARM)
    assert rows.loc["random-none", "best_at_budget_mean"] == 40.0  # at 6 s trial b has not run yet
    assert rows.loc["tpe-asha", "best_at_budget_min"] == 36.0
    assert rows.loc["tpe-asha", "best_at_budget_max"] == 40.0
    assert rows.loc["tpe-asha", "compute_s_mean"] == pytest.approx(10.5)
    assert rows.loc["tpe-asha", "final_best_mean"] == pytest.approx(33.0)


def test_curves_on_a_grid_are_step_functions_held_after_their_end():
    curve = B.anytime_curve(HISTORY)
    grid = np.array([0.0, 2.0, 3.0, 7.0, 20.0])
    values = B.on_grid([curve], grid)
    assert values.shape == (1, 5)
    np.testing.assert_array_equal(values[0], [np.nan, 50.0, 50.0, 30.0, 30.0])


def test_bad_counts_exit_2_with_a_message_and_write_nothing(tmp_path, capsys):
    assert B.main(["--reps", "0", "--out-dir", str(tmp_path / "out")]) == B.EXIT_BAD_INPUT
    assert "error: --reps 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert B.main(["--summarize", "--out-dir", str(tmp_path)]) == B.EXIT_BAD_INPUT
    assert "found no studies" in capsys.readouterr().err


def test_summarize_reads_finished_studies_and_writes_the_table_and_figure(tmp_path, capsys):
    """--summarize on hand-made study directories: trials.parquet's order, the printed figure of merit."""
    studies = {
        "random-none": history([("r1", 1, 10.0, 60.0), ("r1", 2, 20.0, 50.0), ("r2", 1, 10.0, 40.0)]),
        "tpe-asha": history([("t1", 1, 5.0, 45.0), ("t2", 1, 5.0, 39.0)]),
    }
    for arm, frame in studies.items():
        study_dir = tmp_path / "studies" / B.study_name("gan", arm, 0)
        study_dir.mkdir(parents=True)
        frame.to_parquet(study_dir / R.HISTORY_FILE)
        order = list(dict.fromkeys(frame[R.TRIAL_ID]))[::-1]  # the trials table decides the order
        pd.DataFrame({R.TRIAL_ID: order}).to_parquet(study_dir / R.TRIALS_FILE)
    argv = ["--summarize", "--families", "gan", "--arms", "random-none", "tpe-asha", "--reps", "1",
            "--out-dir", str(tmp_path)]
    assert B.main(argv) == 0
    out = capsys.readouterr().out
    # random: r2 first (10 s, FID 40) then r1 (30 s in all); TPE: t2 first reaches 39 <= 40 after 5 s
    assert "per rep: 0.17 (median 0.17; reached in 1/1" in out
    table = pd.read_csv(tmp_path / B.TABLE_NAME).set_index(B.ARM)
    assert list(table["compute_s_mean"]) == [30.0, 10.0]
    assert table.loc["random-none", "best_at_budget_mean"] == 40.0  # at the common 10 s
    assert (tmp_path / B.FIGURE_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reps = pd.read_csv(tmp_path / B.REPS_TABLE_NAME).set_index(B.ARM)
    assert list(reps["rep"]) == [0, 0] and list(reps["final_best"]) == [40.0, 39.0]
    assert reps.loc["random-none", "fraction_of_random_compute"] == pytest.approx(10.0 / 30.0)  # r2 first
    assert reps.loc["tpe-asha", "fraction_of_random_compute"] == pytest.approx(5.0 / 30.0)


def test_iqm_trims_a_quarter_each_side_and_the_bootstrap_interval_holds_it():
    assert float(B.iqm(np.array([1.0, 2.0, 3.0]))) == 2.0  # under 4 values: the mean
    assert float(B.iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, 4.0, 5.0, 6.0]))) == pytest.approx(3.5)
    values = np.array([[10.0, 1.0], [20.0, 1.0], [30.0, 1.0], [40.0, 1.0]])  # (reps x grid)
    low, high = B.bootstrap_iqm(values)
    assert low[0] < float(B.iqm(values[:, 0])) < high[0] and 10.0 <= low[0] and high[0] <= 40.0
    assert low[1] == high[1] == 1.0  # no spread, no interval
    shared = np.zeros((5, 4), dtype=int)  # every resample: rep 0 four times
    low, high = B.bootstrap_iqm(values, indices=shared)
    assert low[0] == high[0] == 10.0


def test_only_repetitions_with_every_arm_are_compared(tmp_path):
    studies = tmp_path / "studies"
    for arm, rep in (("random-none", 0), ("tpe-asha", 0), ("random-none", 1), ("tpe-asha", 2)):
        (studies / B.study_name("gan", arm, rep)).mkdir(parents=True)
        (studies / B.study_name("gan", arm, rep) / R.HISTORY_FILE).write_bytes(b"")
    assert B.complete_reps(studies, "gan", ["random-none", "tpe-asha"], replay=False) == [0]
    # the replayed arm needs only random-none's studies
    assert B.complete_reps(studies, "gan", ["random-none", "random-asha"], replay=True) == [0, 1]
    assert B.complete_reps(studies, "gan", ["random-asha"], replay=False) == []


def test_an_arm_a_family_never_ran_is_left_out_not_every_repetition(tmp_path):
    studies = tmp_path / "studies"
    for arm in ("random-none", "tpe-asha"):
        (studies / B.study_name("gan", arm, 0)).mkdir(parents=True)
        (studies / B.study_name("gan", arm, 0) / R.HISTORY_FILE).write_bytes(b"")
    arms = ["random-none", "random-asha", "tpe-asha", "tpe-none"]
    assert B.present_arms(studies, "gan", arms, replay=True) == ["random-none", "random-asha", "tpe-asha"]
    assert B.present_arms(studies, "gan", arms, replay=False) == ["random-none", "tpe-asha"]
    assert B.present_arms(studies, "vae", arms, replay=True) == []


@pytest.mark.slow  # runs the launcher (which refuses before Ray starts)
def test_a_failed_launcher_study_ends_the_benchmark_with_one_error_line_and_no_traceback(tmp_path, capfd):
    """Bad input (exit 2) is the launcher's own error: line; the benchmark adds none and exits 2."""
    code = B.main(["--families", "vae", "--arms", "random-none", "--reps", "1", "--trials", "2",
                   "--preset", "smoke", "--quiet", "--out-dir", str(tmp_path), "--data-dir",
                   str(tmp_path / "no-mnist-here")])
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        line for line in err.splitlines() if line.startswith("error: MNIST was not found")]
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert not (tmp_path / "studies" / "vae-random-none-rep0" / "history.parquet").exists()
    failed = subprocess.CalledProcessError(1, [sys.executable, "-m", "study.launch", "--name",
                                               "gan-tpe-asha-rep1"])
    assert B.launcher_failed(failed) == 1
    assert "error: the launcher's study gan-tpe-asha-rep1 exited with 1" in capfd.readouterr().err


def write_study(studies: Path, arm: str, rows: list[tuple[str, str, int, float, float]]) -> None:
    """(trial, config_json, epoch, loss_d, val_fid) rows -> a study directory of the GAN's repetition 0."""
    study_dir = studies / B.study_name("gan", arm, 0)
    study_dir.mkdir(parents=True)
    frame = pd.DataFrame(rows, columns=[R.TRIAL_ID, R.CONFIG_JSON, R.EPOCH, R.LOSS_D, R.VAL_FID])
    frame.assign(**{R.TRAIN_SECONDS: frame[R.EPOCH] * 10.0}).drop(columns=R.CONFIG_JSON).to_parquet(
        study_dir / R.HISTORY_FILE)
    frame.drop_duplicates(R.TRIAL_ID)[[R.TRIAL_ID, R.CONFIG_JSON]].to_parquet(study_dir / R.TRIALS_FILE)


def test_studies_whose_shared_configuration_trained_differently_are_not_paired(tmp_path, capsys):
    """Issue 28: GAN seed 0's TPE study, run on another machine, trained the random study's first
    configurations differently (loss_d 0.39985 vs 0.39989 after one epoch); pairing by seed assumes
    shared trials train alike, so the benchmark refuses, naming the studies, and writes nothing."""
    studies = tmp_path / "studies"
    write_study(studies, "random-none", [("r1", '{"seed": 0, "lr": 1}', 1, 0.3998526911581716, 187.6),
                                         ("r1", '{"seed": 0, "lr": 1}', 2, 0.1, 150.0),
                                         ("r2", '{"seed": 0, "lr": 2}', 1, 1.2, 174.7)])
    write_study(studies, "tpe-asha", [("t1", '{"seed": 0, "lr": 2}', 1, 1.2, 174.7),  # repeated exactly
                                      ("t2", '{"seed": 0, "lr": 1}', 1, 0.3998526911581716, 187.6),
                                      ("t2", '{"seed": 0, "lr": 1}', 2, 0.1, 150.0),
                                      ("t3", '{"seed": 0, "lr": 3}', 1, 0.5, 120.0)])
    dirs = [studies / B.study_name("gan", arm, 0) for arm in ("random-none", "tpe-asha")]
    assert B.unrepeated_trials(dirs) is None
    write_study(studies, "tpe-none", [("n1", '{"seed": 0, "lr": 1}', 1, 0.3998930838800246, 187.7)])
    assert B.unrepeated_trials([*dirs, studies / B.study_name("gan", "tpe-none", 0)]) == (
        "gan-random-none-rep0 trial r1 and gan-tpe-none-rep0 trial n1 ran the same configuration and seed "
        "but differ at epoch 1: loss_d 0.3998526911581716 vs 0.3998930838800246")
    argv = ["--summarize", "--families", "gan", "--arms", "random-none", "tpe-asha", "tpe-none",
            "--out-dir", str(tmp_path)]
    assert B.main(argv) == B.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and err.startswith("error: gan repetition 0 cannot be paired: "
                                                      "gan-random-none-rep0 trial r1 and gan-tpe-none-rep0")
    assert not (tmp_path / B.TABLE_NAME).exists() and not (tmp_path / B.FIGURE_NAME).exists()
    assert B.main([*argv[:6], *argv[7:]]) == 0  # without the TPE study from elsewhere, the rest pair
