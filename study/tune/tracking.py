"""Experiment trackers: `--tracker mlflow` logs every trial of a study (search and replicates) to MLflow.

    mlflow ui --backend-store-uri sqlite:///results/<name>/mlruns/mlflow.db

The store is local and needs no server: `<study>/mlruns/mlflow.db` (SQLite; MLflow 3 refuses its plain
file store unless told otherwise) with the artifacts in `<study>/mlruns/artifacts/`. One MLflow
experiment per study, named after it; one run per trial (run name: the trial's directory,
trial_0001_<id>), with its configuration as params, every epoch's reported metrics (validation
FID/KID/IS, losses, timings; step = epoch) and the final report's test metrics, and the trial's
sample grids (one PNG per epoch) and summary.json as artifacts. Runs carry the tags `study`, `trial`
and `kind` (search or replicate); a replicate also `source_trial_id` and `replicate_seed` (read from
the replicates' own spec, STUDY_DIR/replicates/replicates.json). A resumed study continues the runs
of its trials (found by their `trial` tag) instead of opening new ones.

Early-stopped trials get their test metrics after the search (study/tune/export.py); those are in
trials.parquet, not in MLflow. The callback runs in the driver (a Tune LoggerCallback), so the workers
need no MLflow.
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
from pathlib import Path
from typing import Any

from ray.tune.logger import LoggerCallback

from study import results as R
from study.store import is_uri
from study.tune.console import trial_label

MLRUNS_DIR = "mlruns"
MLFLOW_DB = "mlflow.db"
SKIPPED_METRICS = frozenset({"pid", "timestamp", "done", "training_iteration", "time_since_restore",
                             "iterations_since_restore"})
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def tracking_uri(study_dir: str) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / MLRUNS_DIR / MLFLOW_DB}"


def callbacks(tracker: str | None, study_dir: str, study_name: str) -> list[Any]:
    if tracker is None or is_uri(study_dir):
        return []
    return [MLflowTracker(study_dir, study_name)]


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = str(value)[:MAX_PARAM_CHARS]
    return flat


def replicate_tags(trial_path: str) -> dict[str, str]:
    """A replicate's source trial and seed: its directory's counter indexes the spec's runs."""
    folder, name = posixpath.split(trial_path.rstrip("/"))
    if posixpath.basename(folder) != R.REPLICATES_DIR:
        return {"kind": "search"}
    tags = {"kind": "replicate"}
    counter = name.split("_")[1] if name.count("_") >= 2 else ""
    try:
        runs = json.loads((Path(folder) / R.REPLICATES_SPEC).read_text())["runs"]
        source, seed = runs[int(counter) - 1]
    except (OSError, ValueError, KeyError, IndexError):
        return tags
    return {**tags, R.SOURCE_TRIAL_ID: str(source), R.REPLICATE_SEED: str(seed)}


class MLflowTracker(LoggerCallback):
    """One MLflow run per trial in the study's local store; see the module docstring."""

    def __init__(self, study_dir: str, study_name: str):
        self.study_dir = str(Path(study_dir).resolve())
        self.study_name = study_name
        self.client: Any = None
        self.experiment_id = ""
        self.runs: dict[str, str] = {}  # trial label -> run id

    def setup(self, *args, **kwargs) -> None:
        from mlflow.tracking import MlflowClient  # an optional extra: imported when a study asks for it

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # its table creation notes
        root = Path(self.study_dir) / MLRUNS_DIR
        root.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri(self.study_dir))
        found = self.client.get_experiment_by_name(self.study_name)
        if found is not None:
            self.experiment_id = found.experiment_id
            return
        self.experiment_id = self.client.create_experiment(
            self.study_name, artifact_location=(root / "artifacts").as_uri(),
            tags={"study_dir": self.study_dir})

    def _run_id(self, trial) -> str:
        label = trial_label(trial)
        if label in self.runs:
            return self.runs[label]
        earlier = self.client.search_runs([self.experiment_id], filter_string=f"tags.trial = '{label}'",
                                          max_results=1)
        if earlier:  # a resumed study: the trial's run goes on
            self.runs[label] = earlier[0].info.run_id
            return self.runs[label]
        tags = {"study": self.study_name, "trial": label, **replicate_tags(getattr(trial, "path", "") or "")}
        run = self.client.create_run(self.experiment_id, run_name=label, tags=tags)
        self.runs[label] = run.info.run_id
        from mlflow.entities import Param  # see setup

        params = [Param(k, v) for k, v in _flat(trial.config or {}).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run.info.run_id, params=params[start:start + 100])
        return run.info.run_id

    def log_trial_start(self, trial) -> None:
        self._run_id(trial)

    def log_trial_result(self, iteration: int, trial, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric  # see setup

        run_id = self._run_id(trial)
        step = int(result.get(R.EPOCH, iteration) or 0)
        stamp = int(float(result.get("timestamp", 0)) * 1000)
        metrics = [Metric(key, float(value), stamp, step) for key, value in result.items()
                   if isinstance(value, int | float) and not isinstance(value, bool)
                   and key not in SKIPPED_METRICS and math.isfinite(float(value))]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        run_id = self._run_id(trial)
        folder = Path(getattr(trial, "path", "") or "")
        if (folder / R.SAMPLES_DIR).is_dir():
            self.client.log_artifacts(run_id, str(folder / R.SAMPLES_DIR), R.SAMPLES_DIR)
        if (folder / R.SUMMARY_JSON).is_file():
            self.client.log_artifact(run_id, str(folder / R.SUMMARY_JSON))
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
