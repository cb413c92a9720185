"""What a study needs to recover from a crash of its own driver.

- `record_local_ray` writes, into the study directory, which local Ray session the launcher
  started (host, session directory, driver PID); `reap_stale_ray` ends, on `--resume`, the
  processes of that recorded session that outlived a killed driver (Ray's DashboardAgent and
  RuntimeEnvAgent ignore SIGTERM and keep their ports). A process belongs to the session when
  its command line names the session directory or it holds a file open under it (every Ray
  process keeps its logs there); never by a process name.
- `ResumableASHA` is ASHA whose rungs survive a resume: a restored trial's results (Tune's
  result.json in the trial directory, one line per report) are replayed into its bracket when
  Tune re-adds the trial, so resumed trials are judged against the rung values recorded before
  the crash, and a trial already recorded at a rung is not judged there twice.
- `ResumableOptunaSearch` is OptunaSearch that accepts a restored trial Optuna already closed:
  `optuna.db` is written at once, Tune's searcher pickle only now and then, so a driver killed in
  between comes back with a trial that Tune still runs but the database has finished; reporting
  to it again would raise `UpdateFinishedTrialError` and end the resumed study.
  It also tells Optuna what happened (`optuna_state`, docs/search.md): Ray's OptunaSearch tells
  every ended trial COMPLETE with its last value, so a trial the scheduler stopped at epoch 2
  reached TPE as finished with its epoch-2 FID. Here a stopped trial is PRUNED, its per-epoch
  validation FIDs (the epoch it stopped at included) its intermediate values, stepped by epoch;
  a diverged, out-of-memory or errored trial is FAIL.
  A driver killed between an Optuna ask and Tune's next checkpoint leaves a trial RUNNING in
  `optuna.db` that the restored searcher never handed to Tune (with one trial at a time: the second
  seed configuration, asked as the first trial ended). On restore that trial is FAIL, marked
  LOST_ASK_ATTR, and an enqueued configuration is enqueued again, so it still runs.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import signal
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
import psutil  # type: ignore[import-untyped]  # (a Ray dependency)
from optuna.trial import TrialState
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search.optuna import OptunaSearch

from study import results as R
from study.store import StudyStore

TERMINATE_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long
LOST_ASK_ATTR = "lost_in_driver_crash"  # user attr of an Optuna trial asked but never run by Tune


def record_local_ray(store: StudyStore) -> dict[str, Any]:
    """Record the local Ray session this process started (call right after `ray.init`)."""
    import ray

    node = ray._private.worker.global_worker.node  # the local node this driver started
    assert node is not None, "record_local_ray runs after ray.init"
    record = {"host": socket.gethostname(), "driver_pid": os.getpid(),
              "driver_started": psutil.Process().create_time(),
              "session_dir": node.get_session_dir_path(), "gcs_address": node.gcs_address}
    store.write_bytes(store.path(R.RAY_SESSION_JSON), json.dumps(record, indent=1).encode())
    return record


def read_ray_record(store: StudyStore) -> dict[str, Any] | None:
    path = store.path(R.RAY_SESSION_JSON)
    if not store.exists(path):
        return None
    try:
        record = json.loads(store.read_bytes(path))
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("session_dir") else None


def session_processes(session_dir: str) -> list[int]:
    """PIDs (other than this process) whose command line names `session_dir` or that hold a file
    open under it."""
    prefix = session_dir.rstrip("/") + "/"
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            if any(session_dir in part for part in proc.info["cmdline"] or ()) or any(
                    f.path.startswith(prefix) for f in proc.open_files()):
                found.append(proc.pid)
        except psutil.Error:  # gone, or not ours to inspect
            continue
    return found


def reap_stale_ray(store: StudyStore) -> list[int]:
    """End the processes of the local Ray that a crashed launcher of this study started; returns
    their PIDs. Call only while holding the study lock (so that launcher is gone)."""
    record = read_ray_record(store)
    if record is None or record.get("host") != socket.gethostname():
        return []
    if _alive(record.get("driver_pid"), record.get("driver_started")):
        return []  # that launcher still runs (the study lock refuses a second one before this)
    pids = session_processes(record["session_dir"])
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=TERMINATE_GRACE_S)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=TERMINATE_GRACE_S)
    return pids


def _alive(pid: Any, started: Any) -> bool:
    """Whether process `pid`, created at `started` (so not a later process with a reused PID), runs."""
    try:
        return pid != os.getpid() and abs(psutil.Process(int(pid)).create_time() - float(started)) < 1.0
    except (psutil.Error, TypeError, ValueError):
        return False


def reported_results(trial) -> list[dict[str, Any]]:
    """The results a trial reported before (Tune's result.json, one JSON object a line); [] for a
    new trial."""
    storage = getattr(trial, "storage", None)
    lines: list[str] = []
    try:
        if storage is not None:
            path = posixpath.join(storage.trial_fs_path, "result.json")
            with storage.storage_filesystem.open_input_stream(path) as f:
                lines = f.readall().decode().splitlines()
        elif trial.local_path:
            lines = (Path(trial.local_path) / "result.json").read_text().splitlines()
    except (OSError, ValueError, RuntimeError):  # a new trial: no directory (RuntimeError) or file yet
        return []
    results = []
    for line in lines:
        try:
            results.append(json.loads(line))
        except ValueError:  # a line cut short by the crash
            continue
    return results


class ResumableASHA(AsyncHyperBandScheduler):
    """ASHA that rebuilds its rungs from the trials' saved results when Tune re-adds them on a
    restore (see the module docstring)."""

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        bracket = self._trial_info[trial.trial_id]
        for result in reported_results(trial):
            if self._time_attr in result and self._metric in result:
                # what on_trial_result recorded before the crash; its decision was already acted on
                bracket.on_result(trial, result[self._time_attr], self._metric_op * result[self._metric])


def optuna_state(result: dict[str, Any] | None, error: bool) -> TrialState:
    """The Optuna state of a trial Tune ended (Ray calls `on_trial_complete` for both):
    - `error` (Tune gave up on the trial) -> FAIL;
    - no R.STOP_REASON in the last result -> PRUNED: the trainable puts the stop reason in its final
      report only (study/engine/trainable.py), so the last result without one is the report at which
      the scheduler stopped it; None is a trial stopped while paused or pending (HyperBand);
    - completed -> COMPLETE; diverged, oom and error -> FAIL."""
    if error:
        return TrialState.FAIL
    if result is None or R.STOP_REASON not in result:
        return TrialState.PRUNED
    return TrialState.COMPLETE if result[R.STOP_REASON] == R.STOP_COMPLETED else TrialState.FAIL


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that skips the results of a trial its database already finished (see the
    module docstring): that trial's value was told before the crash, and a resumed trial repeats
    the same seeded epochs, so nothing is lost by not telling it twice. It tells each ended trial
    the state `optuna_state` gives, and reports intermediate values by epoch (not Tune's
    training_iteration), single-objective only: Optuna refuses `report` on multi-objective studies."""

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._requeue_lost_asks()

    def _requeue_lost_asks(self) -> None:
        """End the database's RUNNING trials this restored searcher does not hold (asked after its
        pickle was written) as FAIL, and enqueue again those that ran an enqueued configuration."""
        if self._ot_study is None:
            return
        held = {ot_trial.number for ot_trial in self._ot_trials.values()}
        for lost in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if lost.number in held:
                continue
            optuna.Trial(self._ot_study, lost._trial_id).set_user_attr(LOST_ASK_ATTR, True)
            self._ot_study.tell(lost.number, state=TrialState.FAIL)  # Tune never ran it
            fixed = lost.system_attrs.get("fixed_params")  # (how Optuna's enqueue_trial marks a trial)
            if fixed:
                self._ot_study.enqueue_trial(fixed)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials:
            super().on_trial_result(trial_id, result)  # (its warning)
            return
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)  # (its warning)
            return
        state = optuna_state(result, error)
        if result is not None:  # the report a scheduler stopped it at reaches only this method (at
            # max_t too: ASHA stops a trial that completed); a pruned trial's value is that epoch's.
            # Without a scheduler on_trial_result had it already: _report keeps Optuna's first value quietly
            self._report(trial_id, result)
        values = self._values(result) if state == TrialState.COMPLETE else None
        if state == TrialState.COMPLETE and values is None:
            state = TrialState.FAIL  # no finite objective: Optuna refuses it as COMPLETE
        assert self._ot_study is not None  # (set up before Tune asks for the first trial)
        self._ot_study.tell(self._ot_trials[trial_id], values, state=state,
                            skip_if_finished=True)  # (finished in the database before a crash)
        self._completed_trials.add(trial_id)

    def _multi_objective(self) -> bool:
        return isinstance(self.metric, list)

    def _values(self, result: dict | None) -> float | list[float] | None:
        metrics = self.metric if self._multi_objective() else [self.metric]
        values = [(result or {}).get(m) for m in metrics]
        finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
        if len(finite) < len(values):
            return None
        return finite if self._multi_objective() else finite[0]

    def _report(self, trial_id: str, result: dict) -> None:
        if self._multi_objective():
            return
        value, epoch = result.get(self.metric), result.get(R.EPOCH)
        if value is None or epoch is None or not math.isfinite(value):
            return  # no validation this epoch (diverged: NaN)
        try:
            with warnings.catch_warnings():  # a step reported again (a trial restored from a checkpoint
                # repeats its later epochs; an unscheduled trial's last epoch reaches on_trial_complete too):
                warnings.filterwarnings("ignore", "The reported value is ignored", UserWarning)
                self._ot_trials[trial_id].report(float(value), int(epoch))  # Optuna keeps the first value
        except optuna.exceptions.UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)  # on_trial_complete then skips it too
