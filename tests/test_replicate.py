"""`python -m study.replicate` and `python -m study.reproduce`: which runs they plan, bad input, and
both end to end at smoke scale (real Ray with 2 CPUs, 1/8-width networks, MNIST subsets).

The end-to-end replicate test goes through `study.launch --replicate-top`, interrupts the replicates
with Ctrl-C after the first finished run, continues them with `python -m study.replicate`, and checks
that nothing ran twice; the reproduction is then read by analysis (load_studies, the seed table).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis import columns as C
from models.config import TrainConfig
from search_spaces import SpaceOptions, seed_configs
from study import replicate, reproduce
from study import results as R
from study.engine.plan import PRESETS, StudyPlan
from study.engine.trial_tables import TRIAL_COLUMNS
from study.followups import replicate_plan as replicate_lib
from study.results import EXIT_INTERRUPTED
from tests.conftest import REPO_ROOT
from tests.test_launch import launch_args, run_launcher

# --- which runs replicate plans (no Ray) -------------------------------------------------------------


def smoke_plan(tmp_path: Path, seed: int = 7) -> StudyPlan:
    values = PRESETS["smoke"]
    return StudyPlan(family="gan", name="s", trials=5, max_epochs=4, grace_period=1, reduction_factor=2,
                     scheduler="asha", sampler="tpe", objective="fid", seed=seed, train_subset=2000,
                     eval_samples=500, iw_images=500, checkpoint_every=10, width_scale=values["width_scale"],
                     width_range=values["width_range"], batch_sizes=values["batch_sizes"], cpus_per_trial=1.0,
                     gpus_per_trial=None, max_failures=1, keep_checkpoints=2, data_dir="/nowhere",
                     storage_path=str(tmp_path), preset="smoke")


def fake_trials(plan: StudyPlan) -> pd.DataFrame:
    """Two seed-config trials and three searched ones (one a copy of another, one with no FID)."""
    seeds = seed_configs(plan.family, plan.space())
    searched = [seeds[1].replace(lr_g=1e-3), seeds[1].replace(lr_g=5e-4), seeds[1].replace(lr_g=1e-3)]
    configs = [*seeds, *searched]
    fids = [40.0, 30.0, 20.0, math.nan, 20.0]  # t2 and its copy t4 tie; t3 diverged
    return pd.DataFrame({R.TRIAL_ID: [f"t{i}" for i in range(5)],
                         R.CONFIG_JSON: [c.to_json() for c in configs],
                         R.SEED_CONFIG: [True, True, False, False, False], R.FINAL_VAL_FID: fids})


def test_replicates_are_the_top_trials_then_the_seed_configs_each_once_with_new_seeds(tmp_path):
    plan = smoke_plan(tmp_path, seed=7)
    trials = fake_trials(plan)
    runs = replicate_lib.plan_runs(plan, trials, top=2, seeds=3)
    # top 2 by final validation FID: t2 (20), then t4 is t2's configuration, so t1 (30); then seed config t0
    sources = list(dict.fromkeys(r.source_trial_id for r in runs))
    assert sources == ["t2", "t1", "t0"]
    assert [r.seed_config for r in runs[::3]] == [False, True, True]
    assert {r.seed for r in runs} == {8, 9, 10} and plan.seed not in {r.seed for r in runs}
    assert len({(r.source_trial_id, r.seed) for r in runs}) == len(runs) == 9
    for run in runs:  # the source's configuration, with only the seed changed
        source = TrainConfig.from_json(trials.set_index(R.TRIAL_ID).loc[run.source_trial_id, R.CONFIG_JSON])
        assert run.config == source.replace(seed=run.seed)
    longer = replicate_lib.plan_runs(plan, trials, top=0, seeds=1, epochs=9)
    assert [r.source_trial_id for r in longer] == ["t0", "t1"] and {r.config.epochs for r in longer} == {9}


def write_study(tmp_path: Path) -> Path:
    plan = smoke_plan(tmp_path)
    study = tmp_path / plan.name
    study.mkdir()
    (study / R.STUDY_JSON).write_text(plan.to_json())
    fake_trials(plan).to_parquet(study / R.TRIALS_FILE)
    return study


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "0"], "--seeds 0"),
    (["--top", "-1"], "--top -1"),
    (["--epochs", "0"], "--epochs 0"),
])
def test_replicate_bad_flags_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    study = write_study(tmp_path)
    before = sorted(p.name for p in study.iterdir())
    assert replicate.main([str(study), *args]) == R.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert sorted(p.name for p in study.iterdir()) == before


def test_replicate_refuses_a_directory_without_a_study_and_other_runs_than_it_started(tmp_path, capsys):
    assert replicate.main([str(tmp_path / "missing")]) == R.EXIT_BAD_INPUT
    assert R.STUDY_JSON in capsys.readouterr().err
    study = write_study(tmp_path)
    (study / R.REPLICATES_DIR).mkdir()
    (study / R.REPLICATES_DIR / R.REPLICATES_SPEC).write_text(json.dumps(
        {"top": 1, "seeds": 1, "epochs": None, "runs": [["t2", 8]]}))
    assert replicate.main([str(study), "--top", "2", "--seeds", "3"]) == R.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--top 1 --seeds 1" in err and "delete" in err and not (study / R.REPLICATES_FILE).exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--replicate-top", "1", "--replicate-seeds", "0"], "--replicate-seeds 0"),
    (["--replicate-top", "-2"], "--replicate-top -2"),
])
def test_launch_refuses_bad_replicate_flags_before_anything_starts(tmp_path, data_dir, capsys, flags,
                                                                   message):
    from study import launch

    args = launch_args(data_dir, tmp_path / "out", "x", "--family", "gan", *flags)[3:]  # no interpreter/-m
    assert launch.main(args) == R.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and not (tmp_path / "out").exists()


# --- which runs reproduce plans (no Ray) --------------------------------------------------------------

def reproduce_args(tmp_path: Path, data_dir, *extra: str) -> list[str]:
    return ["--storage-path", str(tmp_path), "--data-dir", str(data_dir), *extra]


def test_reproduce_runs_each_seed_studys_two_configurations_at_its_printed_epochs(tmp_path, data_dir):
    parser = reproduce.build_parser()
    first = reproduce.plan_from_args(parser.parse_args(["--seed-study", "1",
                                                        *reproduce_args(tmp_path, data_dir)]))
    assert first.epochs == (10, 20, 50) and first.max_epochs == 50 and first.seeds == (0, 1, 2)
    assert first.train_subset is None and first.eval_samples == 10_000 and first.name == "seed-study-1"
    configs = first.configs()
    assert [(c.family, c.model.arch, c.seed, c.epochs) for c in configs[:2]] == [("gan", "dcgan", 0, 50),
                                                                               ("vae", "conv", 0, 50)]
    options = SpaceOptions(loop=dict(epochs=50, seed=0, eval_samples=10_000, train_subset=None))
    assert configs[0] == seed_configs("gan", options)[0]  # the seed configuration, as the searches run it
    second = reproduce.plan_from_args(parser.parse_args(["--seed-study", "2", "--quick",
                                                         *reproduce_args(tmp_path, data_dir)]))
    assert second.epochs == (1, 5, 20) and second.name == "seed-study-2-quick"  # printed 10, 50, 200 / 10
    assert {(c.family, c.model.arch) for c in second.configs()} == {("gan", "mlp"), ("vae", "mlp")}
    assert len(second.configs()) == 2 * 3 and second.train_subset == 4_000
    saved = json.loads(second.to_json())
    assert saved[C.REPRODUCES] == 2 and saved[C.PLAN_MAX_EPOCHS] == 20 and saved[C.PLAN_SCHEDULER] == "none"


@pytest.mark.parametrize(("args", "message"), [
    (["--seed-study", "2", "--epochs", "10,x"], "--epochs"),
    (["--seed-study", "2", "--epochs", "0,5"], "--epochs"),
    (["--seed-study", "1", "--seeds", "0"], "--seeds 0"),
    (["--seed-study", "1", "--name", "a/b"], "--name"),
])
def test_reproduce_bad_flags_exit_2_and_write_nothing(tmp_path, data_dir, capsys, args, message):
    assert reproduce.main([*args, *reproduce_args(tmp_path / "out", data_dir)]) == R.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and not (tmp_path / "out").exists()


def test_reproduce_refuses_a_directory_holding_another_study(tmp_path, data_dir, capsys):
    (tmp_path / "seed-study-2").mkdir()
    (tmp_path / "seed-study-2" / R.STUDY_JSON).write_text("{}")
    assert reproduce.main(["--seed-study", "2", *reproduce_args(tmp_path, data_dir)]) == R.EXIT_BAD_INPUT
    assert "another --name" in capsys.readouterr().err


# --- end to end (real Ray, smoke scale) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def replicated(tmp_path_factory, data_dir):
    """A 2-trial GAN smoke study launched with --replicate-top 1 --replicate-seeds 2, interrupted
    (Ctrl-C) after the first replicate finished, then continued with python -m study.replicate."""
    storage = tmp_path_factory.mktemp("replicated")
    study = storage / "gan-rep"
    finished_before: dict[str, bytes] = {}

    def interrupt_after_first_replicate(line: str, process: subprocess.Popen) -> None:
        summaries = list(study.glob(f"{R.REPLICATES_DIR}/*/{R.SUMMARY_JSON}"))
        if summaries and not finished_before:
            time.sleep(1.0)  # let Ray finish writing the run
            finished_before.update({str(p.relative_to(study)): p.read_bytes() for p in summaries})
            process.send_signal(signal.SIGINT)

    launched = run_launcher(launch_args(data_dir, storage, "gan-rep", "--family", "gan", "--trials", "2",
                                        "--max-epochs", "2", "--replicate-top", "1",
                                        "--replicate-seeds", "2"),
                            interrupt_after_first_replicate)
    resumed = subprocess.run([sys.executable, "-m", "study.replicate", str(study), "--top", "1",
                              "--seeds", "2", "--num-cpus", "2"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    return study, launched, (resumed.returncode, resumed.stdout + resumed.stderr), finished_before


@pytest.mark.slow
def test_launch_replicates_after_the_search_and_an_interrupted_replicate_run_continues(replicated):
    study, (rc, out), (rc_resumed, out_resumed), finished_before = replicated
    assert finished_before, out[-3000:]
    assert rc == EXIT_INTERRUPTED and "python -m study.replicate" in out, out[-3000:]
    assert (study / R.TRIALS_FILE).is_file()  # the search finished and was exported first
    assert rc_resumed == 0, out_resumed[-3000:]
    # standalone, python -m study.replicate prints the study console too: no config boxes, no status tables
    assert "╭" not in out_resumed and "Trial status" not in out_resumed and "finished:" in out_resumed
    trials = pd.read_parquet(study / R.TRIALS_FILE)
    reps = pd.read_parquet(study / R.REPLICATES_FILE)
    # the best trial by final validation FID, plus the two seed configurations (each once), x 2 seeds
    best = R.best_trial(trials)[R.TRIAL_ID]
    expected = list(dict.fromkeys([best, *trials.loc[trials[R.SEED_CONFIG], R.TRIAL_ID]]))
    assert list(dict.fromkeys(reps[R.SOURCE_TRIAL_ID])) == expected
    assert len(reps) == 2 * len(expected) and not reps.duplicated([R.SOURCE_TRIAL_ID, R.REPLICATE_SEED]).any()
    plan = StudyPlan.from_json((study / R.STUDY_JSON).read_text())
    assert set(reps[R.REPLICATE_SEED]) == {plan.seed + 1, plan.seed + 2}
    assert (reps[R.SEED] == reps[R.REPLICATE_SEED]).all()
    assert set(reps[R.SOURCE_TRIAL_ID]) <= set(trials[R.TRIAL_ID]) and reps[R.TRIAL_ID].is_unique
    assert not set(reps[R.TRIAL_ID]) & set(trials[R.TRIAL_ID])
    # every run went to the end (no early stopping) and has its test metrics
    assert (reps[R.STOP_REASON] == R.STOP_COMPLETED).all() and (reps[R.EPOCHS_RUN] == plan.max_epochs).all()
    assert reps[R.TEST_FID].map(math.isfinite).all() and reps[R.FINAL_VAL_FID].map(math.isfinite).all()
    assert list(reps.columns[:4]) == [R.STUDY, R.TRIAL_ID, R.SOURCE_TRIAL_ID, R.REPLICATE_SEED]
    assert set(TRIAL_COLUMNS) <= set(reps.columns)
    source = trials.set_index(R.TRIAL_ID)
    for row in reps.itertuples():
        config = TrainConfig.from_json(getattr(row, R.CONFIG_JSON))
        original = TrainConfig.from_json(source.loc[getattr(row, R.SOURCE_TRIAL_ID), R.CONFIG_JSON])
        assert config == original.replace(seed=getattr(row, R.REPLICATE_SEED))
        assert getattr(row, R.SEED_CONFIG) == source.loc[getattr(row, R.SOURCE_TRIAL_ID), R.SEED_CONFIG]
    # the runs that finished before Ctrl-C were not run again
    for path, content in finished_before.items():
        assert (study / path).read_bytes() == content
    assert len(list((study / R.REPLICATES_DIR).glob("replicate_*"))) == len(reps)
    # analysis reads them
    from analysis.load import load_studies

    loaded = load_studies([study])
    assert len(loaded.replicates) == len(reps) and set(loaded.replicates[C.GROUP]) == {"gan"}


@pytest.mark.slow
def test_reproduce_writes_a_study_the_report_shows_as_reproduced(replicated, tmp_path, data_dir):
    study = replicated[0]
    done = subprocess.run([sys.executable, "-m", "study.reproduce", "--seed-study", "2", "--smoke-test",
                           *reproduce_args(tmp_path, data_dir), "--num-cpus", "2"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "╭" not in done.stdout + done.stderr and "Trial status" not in done.stdout  # the study console
    repro = tmp_path / "seed-study-2-smoke"
    trials = pd.read_parquet(repro / R.TRIALS_FILE)
    history = pd.read_parquet(repro / R.HISTORY_FILE)
    epochs = R.hp_column("epochs")
    # 2 configurations x epoch counts (1, 2) x 2 seeds, one training run per configuration and seed
    assert len(trials) == 8 and trials[R.TRIAL_ID].is_unique and trials[R.SEED_CONFIG].all()
    assert trials.groupby([R.FAMILY, R.ARCH, epochs])[R.SEED].apply(sorted).to_dict() == {
        (f, "mlp", e): [0, 1] for f in ("gan", "vae") for e in (1, 2)}
    assert trials[R.TRIAL_DIR].nunique() == 4 and (trials[R.EPOCHS_RUN] == trials[epochs]).all()
    assert trials[R.TEST_FID].map(math.isfinite).all()
    vae = trials[trials[R.FAMILY] == "vae"]
    assert vae[R.TEST_BCE_NELBO].map(math.isfinite).all()
    # the epoch-1 row of a run is the run's own state at epoch 1: its history, its first record
    ends = dict(zip(trials[R.TRIAL_ID], trials[epochs], strict=True))
    assert history.groupby(R.TRIAL_ID)[R.EPOCH].max().to_dict() == ends
    one = trials[trials[epochs] == 1].set_index(R.TRIAL_DIR)[R.FINAL_VAL_FID]
    first_epoch = history[(history[R.EPOCH] == 1) & history[R.TRIAL_ID].str.endswith("-e2")]
    dirs = trials.set_index(R.TRIAL_ID).loc[first_epoch[R.TRIAL_ID], R.TRIAL_DIR]
    assert one.loc[dirs].to_numpy() == pytest.approx(first_epoch[R.VAL_FID].to_numpy())
    assert json.loads((repro / R.STUDY_JSON).read_text())[C.REPRODUCES] == 2
    # analysis: loaded beside the search study, kept out of the verdict, shown as reproduced
    from analysis.load import load_studies
    from analysis.tables import published_comparison

    loaded = load_studies([study, repro])
    assert set(loaded.search()[R.STUDY]) == {study.name}
    table = published_comparison(loaded.trials, loaded.history, replicates=loaded.replicates)
    first_loss = table[table[C.QUANTITY] == "VAE loss, first epoch"].iloc[0]
    assert first_loss[C.REPRODUCED_N] == 2 and math.isfinite(first_loss[C.REPRODUCED])
    assert first_loss[C.REPRODUCED] == pytest.approx(history.loc[
        (history[R.EPOCH] == 1) & history[R.TRIAL_ID].isin(vae.loc[vae[epochs] == 2, R.TRIAL_ID]),
        R.LOSS_NELBO].mean())
    out = tmp_path / "report"
    report = subprocess.run([sys.executable, "-m", "analysis.report", str(study), str(repro),
                             "--out", str(out), "--smoke-test", "--data-dir", str(data_dir)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, (report.stdout + report.stderr)[-3000:]
    seed_table = out / "tables" / "seed_studies.csv"
    printed = pd.read_csv(seed_table)
    assert printed[C.REPRODUCED].notna().any()


def test_fixed_config_runs_keep_their_workers_and_fill_every_slot():
    """Replicates and reproductions run like a study's trials: one reused worker per concurrent
    slot, and Tune told the slots (without it Tune keeps one trial pending)."""
    from study.engine.fixed import fixed_tune_config

    configs = [{"seed": s} for s in range(5)]
    tune_config = fixed_tune_config(configs, 3, "rep")
    assert tune_config.reuse_actors is True and tune_config.max_concurrent_trials == 3
    assert tune_config.num_samples == 5
