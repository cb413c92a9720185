"""The fault matrix of issue 11, on real Ray: every trial ends with exactly one row in
trials.parquet (none lost, none duplicated) and the stop reason that says what happened.

- a trial worker SIGKILLed mid-epoch, a corrupt latest checkpoint when a trial resumes, and a width
  that cannot fit in memory, in one Tune run of the study's trainable;
- ASHA's rungs survive a restore (study.recovery.ResumableASHA against Tune's own ASHA);
- a searcher restored from a pickle older than its optuna.db (study.recovery.ResumableOptunaSearch);
- the launcher SIGKILLed, then an immediate --resume on the same dashboard port: no process of the
  crashed study is left, and a local study's Ray listens on loopback only;
- a worker node removed from a 2-node local cluster mid-trial.
NaN losses are tested in test_launch.py (diverged trials end at once).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState

from study import launch
from study import results as R
from study.engine import cluster
from study.engine.recovery import LOST_ASK_ATTR, session_processes
from study.optuna_storage import load_study
from tests.test_cluster import two_node_cluster  # noqa: F401  (fixture)
from tests.test_launch import (  # noqa: F401  (local_ray: fixture)
    check_study,
    dashboard_refuses_requests_without_the_token,
    free_port,
    launch_args,
    local_ray,
    run_launcher,
)

STUDY = "faults"
KILL, CORRUPT = 32, 33  # first encoder width of the trial each fault hits
OOM_WIDTHS = [16, 10**6, 10**6]  # a 10^6 x 10^6 layer: 4 TB of weights, refused by the allocator


class FaultyEvaluator:
    """The real evaluator, plus one fault per study (a marker file remembers it happened):
    KILL: the worker SIGKILLs itself during epoch 2, before that epoch is reported or checkpointed;
    CORRUPT: during epoch 3, the latest checkpoint (epoch 2) is truncated and the trial crashes, so
    its restart finds a damaged latest checkpoint and must fall back to epoch 1's."""

    def __init__(self, evaluator, fault: int | None, markers: Path):
        self.evaluator, self.fault, self.markers, self.calls = evaluator, fault, markers, 0
        self.featurenet_sha256 = evaluator.featurenet_sha256

    def validation(self, model, suite=True):
        self.calls += 1
        marker = self.markers / str(self.fault)
        if self.fault == KILL and self.calls == 2 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault == CORRUPT and self.calls == 3 and not marker.exists():
            from ray import tune

            # the trial directory in storage (the markers' sibling), where Tune keeps its checkpoints
            trial_dir = self.markers.parent / STUDY / Path(tune.get_context().get_trial_dir()).name
            latest = sorted(trial_dir.glob("checkpoint_*"))[-1]
            for pt in latest.glob(R.CHECKPOINT_GLOB):
                pt.write_bytes(pt.read_bytes()[:100])  # a write cut short
            marker.write_text(str(latest))
            raise RuntimeError("injected crash after corrupting the latest checkpoint")
        return self.evaluator.validation(model, suite=suite)

    def test(self, model, nll=True):
        return self.evaluator.test(model, nll=nll)


class FaultyAssets:
    def __init__(self, assets, markers: Path):
        self.assets, self.markers = assets, markers
        self.featurenet_sha256 = assets.featurenet_sha256

    def evaluator(self, config, data, device):
        width = config.model.enc_widths[0]
        return FaultyEvaluator(self.assets.evaluator(config, data, device),
                               width if width in (KILL, CORRUPT) else None, self.markers)


def trial_history(study_dir: Path, trial_dir: str) -> list[int]:
    return [h[R.EPOCH] for h in json.loads((study_dir / trial_dir / R.METRICS_JSON).read_text())]


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_a_killed_worker_a_corrupt_checkpoint_and_an_oom_width_each_leave_one_row(tmp_path, data_dir):
    from ray import cloudpickle, tune

    from models.config import TrainConfig, VAEConfig
    from study.data import load_splits
    from study.engine.trainable import TrialSetup, with_setup
    from study.engine.trial_tables import export_study
    from study.metrics.evaluator import prepare_evaluation

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    markers = tmp_path / "markers"
    markers.mkdir()
    data = load_splits(data_dir, train_subset=1000)
    assets = FaultyAssets(prepare_evaluation(data, iw_images=200), markers)
    base = TrainConfig(model=VAEConfig(arch="mlp", latent_dim=4, enc_widths=(32,), dec_widths=(32,)),
                       epochs=4, batch_size=100, train_subset=1000, eval_samples=200,
                       checkpoint_every=1).to_dict()
    tuner = tune.Tuner(
        tune.with_resources(with_setup(TrialSetup(data=data, assets=assets)), {"cpu": 1}),
        param_space={**base, "enc_widths": tune.grid_search([[KILL], [CORRUPT], OOM_WIDTHS])},
        tune_config=tune.TuneConfig(trial_dirname_creator=cluster.trial_dirname),
        run_config=tune.RunConfig(name=STUDY, storage_path=str(tmp_path),
                                  failure_config=tune.FailureConfig(max_failures=1),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                                  sync_config=tune.SyncConfig(sync_artifacts=True)),
    )
    results = tuner.fit()
    assert results.num_errors == 0
    assert (markers / str(KILL)).exists() and (markers / str(CORRUPT)).exists()  # both faults happened
    study_dir = tmp_path / STUDY
    table = export_study(str(study_dir), STUDY).trials
    assert len(table) == 3 and table[R.TRIAL_ID].is_unique
    table = table.set_index(table[R.CONFIG_JSON].map(lambda c: json.loads(c)["enc_widths"][0]))
    killed, corrupt, oom = table.loc[KILL], table.loc[CORRUPT], table.loc[OOM_WIDTHS[0]]
    # the killed worker's trial was retried from its epoch-1 checkpoint: epoch 2 ran again, once recorded
    assert killed[R.STOP_REASON] == R.STOP_COMPLETED and trial_history(study_dir, killed[R.TRIAL_DIR]) == [
        1, 2, 3, 4]
    # the corrupt epoch-2 checkpoint was passed over for epoch 1's
    assert corrupt[R.STOP_REASON] == R.STOP_COMPLETED
    assert trial_history(study_dir, corrupt[R.TRIAL_DIR]) == [1, 2, 3, 4]
    # what Tune saw: epoch 2 reported twice, the second time after resuming from epoch 1 (epoch 2's
    # checkpoint being unreadable; without the fallback the restart fails and the trial errors)
    reported = [json.loads(line)[R.EPOCH] for line in
                (study_dir / corrupt[R.TRIAL_DIR] / "result.json").read_text().splitlines()]
    assert reported == [1, 2, 2, 3, 4]
    for row in (killed, corrupt):
        assert math.isfinite(row[R.TEST_FID])
    # the width that cannot fit: stop reason oom, no epoch, sized without allocating; the others ran
    assert oom[R.STOP_REASON] == R.STOP_OOM and oom[R.EPOCHS_RUN] == 0
    assert oom[R.PARAMS_TOTAL] > 10**12 and math.isnan(oom[R.TEST_FID])


def rung_trainable(config):
    """Reports a constant validation FID per epoch; trial 'late' crashes before its first report
    once (a marker file remembers), as a trial running when the driver died would restart."""
    from ray import tune

    marker = Path(config["marker"])
    if config["fid"] > 1 and not marker.exists():  # the 'late' trial
        marker.write_text("crashed")
        raise RuntimeError("injected crash before the first report")
    for epoch in range(1, 5):
        tune.report({R.EPOCH: epoch, R.VAL_FID: config["fid"]})


def asha_run(tmp_path: Path, scheduler, name: str) -> int:
    """Epochs the 'late' trial (FID 5) ran after a restore, 'early' (FID 1) having finished first."""
    from ray import cloudpickle, tune

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    tuner = tune.Tuner(
        rung_trainable,
        param_space={"marker": str(tmp_path / f"{name}.crashed"),
                     "fid": tune.grid_search([1.0, 5.0])},  # 'early', then 'late'

        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path)),
    )
    first = tuner.fit()
    assert first.num_errors == 1  # 'late' crashed before reporting
    restored = tune.Tuner.restore(str(tmp_path / name), trainable=rung_trainable, resume_errored=True)
    results = restored.fit()
    late = [r for r in results if r.config["fid"] > 1][0]
    return late.metrics[R.EPOCH]


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_a_restored_asha_judges_resumed_trials_against_the_rungs_recorded_before(tmp_path):
    from ray.tune.schedulers import ASHAScheduler

    from study.engine.recovery import ResumableASHA

    common = dict(time_attr=R.EPOCH, metric=R.VAL_FID, mode="min", max_t=4, grace_period=1,
                  reduction_factor=2)
    # Tune's ASHA restarts with empty rungs: the worse trial is judged against nothing and runs on
    assert asha_run(tmp_path, ASHAScheduler(**common), "plain") == 4
    # rebuilt from 'early's saved results, rung 1 stops 'late' (FID 5 > 1) as it would have without the crash
    assert asha_run(tmp_path, ResumableASHA(**common), "resumable") == 1


def lr_space(trial) -> None:  # module level: the searcher pickles it
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)


def test_a_searcher_restored_behind_its_optuna_db_skips_the_trials_the_db_finished(tmp_path):
    """The driver dies after optuna.db recorded a trial's end but before Tune pickled the
    searcher: the restored searcher still holds the trial open, Tune resumes it, and its results
    reach an Optuna trial that is already finished."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from study.engine.recovery import ResumableOptunaSearch
    from study.optuna_storage import sqlite_url

    last = {R.EPOCH: 2, R.VAL_FID: 20.0, "training_iteration": 2, R.STOP_REASON: R.STOP_COMPLETED}

    def crashed_and_restored(cls, name: str):
        storage = optuna.storages.RDBStorage(sqlite_url(tmp_path / f"{name}.db"))
        searcher = cls(space=lr_space, metric=R.VAL_FID, mode="min", storage=storage, study_name=name,
                       sampler=optuna.samplers.RandomSampler(seed=0))
        assert searcher.suggest("t1") is not None
        searcher.save(str(tmp_path / f"{name}.pkl"))  # Tune's last searcher checkpoint
        searcher.on_trial_result("t1", {R.EPOCH: 1, R.VAL_FID: 30.0, "training_iteration": 1})
        searcher.on_trial_complete("t1", last)  # in the database, then the crash
        restored = cls(space=lr_space, metric=R.VAL_FID, mode="min")
        restored.restore(str(tmp_path / f"{name}.pkl"))
        return restored

    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # what ended the resumed study
        crashed_and_restored(OptunaSearch, "plain").on_trial_result(
            "t1", last)
    restored = crashed_and_restored(ResumableOptunaSearch, "resumable")
    restored.on_trial_result("t1", last)
    restored.on_trial_complete("t1", last)
    (trial,) = optuna.load_study(study_name="resumable",
                                 storage=sqlite_url(tmp_path / "resumable.db")).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 20.0  # told once
    assert trial.intermediate_values == {1: 30.0, 2: 20.0}  # the last epoch included, once


def test_a_searcher_restored_from_before_an_ask_runs_the_seed_configuration_that_ask_took(tmp_path):
    """The driver dies after Optuna handed out an enqueued seed configuration (RUNNING in
    optuna.db) but before Tune pickled the searcher or recorded the trial: the restored searcher
    does not know that ask, so the seed configuration would never run, and optuna.db would keep a
    trial RUNNING for ever."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from study.engine.recovery import ResumableOptunaSearch
    from study.optuna_storage import sqlite_url

    seeds = [{"lr": 1e-3}, {"lr": 5e-3}]
    last = {R.EPOCH: 2, R.VAL_FID: 20.0, "training_iteration": 2, R.STOP_REASON: R.STOP_COMPLETED}

    def crashed_and_restored(cls, name: str):
        storage = optuna.storages.RDBStorage(sqlite_url(tmp_path / f"{name}.db"))
        searcher = cls(space=lr_space, metric=R.VAL_FID, mode="min", storage=storage, study_name=name,
                       sampler=optuna.samplers.RandomSampler(seed=0), points_to_evaluate=seeds)
        assert searcher.suggest("t1") == seeds[0]
        searcher.on_trial_complete("t1", last)
        searcher.save(str(tmp_path / f"{name}.pkl"))  # Tune's last searcher checkpoint
        assert searcher.suggest("t2") == seeds[1]  # asked, then the crash: Tune never recorded t2
        restored = cls(space=lr_space, metric=R.VAL_FID, mode="min")
        restored.restore(str(tmp_path / f"{name}.pkl"))
        return restored

    assert crashed_and_restored(OptunaSearch, "plain").suggest("t3") != seeds[1]  # lost
    restored = crashed_and_restored(ResumableOptunaSearch, "resumable")
    assert restored.suggest("t3") == seeds[1]  # the lost seed configuration runs next
    restored.on_trial_complete("t3", last)
    trials = optuna.load_study(study_name="resumable", storage=sqlite_url(tmp_path / "resumable.db")).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs == {LOST_ASK_ATTR: True} and trials[1].params == seeds[1]
    assert trials[2].params == seeds[1] and not trials[2].user_attrs
    # a second restore from the same pickle finds nothing RUNNING to hand out again
    again = ResumableOptunaSearch(space=lr_space, metric=R.VAL_FID, mode="min")
    again.restore(str(tmp_path / "resumable.pkl"))
    assert len(optuna.load_study(study_name="resumable",
                                 storage=sqlite_url(tmp_path / "resumable.db")).trials) == 3


def listening_addresses(pids: list[int]) -> set[str]:
    import psutil

    found = set()
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections("inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add(conn.laddr.ip)
        except psutil.Error:
            continue
    return found


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


@pytest.mark.slow
def test_a_killed_launcher_resumes_at_once_and_leaves_no_process_behind(tmp_path, data_dir):
    study_dir = tmp_path / "crashed"
    port = str(free_port())
    seen: dict = {}

    def kill_after_first_trial(line: str, process) -> None:
        dashboard_refuses_requests_without_the_token(line, seen)
        if "killed" not in seen and list(study_dir.glob(f"trial_*/{R.SUMMARY_JSON}")):
            record = json.loads((study_dir / R.RAY_SESSION_JSON).read_text())
            pids = [process.pid, *session_processes(record["session_dir"])]
            seen.update(session=record["session_dir"], pids=len(pids),
                        listening=listening_addresses(pids))
            process.send_signal(signal.SIGKILL)  # no handler runs, nothing is saved or shut down
            seen["killed"] = time.monotonic()

    # one trial at a time: the second seed configuration is asked as the first trial ends, the
    # moment of the kill, so a resume that lost that ask would run it never (check_study)
    args = launch_args(data_dir, tmp_path, "crashed", "--family", "gan", "--dashboard-port", port,
                       num_cpus=1)
    rc, out = run_launcher(args, kill_after_first_trial)
    assert rc == -signal.SIGKILL, out[-3000:]
    assert seen["status"] == 401  # the dashboard refuses requests without the token
    # every listening socket of the study's Ray (GCS, raylet, agents, workers, driver) is on loopback
    assert seen["listening"] and all(map(is_loopback, seen["listening"])), seen["listening"]
    left = session_processes(seen["session"])
    assert left, "expected Ray processes of the killed launcher to outlive it"

    rc, out = run_launcher(launch_args(data_dir, tmp_path, "crashed", "--family", "gan", "--resume",
                                       "--dashboard-port", port, num_cpus=1))  # at once, same port
    assert rc == 0, out[-3000:]
    assert "leftover process(es) of the Ray that the interrupted launcher started" in out
    assert session_processes(seen["session"]) == []  # the crashed study's Ray was reaped
    # one row per trial, one history row per epoch, both seed configurations first, and ASHA's
    # decisions those of its rungs over the recorded FIDs (rebuilt on resume)
    table = check_study(study_dir, "gan", trials=4, min_stopped=0)
    assert set(table[R.STOP_REASON]) <= {R.STOP_COMPLETED, R.STOP_EARLY}
    study = load_study(study_dir)  # no trial is left RUNNING; one asked and lost is FAIL, marked
    assert study is not None
    ended = study.trials
    assert all(t.state.is_finished() for t in ended)
    assert all(t.user_attrs.get(LOST_ASK_ATTR) for t in ended if t.state == TrialState.FAIL)
    assert len(ended) - len(table) == sum(t.state == TrialState.FAIL for t in ended)


@pytest.mark.slow
def test_a_worker_node_removed_mid_trial_loses_no_trial(tmp_path, data_dir, two_node_cluster):  # noqa: F811
    cluster = two_node_cluster
    worker = [n for n in cluster.list_all_nodes() if not n.head][0]
    study_dir = tmp_path / "node-lost"
    removed: dict = {}

    def remove_worker_when_both_nodes_train() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            started = [p for p in study_dir.glob("trial_*/result.json") if p.stat().st_size > 0]
            if len(started) >= 2:  # two trials reported: one on each 1-CPU node
                cluster.remove_node(worker)
                removed["at"] = time.monotonic()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=remove_worker_when_both_nodes_train, daemon=True)
    watcher.start()
    rc = launch.main(["--family", "vae", "--smoke-test", "--address", cluster.address, "--data-dir",
                      str(data_dir), "--storage-path", str(tmp_path), "--name", "node-lost"])
    watcher.join(timeout=5)
    assert rc == 0 and removed
    table = pd.read_parquet(study_dir / R.TRIALS_FILE)
    assert len(table) == 4 and table[R.TRIAL_ID].is_unique
    assert set(table[R.STOP_REASON]) <= {R.STOP_COMPLETED, R.STOP_EARLY}
    history = pd.read_parquet(study_dir / R.HISTORY_FILE)
    assert not history.duplicated([R.TRIAL_ID, R.EPOCH]).any()
    assert history.groupby(R.TRIAL_ID)[R.EPOCH].count().to_dict() == dict(
        zip(table[R.TRIAL_ID], table[R.EPOCHS_RUN], strict=True))


def test_out_of_memory_on_a_shared_gpu_is_retried_twice_then_final(tmp_path):
    """The trainable's decision after run_trial returned 'oom' (raise SharedGPUOutOfMemory, so
    Tune's FailureConfig restarts the trial from its checkpoint, or keep 'oom'). The CUDA device is
    only named here: the decision needs no GPU."""
    import torch

    from study.engine.trainable import OOM_RETRIES, retry_out_of_memory

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert not retry_out_of_memory(R.STOP_OOM, cuda, 1.0, tmp_path)  # a whole GPU: the config does not fit
    assert not retry_out_of_memory(R.STOP_OOM, cpu, 0.0, tmp_path)  # host memory: final
    assert not retry_out_of_memory(R.STOP_COMPLETED, cuda, 0.25, tmp_path)
    assert [retry_out_of_memory(R.STOP_OOM, cuda, 0.25, tmp_path) for _ in range(4)] == \
        [True] * OOM_RETRIES + [False] * (4 - OOM_RETRIES)
    assert OOM_RETRIES == 2
