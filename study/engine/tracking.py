"""Experiment trackers: `--tracker mlflow` and `--tracker wandb` log every trial of a study (search and
replicates) to MLflow and to Weights & Biases (offline); both are Tune LoggerCallbacks in the driver.

    mlflow ui --backend-store-uri sqlite:///results/<name>/mlruns/mlflow.db
    wandb sync results/<name>/wandb/offline-run-*          # upload, where there is a network

MLflow:
The store is local and needs no server: `<study>/mlruns/mlflow.db` (SQLite; MLflow 3 refuses its plain
file store unless told otherwise) with the artifacts in `<study>/mlruns/artifacts/`. One MLflow
experiment per study, named after it; one run per trial (run name: the trial's directory,
trial_0001_<id>), with its configuration as params, every epoch's reported metrics (validation
FID/KID/IS, losses, timings; step = epoch) and the final report's test metrics, and the trial's
sample grids (one PNG per epoch) and summary.json as artifacts. Runs carry the tags `study`, `trial`
and `kind` (search or replicate); a replicate also `source_trial_id` and `replicate_seed` (read from
the replicates' own spec, STUDY_DIR/replicates/replicates.json). A resumed study continues the runs
of its trials (found by their `trial` tag) instead of opening new ones.

W&B: offline runs under `<study>/wandb/` (nothing leaves the machine until `wandb sync`), project and
group = the study's name, run name = the trial's directory, job type and tag = search or replicate,
the configuration (plus a replicate's source_trial_id and replicate_seed) as the run's config, every
epoch's metrics at step = epoch, the last sample grid as an image. Its run
id is fixed by study and trial, so a resumed study's trial continues its run (resume="allow").

Early-stopped trials get their test metrics after the search (study/engine/trial_tables.py); those are in
trials.parquet, not in the trackers. The callbacks run in the driver, so the workers need neither
package.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import posixpath
from pathlib import Path
from typing import Any

from ray.tune.logger import LoggerCallback

from study import results as R
from study.engine.console import trial_label
from study.store import is_uri

MLRUNS_DIR = "mlruns"
MLFLOW_DB = "mlflow.db"
SKIPPED_METRICS = frozenset({"pid", "timestamp", "done", "training_iteration", "time_since_restore",
                             "iterations_since_restore"})
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def tracking_uri(study_dir: str) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / MLRUNS_DIR / MLFLOW_DB}"


WANDB_DIR = "wandb"


def callbacks(trackers: tuple[str, ...] | list[str] | None, study_dir: str, study_name: str) -> list[Any]:
    """The Tune callbacks of the --tracker values (each once)."""
    if is_uri(study_dir):
        return []
    made = {"mlflow": MLflowTracker, "wandb": WandbTracker}
    return [made[name](study_dir, study_name) for name in dict.fromkeys(trackers or [])]


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a Tune result that are metrics (not Tune's bookkeeping)."""
    return {key: float(value) for key, value in result.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
            and key not in SKIPPED_METRICS and math.isfinite(float(value))}


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
        metrics = [Metric(key, value, stamp, step) for key, value in numeric_metrics(result).items()]
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


class WandbTracker(LoggerCallback):
    """One offline Weights & Biases run per trial under the study's directory; see the module docstring."""

    def __init__(self, study_dir: str, study_name: str):
        self.study_dir = str(Path(study_dir).resolve())
        self.study_name = study_name
        self.runs: dict[str, Any] = {}  # trial label -> wandb Run
        self.steps: dict[str, int] = {}  # trial label -> last logged step

    def setup(self, *args, **kwargs) -> None:
        Path(self.study_dir, WANDB_DIR).mkdir(parents=True, exist_ok=True)

    def run_id(self, label: str) -> str:
        """Fixed by study directory and trial: a resumed trial continues its run."""
        return hashlib.sha256(f"{self.study_dir}/{label}".encode()).hexdigest()[:16]

    def _run(self, trial) -> Any:
        label = trial_label(trial)
        if label in self.runs:
            return self.runs[label]
        import wandb  # an optional extra: imported when a study asks for it

        tags = replicate_tags(getattr(trial, "path", "") or "")
        config = {**(trial.config or {}), **{k: v for k, v in tags.items() if k != "kind"}}
        self.runs[label] = wandb.init(
            mode="offline", dir=self.study_dir, project=self.study_name, group=self.study_name, name=label,
            id=self.run_id(label), resume="allow", job_type=tags["kind"], tags=[tags["kind"]], config=config,
            reinit="create_new",  # one run per running trial, side by side in this process
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False))
        return self.runs[label]

    def log_trial_start(self, trial) -> None:
        self._run(trial)

    def log_trial_result(self, iteration: int, trial, result: dict[str, Any]) -> None:
        step = int(result.get(R.EPOCH, iteration) or 0)
        self._run(trial).log(numeric_metrics(result), step=step)
        self.steps[trial_label(trial)] = step

    def log_trial_end(self, trial, failed: bool = False) -> None:
        import wandb  # see _run

        run = self._run(trial)
        folder = Path(getattr(trial, "path", "") or "")
        grids = sorted((folder / R.SAMPLES_DIR).glob("*.png")) if (folder / R.SAMPLES_DIR).is_dir() else []
        if grids:  # at the last logged step: W&B drops rows logged below it
            run.log({R.SAMPLES_DIR: wandb.Image(str(grids[-1]), caption=grids[-1].name)},
                    step=self.steps.get(trial_label(trial), 0))
        run.finish(exit_code=1 if failed else 0)
        self.runs.pop(trial_label(trial), None)
