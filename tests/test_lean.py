"""Lean trials (issue 26): a trial scores what is read when it is read (the scheduler's FID each epoch,
the whole validation suite at its last epoch or, for a stopped trial, at its stop epoch after the
search), the VAE's importance-weighted NLL only for the trials a report picks, and every second a
trial spends is counted (R.TRIAL_SECONDS). Real MNIST, real metrics, tiny models; no Ray."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch
from ray import tune

from models import TrainConfig, VAEConfig
from study import results as R
from study.data import MNISTSplits
from study.engine.scoring import ScoringWorker
from study.engine.trainable import TrialSetup, stopped_trial_summary
from study.loop.run_dir import RunDirectory
from study.loop.trial import run_trial
from study.metrics.evaluator import prepare_evaluation
from study.quality_gate import described_trials
from study.store import StudyStore

TINY_VAE = VAEConfig(arch="mlp", latent_dim=4, enc_widths=(32,), dec_widths=(32,), lr=1e-3)
EVAL_SAMPLES = 120  # > PRDC's k, so the whole suite has every metric
SUITE_ONLY = set(R.VALIDATION_METRICS) - set(R.LEAN_VALIDATION_METRICS)  # KID, PRDC


@pytest.fixture(scope="module")
def small(mnist) -> MNISTSplits:
    return MNISTSplits(train=mnist.train, val=mnist.val, test=mnist.test, data_dir=mnist.data_dir)


@pytest.fixture(scope="module")
def assets(small):
    torch.set_num_threads(1)
    return prepare_evaluation(small, iw_images=20, prdc_images=EVAL_SAMPLES)  # real statistics: disk cache


def config(epochs: int) -> TrainConfig:
    return TrainConfig(model=TINY_VAE, epochs=epochs, batch_size=64, train_subset=256, seed=3,
                       eval_samples=EVAL_SAMPLES, eval_batch_size=EVAL_SAMPLES)


def evaluator(assets, small, epochs: int):
    return assets.evaluator(config(epochs), small, torch.device("cpu"))


def test_lean_validation_is_the_suites_nearly_free_part_with_the_same_numbers(small, assets):
    model = run_trial(config(1), small).model
    ev = evaluator(assets, small, 1)
    lean, suite = ev.validation(model, suite=False), ev.validation(model)
    assert set(lean) == set(R.LEAN_VALIDATION_METRICS) and set(suite) == set(R.VALIDATION_METRICS)
    assert lean == {k: suite[k] for k in lean}  # exactly: the IS shuffles its splits as in the suite
    assert all(math.isfinite(v) for v in suite.values())


def test_the_likelihood_later_gives_the_numbers_the_trial_would_have(small, assets):
    model = run_trial(config(1), small).model
    ev = evaluator(assets, small, 1)
    without, whole = ev.test(model, nll=False), ev.test(model)
    assert R.TEST_BINARIZED_NLL not in without and math.isfinite(whole[R.TEST_BINARIZED_NLL])
    assert without == {k: whole[k] for k in without}
    later = ev.likelihood(model)
    assert later == {k: whole[k] for k in (R.TEST_RECON_MSE, R.TEST_BCE_NELBO, R.TEST_BINARIZED_NLL,
                                            R.IW_K, R.IW_IMAGES)}


def test_a_trial_scores_the_suite_at_its_last_epoch_and_counts_every_second(small, assets):
    result = run_trial(config(3), small, evaluator=evaluator(assets, small, 3), suite_epochs=(),
                       test_nll=False)
    first, last = result.history[:-1], result.history[-1]
    assert all(R.VAL_FID in r and not SUITE_ONLY & r.keys() for r in first)  # the scheduler's FID only
    assert set(R.VALIDATION_METRICS) <= last.keys()
    row = result.summary
    assert all(math.isfinite(row[k]) for k in SUITE_ONLY)  # the row's suite: the last epoch's
    assert R.TEST_BINARIZED_NLL not in row and math.isfinite(row[R.TEST_BCE_NELBO])
    for record in result.history:
        assert record[R.TRIAL_SECONDS] >= record[R.TRAIN_SECONDS] + record[R.EVAL_SECONDS]
    assert row[R.TRIAL_SECONDS] >= last[R.TRIAL_SECONDS] + row[R.TEST_EVAL_SECONDS]
    assert row[R.TRIAL_SECONDS] >= row[R.TRAIN_SECONDS] + sum(r[R.EVAL_SECONDS] for r in result.history)


def test_a_stopped_trials_row_holds_the_whole_suite_of_its_stop_epoch(small, assets, tmp_path):
    """As ASHA stops a trial at a rung: its checkpoint of epoch 2 (lean record) scored after the search
    gives the row a run of 2 epochs gives (the same model on a CPU: the same numbers)."""
    out = RunDirectory(tmp_path)
    run_trial(config(4), small, out, evaluator=evaluator(assets, small, 4), suite_epochs=(),
              checkpoint_epochs={2}, test_nll=False)
    stop_checkpoint = tmp_path / R.CHECKPOINTS_DIR / R.checkpoint_name(2)
    row = stopped_trial_summary(stop_checkpoint, small, assets, torch.device("cpu"), nll=False)
    two = run_trial(config(2), small, evaluator=evaluator(assets, small, 2), suite_epochs=(),
                    test_nll=False).summary
    assert row[R.STOP_REASON] == R.STOP_EARLY and row[R.EPOCHS_RUN] == 2
    for column in (*R.VALIDATION_METRICS[1:], R.FINAL_VAL_FID, R.TEST_FID, R.TEST_KID):
        assert math.isfinite(row[column]) and row[column] == two[column], column
    assert R.TEST_BINARIZED_NLL not in row
    assert row[R.TRIAL_SECONDS] >= row[R.TRAIN_SECONDS] + row[R.TEST_EVAL_SECONDS]


def test_scoring_worker_keeps_no_model_between_trials(small, assets, tmp_path):
    """What a CPU can show of 'memory released between trials' (study/engine/scoring.py): once a task
    returned, nothing references the model it scored (release_memory then frees a GPU's blocks)."""
    run_trial(config(2), small, RunDirectory(tmp_path), evaluator=evaluator(assets, small, 2),
              checkpoint_epochs={1}, suite_epochs=())
    worker = ScoringWorker(TrialSetup(data=small, assets=assets, test_nll=False))
    checkpoint = f"{R.CHECKPOINTS_DIR}/{R.checkpoint_name(2)}"
    scored = worker.likelihood(StudyStore(tmp_path), checkpoint)
    assert math.isfinite(scored[R.TEST_BINARIZED_NLL]) and scored[R.LIKELIHOOD_SECONDS] > 0
    assert worker.last_model is not None and not worker.holds_model()
    stop_dir = tmp_path / "tune_checkpoint"
    stop_dir.mkdir()
    (stop_dir / R.checkpoint_name(1)).write_bytes(
        (tmp_path / R.CHECKPOINTS_DIR / R.checkpoint_name(1)).read_bytes())
    row = worker.stopped(tune.Checkpoint.from_directory(str(stop_dir)))
    assert row[R.EPOCHS_RUN] == 1 and math.isfinite(row[R.VAL_KID])
    assert not worker.holds_model()


def test_described_trials_are_the_rows_the_reports_comparison_table_describes(tiny_study_dirs):
    from analysis.load import load_study
    from analysis.tables import comparison_table

    for study_dir in (tiny_study_dirs.gan, tiny_study_dirs.vae):
        trials = pd.read_parquet(study_dir / R.TRIALS_FILE)  # as the study writes it
        described = set(trials.loc[described_trials(trials), R.TRIAL_ID])
        assert described == set(comparison_table(load_study(study_dir).trials)[R.TRIAL_ID])
        assert 0 < len(described) < len(trials)  # some trials are not described: they skip the NLL


def test_replicates_start_the_longest_runs_first_and_keep_their_runs():
    """Longest-processing-time-first (issue 26, item 5): a slot does not idle at the end while one long
    run (the DCGAN's) finishes alone; the runs are the planned ones."""
    from study.followups.replicate_plan import ReplicateRun, longest_first

    trials = pd.DataFrame({R.TRIAL_ID: ["fast", "slow", "mid"], R.TRAIN_SECONDS: [8.0, 80.0, 40.0],
                           R.EPOCHS_RUN: [4, 8, 8]})
    runs = [ReplicateRun(source, seed, False, config(4)) for source in ("fast", "slow", "mid", "gone")
            for seed in (1, 2)]
    ordered = longest_first(runs, trials)
    assert [(r.source_trial_id, r.seed) for r in ordered] == [
        ("gone", 1), ("gone", 2), ("slow", 1), ("slow", 2), ("mid", 1), ("mid", 2), ("fast", 1), ("fast", 2)]
    assert sorted(ordered, key=runs.index) == runs


def test_the_study_size_and_the_epochs_a_scheduler_is_expected_to_leave(data_dir):
    from study.engine.plan import expected_epochs
    from study.engine.study_run import size_line
    from study.launch import build_parser, plan_from_args

    args = build_parser().parse_args(["--family", "gan", "--quick", "--data-dir", str(data_dir),
                                      "--trials", "8", "--grace-period", "4", "--reduction-factor", "2"])
    quick = plan_from_args(args)
    # ASHA with a first rung at epoch 4 (factor 2): rungs at epochs 4 and 8, half the trials go on past 4
    assert expected_epochs(quick) == 4 + 4 / 2
    assert expected_epochs(dataclasses.replace(quick, scheduler="none")) == quick.max_epochs == 8
    assert size_line(quick, 4000, 2) == ("size: 8 trials x up to 8 epochs x 4,000 training images = 0.256 M "
                                         "images trained at most (the asha scheduler: about 6.0 epochs per "
                                         "trial, 0.192 M); 2 trial(s) at once")


def test_the_likelihood_step_scores_only_the_picked_trials_that_lack_it():
    from study.followups.picked_nll import missing

    trials = pd.DataFrame({R.TRIAL_ID: ["a", "b", "c"], R.TEST_BINARIZED_NLL: [90.0, math.nan, math.nan]})
    assert missing(trials, ["a", "b"]) == ["b"]  # a re-run (python -m study.replicate) redoes nothing
    assert missing(trials.drop(columns=R.TEST_BINARIZED_NLL), ["a", "c"]) == ["a", "c"]


@pytest.mark.slow
def test_a_scoring_pool_does_without_the_workers_the_cluster_cannot_start(small):
    import ray

    from study.engine.cluster import code_runtime_env
    from study.engine.scoring import scoring_pool

    # one CPU and three one-CPU workers asked for (slots counted before a node was lost): the pool
    # scores with the worker that started, where it used to wait for ever on the two that never could
    ray.init(address="local", num_cpus=1, include_dashboard=False, runtime_env=code_runtime_env())
    try:
        setup = TrialSetup(data=small, assets=None)
        with scoring_pool(setup, workers=3, cpus=1, gpus=0, place_timeout_s=5) as score:
            assert score("holds_model", [(), (), (), ()]) == [False] * 4
    finally:
        ray.shutdown()
