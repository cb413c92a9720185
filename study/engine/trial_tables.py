"""A finished Ray Tune study -> trials.parquet, history.parquet and the best trial's sample grid.

Reads only what the study wrote (Ray's experiment state and each trial directory's artifacts),
through a pyarrow filesystem, so a study on s3:// exports like a local one.

Stop reasons: a trial that wrote summary.json finished on its own (completed, or diverged);
one that Ray ended in error is "error"; one that Tune stopped before its last epoch is
"early-stopped". Test metrics: completed trials evaluate them at their end, on the test split,
inside the trial; early-stopped trials are evaluated here from their last checkpoint, which is
the epoch ASHA stopped them at (the trainable checkpoints every rung), together with the whole
validation suite of that epoch (its row and its last history record get it); diverged and errored
trials have none (NaN). A search's VAE trials get the importance-weighted NLL after the export, the
picked ones only (study/followups/picked_nll.py); a re-export keeps it, as it keeps Inception FIDs.

`python -m study.export results/<name>` (study/export.py) rebuilds the tables of a finished study
(e.g. after the launcher died while exporting), evaluating early-stopped trials in-process.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from ray import tune
from ray.tune import ExperimentAnalysis

from models import build_model
from models.config import TrainConfig
from search_spaces import train_config
from study import results as R
from study.data import load_splits
from study.devices import pick_device
from study.engine.plan import StudyPlan
from study.engine.trainable import stopped_trial_summary
from study.loop.run_dir import checkpoint_file
from study.loop.summary import summarize
from study.metrics.evaluator import prepare_evaluation
from study.store import StudyStore

# Every trials.parquet has these (NaN where a family or trial has no value), then the hp_* and
# params_* columns of its configurations and whatever else the trials' summaries carry.
TRIAL_COLUMNS = (
    R.STUDY, R.TRIAL_ID, R.FAMILY, R.ARCH, R.SEED, R.SEED_CONFIG, R.STOP_REASON, R.EPOCHS_RUN,
    R.PARAMS_TOTAL, R.TRAIN_SECONDS, R.TRIAL_SECONDS, R.IMAGES_PER_S, R.BEST_VAL_FID, R.BEST_EPOCH,
    R.FINAL_VAL_FID,
    *[m for m in R.VALIDATION_METRICS if m != R.VAL_FID], *R.TEST_METRICS, R.IW_K, R.IW_IMAGES,
    R.INCEPTION_SAMPLES, R.INCEPTION_SHA256, R.FEATURENET_SHA256, R.NODE, R.RAY_NODE_ID, R.DEVICE,
    R.GPU_NAME, R.GPUS_PER_TRIAL, R.TRIALS_PER_GPU,
    R.TORCH_VERSION, R.TRIAL_DIR, R.CHECKPOINT, R.ERROR_MESSAGE, R.CONFIG_JSON,
)
ERROR_CHARS = 500

# [last checkpoint of each early-stopped trial] -> their summary rows, test metrics included
EarlyStopEvaluator = Callable[[list[Any]], list[dict[str, Any]]]


@dataclass
class ExportedStudy:
    trials: pd.DataFrame
    history: pd.DataFrame
    best_trial_id: str | None


def _json_or_none(store: StudyStore, path: str):
    return json.loads(store.read_bytes(path)) if store.exists(path) else None


def _trial_id(trial) -> str:
    return str(trial.trial_id)


def _creation_order(trial) -> str:
    return posixpath.basename(str(trial.path))  # trial_0001_<id>, see study.launch.trial_dirname


def _error_message(trial) -> str:
    error = trial.get_error() if hasattr(trial, "get_error") else None
    text = str(error) if error else "the trial ended in error (see error.txt in its directory)"
    return " ".join(text.split())[-ERROR_CHARS:]  # the end of a traceback says what failed


def _last_checkpoint_file(store: StudyStore, trial) -> str | None:
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return None
    files = store.files(checkpoint.path, ".pt")
    return files[-1] if files else None


def _fallback_summary(config: TrainConfig, history: list[dict], stop_reason: str,
                      last: dict) -> dict[str, Any]:
    """A summary row for a trial that wrote none (errored, or early-stopped without evaluation)."""
    with torch.device("meta"):  # sizes only: a model too big for memory (an oom trial) is not built
        sized = build_model(config.model)
    row = summarize(config, sized, history, stop_reason, "cpu")
    for key in R.PLACEMENT:
        row[key] = last.get(key, row.get(key))
    return row


def trial_rows(
    store: StudyStore,
    study_name: str,
    trials: Sequence,
    seed_configs: Sequence[TrainConfig] = (),
    early_stop_evaluator: EarlyStopEvaluator | None = None,
    errored: set[str] | None = None,
) -> tuple[list[dict], list[dict]]:
    """(trials rows, history rows) of a study's finished trials. `errored`: the directory names
    of trials that ended in error (default: the saved experiment state's statuses)."""
    trials = sorted(trials, key=_creation_order)
    if errored is None:
        errored = {_creation_order(t) for t in trials if t.status == "ERROR"}
    failed = [_creation_order(t) in errored for t in trials]
    histories = [_json_or_none(store, posixpath.join(t.path, R.METRICS_JSON)) or [] for t in trials]
    summaries = [_json_or_none(store, posixpath.join(t.path, R.SUMMARY_JSON)) for t in trials]
    # stopped by the scheduler before their last epoch: no summary of their own
    stopped = [i for i in range(len(trials)) if not failed[i] and summaries[i] is None]
    with_checkpoint = [i for i in stopped if trials[i].checkpoint is not None]
    if early_stop_evaluator is not None and with_checkpoint:
        evaluated = early_stop_evaluator([trials[i].checkpoint for i in with_checkpoint])
        for i, summary in zip(with_checkpoint, evaluated, strict=True):
            if summary.get(R.EPOCHS_RUN) == len(histories[i]):  # else the checkpoint predates the stop
                summaries[i] = summary
                # the stop epoch's validation suite, scored from its checkpoint, into its history too
                histories[i][-1].update({k: summary[k] for k in R.VALIDATION_METRICS
                                         if k != R.VAL_FID and k in summary})

    seed_jsons = {c.to_json() for c in seed_configs}
    rows, history_rows = [], []
    for trial, history, summary, error in zip(trials, histories, summaries, failed, strict=True):
        config = train_config(trial.config)
        last = dict(trial.last_result or {})
        if error:
            summary = _fallback_summary(config, history, R.STOP_ERROR, last)
            summary[R.ERROR_MESSAGE] = _error_message(trial)
        elif summary is None:
            summary = _fallback_summary(config, history, R.STOP_EARLY, last)
        elif summary.get(R.STOP_REASON) == R.STOP_EARLY:
            for key in R.PLACEMENT:  # where it trained, not where it was evaluated
                summary[key] = last.get(key, summary.get(key))
        checkpoint_file = _last_checkpoint_file(store, trial)
        row = {R.STUDY: study_name, R.TRIAL_ID: _trial_id(trial), **summary}
        row[R.SEED_CONFIG] = config.to_json() in seed_jsons
        row[R.TRIAL_DIR] = store.relative(trial.path)
        row[R.CHECKPOINT] = store.relative(checkpoint_file) if checkpoint_file else None
        rows.append(row)
        ids = {R.STUDY: study_name, R.TRIAL_ID: row[R.TRIAL_ID], R.FAMILY: row[R.FAMILY], R.ARCH: row[R.ARCH]}
        history_rows += [{**ids, **record} for record in history]
    return rows, history_rows


def trials_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in TRIAL_COLUMNS:
        if column not in frame:
            frame[column] = math.nan
    first = list(TRIAL_COLUMNS)
    rest = sorted(c for c in frame.columns if c not in first)
    return frame[first + rest]


def has_experiment_state(store: StudyStore) -> bool:
    """Whether `store` holds a Ray Tune experiment that can be restored (and so exported)."""
    return tune.Tuner.can_restore(store.uri)


def experiment_trials(store: StudyStore) -> list:
    """The trials of the Ray Tune experiment in `store`, as its saved experiment state has them."""
    return ExperimentAnalysis(store.root, storage_filesystem=store.fs).trials


def export_study(
    study: StudyStore | str,
    study_name: str,
    seed_configs: Sequence[TrainConfig] = (),
    early_stop_evaluator: EarlyStopEvaluator | None = None,
    errored: set[str] | None = None,
) -> ExportedStudy:
    """Read a finished search's experiment and write its tables (write_study_tables)."""
    store = StudyStore.of(study)
    rows, history_rows = trial_rows(store, study_name, experiment_trials(store), seed_configs,
                                    early_stop_evaluator, errored)
    return write_study_tables(store, rows, history_rows)


def write_study_tables(store: StudyStore, rows: list[dict], history_rows: list[dict]) -> ExportedStudy:
    """Write a search's trials.parquet, history.parquet and best_samples.png into the study directory."""
    trials = _keep_post_search(store, trials_frame(rows))
    history = pd.DataFrame(history_rows)
    store.write_table(trials, R.TRIALS_FILE)
    store.write_table(history, R.HISTORY_FILE)
    best = R.best_trial(trials)
    if best is not None:
        grids = store.files(store.path(best[R.TRIAL_DIR], R.SAMPLES_DIR), ".png")
        if grids:
            store.write_bytes(store.best_samples, store.read_bytes(grids[-1]))
    return ExportedStudy(trials, history, None if best is None else best[R.TRIAL_ID])


INCEPTION_COLUMNS = (R.TEST_INCEPTION_FID, R.INCEPTION_SAMPLES, R.INCEPTION_SHA256)
# the picked VAE trials' likelihood, computed after the search (study/followups/picked_nll.py)
NLL_COLUMNS = (R.TEST_BINARIZED_NLL, R.IW_K, R.IW_IMAGES, R.LIKELIHOOD_SECONDS)


def _keep_post_search(store: StudyStore, trials: pd.DataFrame) -> pd.DataFrame:
    """A re-export keeps what the steps after the search wrote into trials.parquet (they come from
    no trial artifact): the Inception FIDs of `--inception final` and the picked trials' likelihood
    (a table written before 2026-12-05 holds its seconds as R.LEGACY_NLL_SECONDS: kept under the new
    name; TRIAL_SECONDS comes from the artifacts, the search's seconds only)."""
    if not store.has(R.TRIALS_FILE):
        return trials
    old = store.read_table(R.TRIALS_FILE).set_index(R.TRIAL_ID)
    if R.LEGACY_NLL_SECONDS in old and R.LIKELIHOOD_SECONDS not in old:
        old = old.rename(columns={R.LEGACY_NLL_SECONDS: R.LIKELIHOOD_SECONDS})
    for marker, columns in ((R.TEST_INCEPTION_FID, INCEPTION_COLUMNS), (R.LIKELIHOOD_SECONDS, NLL_COLUMNS)):
        if marker not in old or old[marker].isna().all():
            continue
        for column in columns:
            if column in old:
                values = trials[R.TRIAL_ID].map(old[column])
                trials[column] = values.where(values.notna(), trials.get(column, math.nan))
    return trials


SUMMARY_COLUMNS = (R.TRIAL_ID, R.ARCH, R.SEED_CONFIG, R.STOP_REASON, R.EPOCHS_RUN, R.PARAMS_TOTAL,
                   R.TRAIN_SECONDS, R.BEST_VAL_FID, R.FINAL_VAL_FID, R.TEST_FID, R.TEST_SAMPLE_IS)


def summary_table(trials: pd.DataFrame) -> str:
    """The console summary: one line per trial, the selected one (R.best_trial) first."""
    table = trials[list(SUMMARY_COLUMNS)].sort_values(R.SELECTION_METRIC, na_position="last")
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def in_process_evaluator(plan: StudyPlan, data_dir: str) -> EarlyStopEvaluator | None:
    """Test-evaluate early-stopped trials here, one after another (no Ray needed)."""
    if plan.eval_samples == 0:
        return None
    data = load_splits(data_dir, train_subset=plan.train_subset, download=False)
    assets = prepare_evaluation(data, iw_images=plan.iw_images)
    device = pick_device()

    def evaluate(checkpoint) -> dict[str, Any]:
        torch.set_num_threads(1)  # one thread per evaluation, as this export has always used
        with checkpoint.as_directory() as directory:  # the likelihood: the picked trials', later
            return stopped_trial_summary(checkpoint_file(directory), data, assets, device, nll=False)

    return lambda checkpoints: [evaluate(c) for c in checkpoints]

