"""The study console (study/engine/console.py), studies side by side (study/engine/sharing.py), the MLflow
tracker (study/engine/tracking.py) and `--family both` (study/launcher/both.py)."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from models.config import ConfigError
from study import results as R
from study.engine import sharing, tracking
from study.engine.console import StudyConsole, StudyShape, duration, trial_label
from study.engine.preflight import DEFAULT_DASHBOARD_PORT
from tests.conftest import REPO_ROOT

PROGRESS = re.compile(r"^(\d+)/(\d+) trials done, (\d+) running(, best validation FID so far [\d.]+ "
                      r"\(trial trial_\d{4}_\w+\))?(, about [\w ]+ left at [\w' ()]+)?$", re.M)
SMOKE_CONSOLE_MAX_LINES = 40  # before: 382 lines (362 stdout + 20 stderr) for the same smoke study


def _trial(label: str, epochs: int = 4, **config) -> SimpleNamespace:
    """What the console reads of a Tune Trial: its directory, id, config, error file, last result."""
    return SimpleNamespace(path=f"/r/study/{label}", trial_id=label.rsplit("_", 1)[-1],
                           config={"epochs": epochs, "arch": "mlp", "batch_size": 64, "lr": 2e-4, **config},
                           error_file=None, last_result={})


def test_the_plain_console_prints_trial_ends_and_the_progress_line():
    out = io.StringIO()
    console = StudyConsole(out, interactive=False, interval_s=0)
    console.setup(total_num_samples=3)
    a, b = _trial("trial_0001_aaaa"), _trial("trial_0002_bbbb")
    console.on_trial_start(0, [], a)
    console.on_trial_start(0, [], b)
    console.on_trial_result(1, [], a, {R.EPOCH: 1, R.VAL_FID: 52.04})
    console.on_trial_result(1, [], b, {R.EPOCH: 1, R.VAL_FID: 47.0})
    console.on_step_end(1, [])
    console.on_step_end(2, [])  # nothing new: no second identical line
    console.on_trial_result(2, [], a, {R.EPOCH: 2, R.VAL_FID: 49.5})
    console.on_trial_complete(2, [], a)
    console.on_experiment_end([])
    assert out.getvalue().splitlines() == [
        "0/3 trials done, 2 running, best validation FID so far 47.0 (trial trial_0002_bbbb)",
        "trial_0001_aaaa finished: 2 epoch(s), validation FID 49.5",
        "1/3 trials done, 1 running, best validation FID so far 47.0 (trial trial_0002_bbbb)",
    ]


def test_the_progress_line_says_the_time_left_once_the_first_epochs_are_timed():
    """Pace: the seconds the trials spent per epoch so far (R.TRIAL_SECONDS); left: the epochs still to
    run (expected per trial under the scheduler) x pace / trial slots. Before any epoch: a probe's
    pace when there is one, else no estimate."""
    out = io.StringIO()
    console = StudyConsole(out, interactive=False, interval_s=0,
                           shape=StudyShape(expected_epochs=4.0, slots=2))
    console.setup(total_num_samples=4)
    a, b = _trial("trial_0001_aaaa"), _trial("trial_0002_bbbb")
    console.on_trial_start(0, [], a)
    console.on_trial_start(0, [], b)
    assert "left" not in console.progress_line()  # nothing timed yet, no probe
    console.on_trial_result(1, [], a, {R.EPOCH: 1, R.VAL_FID: 52.0, R.TRIAL_SECONDS: 1000.0})
    console.on_trial_result(1, [], b, {R.EPOCH: 1, R.VAL_FID: 47.0, R.TRIAL_SECONDS: 2000.0})
    # left: 3 epochs of a at 1000 s and 3 of b at 2000 s, 2 x 4 waiting ones at the mean 1500 s, over 2
    # slots: (3000 + 6000 + 12,000) / 2 = 10,500 s
    assert console.progress_line().endswith(", about 2 h 55 min left at the current pace")
    console.on_trial_complete(2, [], a)
    console.on_trial_start(2, [], _trial("trial_0003_cccc"))
    console.on_trial_start(2, [], _trial("trial_0004_dddd"))
    console.on_trial_complete(2, [], _trial("trial_0003_cccc"))
    console.on_trial_complete(2, [], _trial("trial_0004_dddd"))
    # b alone: 3 epochs at its own 2000 s, however fast the others were
    assert console.progress_line().endswith(", about 1 h 40 min left at the current pace")
    # a trial in its first epoch for 3 h already, beside a fast one: at least 3 h per epoch, 4 epochs
    # left of it, and no sooner than that
    two = StudyConsole(out, interactive=False, shape=StudyShape(4.0, 2))
    two.setup(total_num_samples=2)
    fast, slow = _trial("trial_0001_ffff"), _trial("trial_0002_ssss")
    two.on_trial_start(0, [], fast)
    two.on_trial_start(0, [], slow)
    two.started[trial_label(slow)] -= 3 * 3600
    two.on_trial_result(1, [], fast, {R.EPOCH: 1, R.TRIAL_SECONDS: 100.0})
    assert two.progress_line().endswith(", about 12 h left at the current pace")
    probed = StudyConsole(out, interactive=False, shape=StudyShape(4.0, 1, prior_epoch_s=30.0))
    probed.setup(total_num_samples=1)
    assert probed.progress_line().endswith(", about 2 min left at a probe's pace (training only)")
    assert [duration(s) for s in (42, 600, 7800, 3 * 86400 + 4 * 3600)] == ["42 s", "10 min", "2 h 10 min",
                                                                           "3 d 4 h"]


def test_the_terminal_console_redraws_one_line_per_running_trial_in_place():
    out = io.StringIO()
    console = StudyConsole(out, interactive=True, interval_s=0)
    console.setup(total_num_samples=2)
    a = _trial("trial_0001_aaaa")
    console.on_trial_start(0, [], a)
    console.on_trial_result(1, [], a, {R.EPOCH: 1, R.VAL_FID: 80.0})
    console.refresh()
    first = out.getvalue()
    assert first == ("0/2 trials done, 1 running, best validation FID so far 80.0 (trial trial_0001_aaaa)\n"
                     "  trial_0001_aaaa  epoch 1/4  val FID 80.0  mlp  batch 64  lr 0.0002\n")
    console.on_trial_result(2, [], a, {R.EPOCH: 2, R.VAL_FID: 70.0})
    console.refresh()
    redraw = out.getvalue()[len(first):]
    assert redraw.startswith("\x1b[2F\x1b[J")  # up over the two lines, clear, draw again
    assert "epoch 2/4  val FID 70.0" in redraw


def test_a_second_launcher_gets_the_next_free_port_and_half_the_cpus():
    others = [{"pid": 1, "study": "gan-a", "port": DEFAULT_DASHBOARD_PORT, "num_cpus": None}]
    port = sharing._choose_port("127.0.0.1", None, others)
    assert port > DEFAULT_DASHBOARD_PORT and sharing.port_is_free("127.0.0.1", port)
    machine = os.cpu_count() or 1
    assert sharing.cpu_share(None, 1) == max(1, machine // 2)
    assert sharing.cpu_share(None, 0) is None  # alone: all of them (Ray's default)
    assert sharing.cpu_share(3, 5) == 3  # --num-cpus wins


def test_a_taken_dashboard_port_that_was_asked_for_is_refused():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            sharing._choose_port("127.0.0.1", port, [])


def test_the_registry_drops_a_dead_launcher(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_LAUNCHER_REGISTRY", str(tmp_path))
    stale = tmp_path / "999999.json"
    stale.write_text(json.dumps({"pid": 999999, "study": "gone", "port": 8265}))  # nobody holds its lock
    claim = sharing.claim("mine", "127.0.0.1", None, None)
    try:
        assert claim.others == [] and not stale.exists() and claim.num_cpus is None
        assert json.loads((tmp_path / f"{os.getpid()}.json").read_text())["study"] == "mine"
    finally:
        claim.release()
    assert not (tmp_path / f"{os.getpid()}.json").exists()


def test_replicate_runs_are_tagged_with_their_source_trial(tmp_path):
    folder = tmp_path / "study" / R.REPLICATES_DIR
    folder.mkdir(parents=True)
    (folder / R.REPLICATES_SPEC).write_text(json.dumps({"runs": [["aaaa", 1], ["aaaa", 2], ["bbbb", 1]]}))
    assert tracking.replicate_tags(str(folder / "replicate_0003_cccc")) == {
        "kind": "replicate", R.SOURCE_TRIAL_ID: "bbbb", R.REPLICATE_SEED: "1"}
    assert tracking.replicate_tags(str(tmp_path / "study" / "trial_0001_dddd")) == {"kind": "search"}


def test_family_both_refuses_existing_studies_before_anything_runs(tmp_path, capsys):
    from study import launch

    (tmp_path / "cmp-vae").mkdir()
    (tmp_path / "cmp-vae" / "trials.parquet").write_text("")
    rc = launch.main(["--family", "both", "--smoke-test", "--name", "cmp", "--storage-path", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == R.EXIT_BAD_INPUT and err.count("error:") == 1 and "cmp-vae" in err and "--resume" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp-vae"]


# --- slow: real launchers ---------------------------------------------------------------------------
def _launcher(data_dir, storage: Path, name: str, *extra: str, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "study.launch", "--family", "gan", "--smoke-test", "--data-dir", str(data_dir),
         "--storage-path", str(storage), "--name", name, *extra],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def tracked_smoke_study(tmp_path_factory, data_dir):
    """One smoke study through the launcher, with default console flags and both trackers."""
    storage = tmp_path_factory.mktemp("console")
    process = _launcher(data_dir, storage, "tracked", "--tracker", "mlflow", "--tracker", "wandb",
                        "--num-cpus", "2")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out + err
    return SimpleNamespace(out=out, err=err, study_dir=storage / "tracked")


@pytest.mark.slow
def test_a_smoke_study_console_is_short_with_a_progress_line_and_no_boxes(tracked_smoke_study):
    out, err, study_dir = tracked_smoke_study.out, tracked_smoke_study.err, tracked_smoke_study.study_dir
    lines = (out + err).splitlines()
    assert len(lines) < SMOKE_CONSOLE_MAX_LINES, out + err
    final = PROGRESS.findall(out)[-1]
    assert final[:3] == ("4", "4", "0") and final[3]  # all done, the best trial named
    assert "╭" not in out + err and "Trial status" not in out  # no config boxes, no status tables
    assert "Pushing file package" not in err and "(train_trial pid=" not in out + err
    assert f"TensorBoard:      tensorboard --logdir {study_dir}" in out
    assert f"optuna-dashboard sqlite:///{study_dir}/optuna.db" in out
    assert "get-auth-token" in out and "/tmp/ray/session" not in out
    assert "study tracked finished in" in out and "best trial" in out  # the end-of-study summary stays


@pytest.mark.slow
def test_mlflow_holds_one_run_per_trial_with_params_metrics_and_sample_grids(tracked_smoke_study):
    import pandas as pd
    from mlflow.tracking import MlflowClient

    study_dir = tracked_smoke_study.study_dir
    trials = pd.read_parquet(study_dir / R.TRIALS_FILE)
    client = MlflowClient(tracking.tracking_uri(str(study_dir)))
    experiment = client.get_experiment_by_name("tracked")
    runs = {r.data.tags["trial"]: r for r in client.search_runs([experiment.experiment_id])}
    assert len(runs) == len(trials) == 4
    for row in trials.itertuples():
        (label,) = [k for k in runs if k.endswith(row.trial_id)]
        run = runs[label]
        assert run.info.status == "FINISHED" and run.data.tags["kind"] == "search"
        assert run.data.params["batch_size"] == str(row.hp_batch_size)
        history = client.get_metric_history(run.info.run_id, R.VAL_FID)
        assert [m.step for m in history] == list(range(1, row.epochs_run + 1))
        assert history[-1].value == pytest.approx(row.final_val_fid)
        grids = client.list_artifacts(run.info.run_id, R.SAMPLES_DIR)
        assert len(grids) == row.epochs_run
        if row.stop_reason == R.STOP_COMPLETED:
            assert run.data.metrics[R.TEST_FID] == pytest.approx(row.test_fid)


WANDB_BLOCK = 32768  # the .wandb file: a LevelDB-style log of protobuf Records in 32 KiB blocks


def wandb_records(path: Path):
    """The Records of an offline run's .wandb file (a 7-byte file header, then records with a 7-byte
    header each: crc32, length, kind 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pending = path.read_bytes(), 7, b""
    while pos + 7 <= len(data):
        if WANDB_BLOCK - pos % WANDB_BLOCK < 7:  # a block's tail too short for a header is padding
            pos += WANDB_BLOCK - pos % WANDB_BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


@pytest.mark.slow
def test_wandb_holds_one_offline_run_per_trial_with_config_metrics_and_the_last_grid(tracked_smoke_study):
    import pandas as pd

    study_dir = tracked_smoke_study.study_dir
    trials = pd.read_parquet(study_dir / R.TRIALS_FILE)
    history = pd.read_parquet(study_dir / R.HISTORY_FILE)
    runs = sorted((study_dir / tracking.WANDB_DIR).glob("offline-run-*"))
    assert len(runs) == len(trials) == 4
    seen = {}
    for run_dir in runs:
        (log,) = run_dir.glob("run-*.wandb")
        records = list(wandb_records(log))
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        config = {item.key: json.loads(item.value_json) for item in run.config.update}
        fids = {}
        for record in records:
            if record.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                         for i in record.history.item}
                if R.VAL_FID in items:
                    fids[int(items["_step"])] = items[R.VAL_FID]
        seen[run.display_name] = (config, fids, run_dir, set(run.tags), run.job_type, run.run_group,
                                  run.project)
    for row in trials.itertuples():
        (label,) = [k for k in seen if k.endswith(row.trial_id)]
        config, fids, run_dir, tags, job_type, group, project = seen[label]
        assert config["batch_size"] == row.hp_batch_size and tags == {"search"} and job_type == "search"
        assert group == project == "tracked"
        recorded = history[history[R.TRIAL_ID] == row.trial_id].drop_duplicates(R.EPOCH, keep="last")
        assert sorted(fids) == list(range(1, row.epochs_run + 1))
        assert [fids[e] for e in sorted(fids)] == pytest.approx(list(recorded[R.VAL_FID]))
        assert len(list((run_dir / "files" / "media" / "images").glob("samples_*.png"))) == 1  # the last grid


@pytest.mark.slow
def test_two_launchers_with_default_flags_both_finish(tmp_path, data_dir):
    env = {**os.environ, "STUDY_LAUNCHER_REGISTRY": str(tmp_path / "registry")}
    first = _launcher(data_dir, tmp_path / "a", "first", env=env)
    started = time.monotonic()
    for line in first.stdout:  # the second starts once the first holds its port (not after a sleep)
        if line.startswith("Ray dashboard: http://"):
            first_port = int(line.split("http://", 1)[1].split()[0].rsplit(":", 1)[1])
            break
        assert time.monotonic() - started < 300
    second = _launcher(data_dir, tmp_path / "b", "second", env=env)
    out2, err2 = second.communicate(timeout=900)
    out1, err1 = first.communicate(timeout=900)
    assert first.returncode == 0, out1 + err1
    assert second.returncode == 0, out2 + err2
    (dashboard,) = [line for line in out2.splitlines() if line.startswith("Ray dashboard: http://")]
    assert int(dashboard.split("http://", 1)[1].split()[0].rsplit(":", 1)[1]) != first_port
    share = max(1, (os.cpu_count() or 1) // 2)
    assert (f"other studies run on this machine: first (PID {first.pid}); this study's Ray takes {share} "
            in out2)
    assert "Traceback" not in err1 + err2


@pytest.mark.slow
def test_a_port_taken_between_the_check_and_rays_start_is_one_error_line(capsys):
    """The race the launcher's check cannot close: the port is free at the check, taken when Ray starts.
    Ray's own refusal becomes one `error:` line and exit 2 from the command wrapper (study/engine/command.py),
    without a minute's wait, and the command's resources are released."""
    import ray

    from study.engine.command import Command, run_command
    from study.engine.spec import RaySettings

    released = []
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]  # what the launcher's check chose, taken since
        started = time.monotonic()
        rc = run_command(lambda: None, lambda _: Command(
            ray=RaySettings(num_cpus=1), run=lambda: pytest.fail("ran without a Ray"), finished=lambda _: 0,
            interrupted="", dashboard=("127.0.0.1", port), release=lambda: released.append(True)))
    assert rc == R.EXIT_BAD_INPUT and released == [True]
    err = capsys.readouterr().err
    assert re.search(f"^error: Ray did not start: .*{port}", err, re.MULTILINE) and "Traceback" not in err
    assert time.monotonic() - started < 30 and not ray.is_initialized()


def test_family_both_resume_knows_what_each_study_still_needs(tmp_path):
    from study.launcher.both import _state
    from study.store import StudyStore

    study = tmp_path / "cmp-gan"
    assert _state(StudyStore(study)) == "new"
    study.mkdir()
    (study / R.TRIALS_FILE).write_text("")
    assert _state(StudyStore(study)) == "searched"  # its replicates go on (as python -m study.replicate)
    (study / R.REPLICATES_FILE).write_text("")
    assert _state(StudyStore(study)) == "done"  # skipped


def test_the_console_pickles_without_its_stream_and_writes_to_stdout_once_restored(capsys):
    """Tune pickles its callbacks into tuner.pkl; a console holding pytest's (or any) stream must not
    make that fail, and the restored one writes to the restoring process's stdout."""
    from ray import cloudpickle

    from study.engine.console import StudyConsole

    class Unpicklable(io.StringIO):
        def __reduce__(self):
            raise TypeError("cannot pickle this stream")

    for console in (StudyConsole(stream=Unpicklable(), interactive=False), StudyConsole(interactive=False)):
        restored = cloudpickle.loads(cloudpickle.dumps(console))
        assert restored.stream is sys.stdout and restored.interactive is False
    restored.stream.write("restored console\n")
    assert "restored console" in capsys.readouterr().out
