"""`python -m study.launch`: invalid input, 4-trial GAN and VAE studies, interrupt + resume.

The studies are real: a local Ray with 2 CPUs started by the launcher, OptunaSearch, ASHA,
the real metrics, MNIST (the smoke preset: 2,000 images, 1/8-width networks, 4 epochs).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest

from models.config import FAMILIES, ConfigError
from search_spaces import seed_configs
from study import launch
from study import results as R
from study.engine import cluster, preflight, search
from study.engine.plan import OBJECTIVES, PARETO_METRICS, SAMPLERS, StudyPlan
from study.engine.trial_tables import TRIAL_COLUMNS
from study.launch import plan_from_args
from tests.conftest import REPO_ROOT

STUDY_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_args(data_dir, storage: Path | str, name: str, *extra: str, num_cpus: int = 2) -> list[str]:
    """The launcher's command line for a smoke study. A test that asserts a scheduler decision passes
    num_cpus=1: one trial at a time, so which trial reaches an ASHA rung first is the trial order
    (the seeded sampler's), not the machine's load."""
    return [sys.executable, "-m", "study.launch", "--smoke-test", "--data-dir", str(data_dir),
            "--storage-path", str(storage), "--name", name, "--num-cpus", str(num_cpus),
            "--dashboard-port", str(free_port()), *extra]


def run_launcher(args: list[str], on_line=None) -> tuple[int, str]:
    """Run the launcher, streaming its output to `on_line(line, process)`; returns (rc, output)."""
    process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line, process)
        rc = process.wait(timeout=STUDY_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    return rc, "".join(lines)


def dashboard_refuses_requests_without_the_token(line: str, seen: dict) -> None:
    if line.startswith("Ray dashboard: http://") and "status" not in seen:
        url = line.split()[2]
        seen["url"] = url
        try:
            urllib.request.urlopen(url + "/api/version", timeout=10)
            seen["status"] = 200
        except urllib.error.HTTPError as exc:
            seen["status"] = exc.code


def asha_decisions(plan: StudyPlan, table: pd.DataFrame, history: pd.DataFrame) -> dict[str, int]:
    """trial -> the epoch at which the study's ASHA stops it, replaying the recorded validation FIDs
    one trial after another in creation order (how a study with one trial slot runs them) through
    the scheduler the launcher builds (search.asha_stop_epochs, which bench_search's replayed
    random + ASHA arm rests on: the studies checked here test it against real decisions)."""
    return search.asha_stop_epochs(plan, history, list(table[R.TRIAL_ID]))


def check_study(study_dir: Path, family: str, trials: int, min_stopped: int | None = 1) -> pd.DataFrame:
    """What every finished study must hold; returns its trials table. Its ASHA decisions are checked
    against a replay of its recorded results: the studies checked here run one trial at a time (see
    launch_args), so the decisions do not depend on the machine's load."""
    table = pd.read_parquet(study_dir / R.TRIALS_FILE)
    history = pd.read_parquet(study_dir / R.HISTORY_FILE)
    assert list(table.columns[: len(TRIAL_COLUMNS)]) == list(TRIAL_COLUMNS)
    assert len(table) == trials and table[R.TRIAL_ID].is_unique
    assert set(table[R.FAMILY]) == {family}
    assert any(c.startswith(R.HP_PREFIX) for c in table.columns)
    assert {c for c in table.columns if c.startswith(R.PARAMS_PREFIX)} >= {R.PARAMS_TOTAL}
    # the seed studies' configurations are the first trials
    plan = StudyPlan.from_json((study_dir / R.STUDY_JSON).read_text())
    expected_seeds = [c.to_json() for c in seed_configs(family, plan.space())]
    assert table[R.CONFIG_JSON].tolist()[:2] == expected_seeds
    assert table[R.SEED_CONFIG].tolist() == [True, True] + [False] * (trials - 2)
    # ASHA stopped exactly the trials its rungs stop given the recorded FIDs (at least min_stopped),
    # at a rung, and they still have test metrics
    # (min_stopped None: a study run several trials at a time, whose decisions are not checked)
    stopped = table[table[R.STOP_REASON] == R.STOP_EARLY]
    if min_stopped is not None:
        assert dict(zip(stopped[R.TRIAL_ID], stopped[R.EPOCHS_RUN], strict=True)) == asha_decisions(
            plan, table, history)
        assert len(stopped) >= min_stopped
    assert set(stopped[R.EPOCHS_RUN]) <= {1, 2}  # smoke preset: rungs at epochs 1 and 2 of 4
    finished = table[table[R.STOP_REASON].isin([R.STOP_EARLY, R.STOP_COMPLETED])]
    assert set(table[R.STOP_REASON]) <= set(R.STOP_REASONS)
    assert finished[R.TEST_FID].map(math.isfinite).all() and finished[R.BEST_VAL_FID].map(math.isfinite).all()
    assert (finished[R.TEST_EVAL_SECONDS] > 0).all()  # timed in the trainable and for stopped trials
    # every row holds the whole validation suite of its last epoch, a stopped trial's (scored from its
    # checkpoint after the search) too; the epochs before carry the scheduler's FID, not the suite
    for column in R.VALIDATION_METRICS[1:]:
        assert finished[column].map(math.isfinite).all(), column
    ends = history.groupby(R.TRIAL_ID)[R.EPOCH].transform("max") == history[R.EPOCH]
    stop_epochs = ends & history[R.TRIAL_ID].isin(stopped[R.TRIAL_ID])
    assert history.loc[stop_epochs, R.VAL_KID].map(math.isfinite).all()
    assert history.loc[~ends, R.VAL_FID].notna().all() and history.loc[~ends, R.VAL_KID].isna().all()
    # every second a trial spent: training, validation, test scoring, checkpoints
    assert (table[R.TRIAL_SECONDS] >= table[R.TRAIN_SECONDS]).all()
    assert (finished[R.TRIAL_SECONDS] >= finished[R.TRAIN_SECONDS] + finished[R.TEST_EVAL_SECONDS]).all()
    assert (table.loc[table[R.STOP_REASON] == R.STOP_COMPLETED, R.EPOCHS_RUN] == plan.max_epochs).all()
    assert table[R.FEATURENET_SHA256].nunique() == 1
    # one history row per trial-epoch, matching the trials table
    assert history.groupby(R.TRIAL_ID)[R.EPOCH].count().to_dict() == dict(zip(table[R.TRIAL_ID],
                                                                              table[R.EPOCHS_RUN],
                                                                              strict=True))
    # artifacts: the checkpoint of the last epoch, sample grids, the best trial's grid
    for row in table.itertuples():
        trial_dir = study_dir / getattr(row, R.TRIAL_DIR)
        assert (trial_dir / R.SAMPLES_DIR / R.sample_grid_name(getattr(row, R.EPOCHS_RUN))).is_file()
        assert Path(getattr(row, R.CHECKPOINT)).name == R.checkpoint_name(getattr(row, R.EPOCHS_RUN))
        assert (study_dir / getattr(row, R.CHECKPOINT)).is_file()
    assert (study_dir / R.BEST_SAMPLES_FILE).is_file()
    return table


def check_optuna_db(study_dir: Path, table: pd.DataFrame) -> None:
    """optuna.db holds every trial of the study once: its configuration, state and value match
    trials.parquet (matched by the configuration the Optuna parameters give). The state says how the
    trial ended: completed COMPLETE, early-stopped PRUNED (its per-epoch validation FIDs, the epoch it
    stopped at included, as intermediate values on a single-objective study), anything else FAIL."""
    from optuna.trial import TrialState

    from search_spaces import config_for_params
    from study.optuna_storage import load_study

    plan = StudyPlan.from_json((study_dir / R.STUDY_JSON).read_text())
    study = load_study(study_dir)
    assert study is not None and study.study_name == plan.name
    assert len(study.trials) == len(table)
    rows = table.set_index(R.CONFIG_JSON)
    configs = [config_for_params(plan.family, t.params, plan.space()).to_json() for t in study.trials]
    assert sorted(configs) == sorted(rows.index)  # every trial once, none duplicated
    states = {R.STOP_COMPLETED: TrialState.COMPLETE, R.STOP_EARLY: TrialState.PRUNED}
    single = len(study.directions) == 1
    for trial, config in zip(study.trials, configs, strict=True):
        row = rows.loc[config]
        assert trial.state == states.get(row[R.STOP_REASON], TrialState.FAIL), (row[R.STOP_REASON], trial)
        if row[R.STOP_REASON] == R.STOP_COMPLETED or (single and row[R.STOP_REASON] == R.STOP_EARLY):
            value = trial.values[0]  # validation FID first, for both objectives; a pruned trial's
            assert value == pytest.approx(row[R.FINAL_VAL_FID], rel=1e-6)  # is its last epoch's
        elif row[R.STOP_REASON] == R.STOP_EARLY:
            assert trial.values is None  # multi-objective: pruned without values
        if not single:
            assert trial.intermediate_values == {}  # Optuna forbids report() on several objectives
        elif row[R.STOP_REASON] in states:  # per-epoch validation FID, as ASHA saw it
            assert set(trial.intermediate_values) == set(range(1, row[R.EPOCHS_RUN] + 1))


def load_benchmark(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tensorboard_image_tags(trial_dir: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trial_dir))
    events.Reload()
    return events.Tags()["images"]


# --- invalid input: a clear message, exit 2, nothing created, no Ray started ------------------

@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--family", "gan", "--trials", "0"], "--trials 0"),
        (["--family", "gan", "--grace-period", "9", "--max-epochs", "4"], "--grace-period 9"),
        (["--family", "vae", "--eval-samples", "0"], "--eval-samples 0"),
        (["--family", "vae", "--inception-images", "1"], "--inception-images 1"),
        (["--family", "gan", "--resume", "--name", "nothing-here"], "holds no study to resume"),
    ],
)
def test_invalid_arguments_exit_2_with_a_message_and_create_nothing(tmp_path, data_dir, capsys, extra,
                                                                    message):
    import ray

    storage = tmp_path / "results"
    rc = launch.main([*extra, "--data-dir", str(data_dir), "--storage-path", str(storage), "--smoke-test"])
    err = capsys.readouterr().err
    assert rc == R.EXIT_BAD_INPUT
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not storage.exists() and not ray.is_initialized()


def test_a_missing_data_directory_is_refused_before_anything_starts(tmp_path, capsys):
    storage = tmp_path / "results"
    rc = launch.main(["--family", "gan", "--data-dir", str(tmp_path / "no-mnist"),
                      "--storage-path", str(storage)])
    err = capsys.readouterr().err
    assert rc == R.EXIT_BAD_INPUT and "MNIST was not found under" in err and "--data-dir" in err
    assert not storage.exists() and not (tmp_path / "no-mnist").exists()


def test_a_busy_dashboard_port_is_refused_before_ray_starts(tmp_path, data_dir, capsys):
    import ray

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = launch.main(["--family", "gan", "--smoke-test", "--data-dir", str(data_dir), "--dashboard-port",
                          str(port), "--storage-path", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert rc == R.EXIT_BAD_INPUT and f"127.0.0.1:{port}" in err and "--dashboard-port" in err
    assert not (tmp_path / "results").exists() and not ray.is_initialized()


def test_an_unknown_family_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["--family", "flow", "--storage-path", str(tmp_path / "results")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'flow'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_an_existing_study_name_is_refused_without_resume(tmp_path, data_dir, capsys):
    study_dir = tmp_path / "results" / "taken"
    study_dir.mkdir(parents=True)
    (study_dir / "keep.txt").write_text("mine")
    rc = launch.main(["--family", "gan", "--name", "taken", "--data-dir", str(data_dir),
                      "--storage-path", str(tmp_path / "results")])
    assert rc == R.EXIT_BAD_INPUT and "pass --resume" in capsys.readouterr().err
    assert [p.name for p in study_dir.iterdir()] == ["keep.txt"]


def test_help_documents_every_flag_of_the_issue(capsys):
    with pytest.raises(SystemExit):
        launch.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--family", "--trials", "--max-epochs", "--grace-period", "--scheduler", "--sampler",
                 "--objective", "--seed", "--name", "--train-subset", "--data-dir", "--cpus-per-trial",
                 "--gpus-per-trial", "--address", "--storage-path", "--resume", "--quick", "--smoke-test",
                 "--dashboard-host", "--inception", "--inception-images"):
        assert flag in text


def test_only_loopback_dashboard_hosts_count_as_local():
    assert all(preflight.is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.1.1"))
    assert not any(preflight.is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "myhost"))


def test_a_ray_without_the_dashboards_packages_runs_the_study_without_a_dashboard(monkeypatch, capsys):
    import ray._private.utils

    from study.engine import cluster

    # seen on the first GPU machine: a minimal Ray (carried wheels, no `[default]` extra) and the
    # launcher's default dashboard was ray.init's "Cannot include dashboard with missing packages"
    assert cluster.dashboard_options(None) == {"include_dashboard": False}
    monkeypatch.setattr(ray._private.utils, "get_dashboard_dependency_error",
                        lambda: "No module named 'aiohttp_cors'")
    assert cluster.dashboard_options(("127.0.0.1", 8265)) == {"include_dashboard": False}
    line = capsys.readouterr().out.strip()
    assert line.startswith("Ray dashboard: not started") and "aiohttp_cors" in line and "ray[default]" in line
    monkeypatch.setattr(ray._private.utils, "get_dashboard_dependency_error", lambda: None)
    assert cluster.dashboard_options(("127.0.0.1", 8265)) == {
        "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": 8265}


def test_pareto_runs_without_early_stopping_unless_a_scheduler_is_asked_for(data_dir):
    def plan(*extra):
        args = launch.build_parser().parse_args(["--family", "gan", "--data-dir", str(data_dir), *extra])
        return plan_from_args(args)

    assert plan().scheduler == "asha" and plan("--objective", "pareto").scheduler == "none"
    assert plan("--objective", "pareto", "--scheduler", "asha").scheduler == "asha"
    assert plan("--scheduler", "none").scheduler == "none"


def test_the_default_sampler_is_tpe_in_both_families_the_header_says_so_and_the_flag_overrides_it(data_dir):
    from study.engine.plan import DEFAULT_SAMPLERS, PARETO_SAMPLER

    def plan(family, *extra):
        args = launch.build_parser().parse_args(["--family", family, "--data-dir", str(data_dir), *extra])
        return plan_from_args(args)

    assert set(DEFAULT_SAMPLERS) == set(FAMILIES)
    for family in FAMILIES:
        assert plan(family).sampler == DEFAULT_SAMPLERS[family]
        assert plan(family, "--objective", "pareto").sampler == PARETO_SAMPLER
        for sampler in ("tpe", "random"):
            assert plan(family, "--sampler", sampler).sampler == sampler
    # TPE for --objective fid in both families: the 3-repetition benchmark did not separate the arms and
    # TPE's guided trials failed far less often (docs/search.md); the search lab decides
    assert DEFAULT_SAMPLERS == {"gan": "tpe", "vae": "tpe"}
    for family in FAMILIES:
        assert isinstance(search.make_sampler(plan(family)), optuna.samplers.TPESampler)
        random_plan = plan(family, "--sampler", "random")
        assert isinstance(search.make_sampler(random_plan), optuna.samplers.RandomSampler)
        # the header a 2-trial smoke study prints as it starts (study_run.run_study)
        header = plan(family, "--smoke-test", "--trials", "2").header(0.0)
        assert f"study {family}-" in header and ", 2 trials, " in header
        assert "asha scheduler, tpe sampler" in header
        assert "random sampler" in plan(family, "--smoke-test", "--sampler", "random").header(0.0)


def test_tpe_starts_guiding_after_the_seeds_and_a_study_sized_random_share(data_dir):
    from search_spaces import tpe_startup_trials

    for trials, expected in ((1, 1), (8, 4), (16, 6), (64, 12)):
        args = launch.build_parser().parse_args(["--family", "vae", "--data-dir", str(data_dir),
                                                 "--sampler", "tpe", "--trials", str(trials)])
        plan = plan_from_args(args)
        seeds = len(search.study_seed_points(plan))
        assert seeds == min(trials, 2)
        assert search.make_sampler(plan)._n_startup_trials == tpe_startup_trials(trials, seeds) == expected


def test_scheduler_rungs_match_ashas_milestones():
    from ray.tune.schedulers import ASHAScheduler

    from study.engine.plan import scheduler_rungs

    for grace, rf, max_t in [(1, 2, 4), (2, 3, 20), (1, 2.5, 10), (3, 4, 3)]:
        asha = ASHAScheduler(time_attr=R.EPOCH, metric=R.VAL_FID, mode="min", grace_period=grace,
                             reduction_factor=rf, max_t=max_t)
        milestones = {math.ceil(m - 1e-9) for m, _ in asha._brackets[0]._rungs}
        assert scheduler_rungs(grace, rf, max_t) == milestones


# --- real studies ----------------------------------------------------------------------------

@pytest.mark.slow
def test_a_four_trial_gan_study_runs_with_the_dashboard_and_exports_its_tables(tmp_path, data_dir):
    seen: dict = {}
    rc, out = run_launcher(launch_args(data_dir, tmp_path, "gan-smoke", "--family", "gan", num_cpus=1),
                           lambda line, _: dashboard_refuses_requests_without_the_token(line, seen))
    assert rc == 0, out[-3000:]
    assert seen["url"].startswith("http://127.0.0.1:") and seen["status"] == 401  # token auth is on
    table = check_study(tmp_path / "gan-smoke", "gan", trials=4)
    assert "best trial" in out and table[R.TRIAL_ID].iloc[0] in out  # the console summary table
    assert "samples" in tensorboard_image_tags(tmp_path / "gan-smoke" / table[R.TRIAL_DIR].iloc[0])
    check_optuna_db(tmp_path / "gan-smoke", table)
    # re-exporting (no Ray; early-stopped trials evaluated in this process) gives the same table
    from study import export

    assert export.main([str(tmp_path / "gan-smoke")]) == 0
    again = pd.read_parquet(tmp_path / "gan-smoke" / R.TRIALS_FILE)
    timing = [R.TEST_EVAL_SECONDS, R.TRIAL_SECONDS]  # the stopped trials' scoring is timed again
    pd.testing.assert_frame_equal(again.drop(columns=timing), table.drop(columns=timing), rtol=1e-6)
    # the study benchmark's figures (what the issue's closing note reports)
    bench = load_benchmark("bench_study")
    best = table.loc[table[R.FINAL_VAL_FID].idxmin()]  # selection on the final model, as analysis does
    counts = table[R.STOP_REASON].value_counts()
    assert bench.study_figures(table) == bench.StudyFigures(
        study="gan-smoke", family="gan", trials=4, early_stopped=counts.get(R.STOP_EARLY, 0),
        completed=counts.get(R.STOP_COMPLETED, 0), diverged=counts.get(R.STOP_DIVERGED, 0),
        errors=counts.get(R.STOP_ERROR, 0), best_val_fid=best[R.FINAL_VAL_FID],
        best_trial_test_fid=best[R.TEST_FID], best_test_fid=table[R.TEST_FID].min())
    out = subprocess.run([sys.executable, "benchmarks/bench_study.py", "--summarize",
                          str(tmp_path / "gan-smoke")],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert "gan-smoke" in out and f"{best[R.FINAL_VAL_FID]:.4g}" in out


@pytest.mark.slow
def test_a_four_trial_vae_pareto_study_on_uri_storage_records_the_vae_metrics(tmp_path, data_dir):
    storage = tmp_path.as_uri()  # file:///...: the URI code path that s3:// takes on a cluster
    rc, out = run_launcher(launch_args(data_dir, storage, "vae-smoke", "--family", "vae",
                                       "--objective", "pareto", "--sampler", "nsga2", "--scheduler", "asha",
                                       "--inception", "final", "--inception-images", "32", num_cpus=1))
    assert rc == 0, out[-3000:]
    # run one at a time, ASHA stops none of these 4 VAE trials (each reaches a rung below the
    # cutoff of those before it); check_study's replay checks that this is ASHA's decision
    table = check_study(tmp_path / "vae-smoke", "vae", trials=4, min_stopped=0)
    finished = table[table[R.STOP_REASON].isin([R.STOP_EARLY, R.STOP_COMPLETED])]
    for column in (R.TEST_RECON_MSE, R.TEST_BCE_NELBO, R.TEST_PRECISION, R.TEST_RECALL,
                   R.TEST_CLASS_COVERAGE, R.VAL_COVERAGE, R.VAL_CLASS_ENTROPY):
        assert finished[column].map(math.isfinite).all(), column
    assert finished[R.TEST_RECON_MSE].between(0, 1).all() and (finished[R.TEST_BCE_NELBO] > 0).all()
    # the importance-weighted NLL: the trials a report picks carry it (computed after the search, its
    # seconds beside their trial_seconds), the others never paid for it
    from study.followups.picked_nll import picked_trials

    picked = table[R.TRIAL_ID].isin(picked_trials(table))
    assert picked.any() and "likelihood (importance-weighted NLL)" in out
    assert table.loc[picked, R.TEST_BINARIZED_NLL].map(math.isfinite).all()
    assert (table.loc[picked, R.LIKELIHOOD_SECONDS] > 0).all()
    assert table.loc[~picked, [R.TEST_BINARIZED_NLL, R.LIKELIHOOD_SECONDS]].isna().all().all()
    # binary pixels have no entropy of their own: the honest NLL lies below the grey-pixel BCE loss
    assert (table.loc[picked, R.TEST_BINARIZED_NLL] < table.loc[picked, R.TEST_BCE_NELBO]).all()
    # Inception FID: filled for the best trial and the Pareto trials only, with its protocol recorded
    from study.metrics.inception import INCEPTION_SHA256, chosen_trials

    chosen = table[R.TRIAL_ID].isin(chosen_trials(table))
    assert R.best_trial(table)[R.TRIAL_ID] in set(table.loc[chosen, R.TRIAL_ID])
    assert (table.loc[chosen, R.TEST_INCEPTION_FID] > 0).all()
    assert table.loc[~chosen, R.TEST_INCEPTION_FID].isna().all()
    assert (table.loc[chosen, R.INCEPTION_SAMPLES] == 32).all()
    assert (table.loc[chosen, R.INCEPTION_SHA256] == INCEPTION_SHA256).all()
    check_optuna_db(tmp_path / "vae-smoke", table)  # the local database, copied into the study dir


@pytest.mark.slow
def test_a_full_preset_study_on_cpus_says_it_is_gpu_scale_and_how_long_it_will_take(tmp_path, data_dir):
    """The full preset on a machine without a GPU: one line says it is a GPU-scale study, its rough size
    here and that --quick is the laptop version, and it runs; the study's size comes first and the
    progress line carries an estimate before the first epoch ends (a timed probe of a few steps)."""
    import re

    rc, out = run_launcher([sys.executable, "-m", "study.launch", "--family", "gan", "--trials", "1",
                            "--max-epochs", "1", "--train-subset", "256", "--eval-samples", "100",
                            "--scheduler", "none", "--data-dir", str(data_dir), "--storage-path",
                            str(tmp_path), "--name", "gan-full", "--num-cpus", "1",
                            "--dashboard-port", str(free_port())])
    assert rc == 0, out[-3000:]
    (line,) = [text for text in out.splitlines() if "GPU-scale study" in text]
    assert "`--quick` is the laptop version" in line and re.search(r"roughly \d+ (s|min|h|d)", line)
    assert "size: 1 trials x up to 1 epochs x 256 training images" in out
    assert out.index("GPU-scale study") < out.index("trials done")
    assert re.search(r"trials done, \d running.*, about \d+ (s|min|h)[\w ]* left at a probe's pace", out)
    table = pd.read_parquet(tmp_path / "gan-full" / R.TRIALS_FILE)
    assert (table[R.TRIAL_SECONDS] >= table[R.TRAIN_SECONDS] + table[R.TEST_EVAL_SECONDS]).all()


@pytest.mark.slow
def test_an_interrupted_study_resumes_without_rerunning_finished_trials(tmp_path, data_dir):
    study_dir = tmp_path / "resumable"
    finished_before: dict[str, bytes] = {}

    def interrupt_after_first_trial(line: str, process: subprocess.Popen) -> None:
        summaries = list(study_dir.glob(f"trial_*/{R.SUMMARY_JSON}"))
        if summaries and not finished_before:
            time.sleep(1.0)  # let Ray finish writing the trial
            finished_before.update({str(p.relative_to(study_dir)): p.read_bytes() for p in summaries})
            process.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves its state and stops

    # the study starts on MNIST in a folder that is gone when it resumes (another machine, data moved):
    # the resume reads it from the --data-dir it is given (it used to ignore the flag and refuse)
    first_data = tmp_path / "data-before"
    (first_data / "MNIST").mkdir(parents=True)
    (first_data / "MNIST" / "raw").symlink_to(Path(data_dir).resolve() / "MNIST" / "raw")
    rc, out = run_launcher(launch_args(first_data, tmp_path, "resumable", "--family", "gan", "--trials", "6",
                                       num_cpus=1),
                           interrupt_after_first_trial)
    assert finished_before, out[-3000:]
    assert rc == R.EXIT_INTERRUPTED, out[-3000:]
    assert "--resume" in out and not (study_dir / R.TRIALS_FILE).exists()
    shutil.rmtree(first_data)

    rc, out = run_launcher(launch_args(data_dir, tmp_path, "resumable", "--family", "gan", "--resume",
                                       num_cpus=1))
    assert rc == 0, out[-3000:]
    assert f"MNIST from {Path(data_dir).resolve()}; other study flags but --data-dir are ignored" in out
    table = check_study(study_dir, "gan", trials=6)
    for path, content in finished_before.items():  # finished trials were not run again
        assert (study_dir / path).read_bytes() == content
    assert len(list(study_dir.glob("trial_*"))) == 6
    assert json.loads((study_dir / R.STUDY_JSON).read_text())["trials"] == 6
    assert os.path.isdir(study_dir / table[R.TRIAL_DIR].iloc[-1])
    check_optuna_db(study_dir, table)  # the same Optuna study, resumed: 6 trials, none twice


# --- the trainable under Tune: divergence and crash recovery ---------------------------------

class CrashingEvaluator:
    """Fault injection around the real evaluator: its third validation (epoch 3 of a fresh run)
    raises, as a crashed worker would, once per study (a marker file remembers)."""

    def __init__(self, evaluator, marker: Path):
        self.evaluator, self.marker, self.calls = evaluator, marker, 0
        self.featurenet_sha256 = evaluator.featurenet_sha256

    def validation(self, model, suite=True):
        self.calls += 1
        if self.calls == 3 and not self.marker.exists():
            self.marker.write_text("crashed")
            raise RuntimeError("injected crash at epoch 3")
        return self.evaluator.validation(model, suite=suite)

    def test(self, model, nll=True):
        return self.evaluator.test(model, nll=nll)


class CrashOnce:
    """Evaluation assets whose evaluators crash once (see CrashingEvaluator)."""

    def __init__(self, factory, marker: Path):
        self.factory, self.marker = factory, marker
        self.featurenet_sha256 = factory.featurenet_sha256

    def evaluator(self, config, data, device):
        return CrashingEvaluator(self.factory.evaluator(config, data, device), self.marker)


@pytest.fixture
def local_ray():
    import ray

    import models
    import search_spaces
    import study

    ray.init(address="local", num_cpus=2, include_dashboard=False,
             runtime_env={"py_modules": [models, search_spaces, study]})
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_diverged_trials_end_at_once_and_crashed_trials_resume_from_their_checkpoint(tmp_path, data_dir,
                                                                                     local_ray):
    from ray import cloudpickle, tune

    from models.config import TrainConfig as TC
    from models.config import VAEConfig
    from study.data import load_splits
    from study.engine.trainable import TrialSetup, with_setup
    from study.engine.trial_tables import export_study
    from study.metrics.evaluator import prepare_evaluation

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    data = load_splits(data_dir, train_subset=1000)
    factory = CrashOnce(prepare_evaluation(data, iw_images=200), tmp_path / "crashed")
    base = TC(model=VAEConfig(arch="mlp", latent_dim=4, enc_widths=(32,), dec_widths=(32,)), epochs=4,
              batch_size=100, train_subset=1000, eval_samples=200, checkpoint_every=2).to_dict()
    setup = TrialSetup(data=data, assets=factory)
    tuner = tune.Tuner(
        tune.with_resources(with_setup(setup), {"cpu": 1}),
        param_space={**base, "lr": tune.grid_search([50.0, 1e-3])},  # lr 50 diverges at once
        tune_config=tune.TuneConfig(trial_dirname_creator=cluster.trial_dirname),
        run_config=tune.RunConfig(name="faults", storage_path=str(tmp_path),
                                  failure_config=tune.FailureConfig(max_failures=1),
                                  sync_config=tune.SyncConfig(sync_artifacts=True)),
    )
    results = tuner.fit()
    assert results.num_errors == 0 and (tmp_path / "crashed").exists()
    table = export_study(str(tmp_path / "faults"), "faults").trials.set_index(R.HP_PREFIX + "lr")
    diverged, recovered = table.loc[50.0], table.loc[1e-3]
    assert diverged[R.STOP_REASON] == R.STOP_DIVERGED and diverged[R.EPOCHS_RUN] == 1
    assert math.isnan(diverged[R.TEST_FID]) and math.isnan(diverged[R.BEST_VAL_FID])
    assert recovered[R.STOP_REASON] == R.STOP_COMPLETED and recovered[R.EPOCHS_RUN] == 4
    history = json.loads((tmp_path / "faults" / recovered[R.TRIAL_DIR] / R.METRICS_JSON).read_text())
    assert [h[R.EPOCH] for h in history] == [1, 2, 3, 4]  # epoch 3 re-run from the epoch-2 checkpoint
    assert math.isfinite(recovered[R.TEST_FID])


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_sampler_and_objective_drives_the_space_through_optuna(sampler, objective):
    """The launcher's samplers with its searcher's directions, on the define-by-run space (no Ray)."""
    import optuna

    from search_spaces import define_by_run, train_config

    args = launch.build_parser().parse_args(["--family", "gan", "--smoke-test", "--sampler", sampler,
                                             "--objective", objective])
    try:
        plan = plan_from_args(args)
    except ConfigError as exc:  # gp and qmc are single-objective
        assert objective == "pareto" and sampler in ("gp", "qmc") and "--objective pareto" in str(exc)
        return
    directions = ["minimize"] * (len(PARETO_METRICS) if objective == "pareto" else 1)
    study = optuna.create_study(sampler=search.make_sampler(plan), directions=directions)
    space = define_by_run(plan.family, plan.space())
    for i in range(12):  # past the samplers' random start-up trials
        trial = study.ask()
        config = train_config(space(trial))
        values = [float(i % 5), float(config.model.latent_dim), 1.0][: len(directions)]
        study.tell(trial, values if len(values) > 1 else values[0])
    assert len(study.trials) == 12 and all(t.state.name == "COMPLETE" for t in study.trials)


def test_deterministic_flag_reaches_every_trial_config(data_dir):
    from search_spaces import seed_configs as configs_of

    def plan(*extra):
        args = launch.build_parser().parse_args(["--family", "gan", "--data-dir", str(data_dir), *extra])
        return plan_from_args(args)

    for flags, expected in (((), False), (("--deterministic",), True)):
        chosen = plan(*flags)
        assert chosen.deterministic is expected
        assert StudyPlan.from_json(chosen.to_json()).deterministic is expected  # kept for --resume
        configs = configs_of(chosen.family, chosen.space())  # the trial configs of the seed points
        assert configs and all(c.deterministic is expected for c in configs)
