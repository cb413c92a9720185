"""Reproductions: run a seed study's own experiment as planned (study/followups/reproduce_plan.py)
through Ray Tune and write its tables (the library half of `python -m study.reproduce`).
"""

from __future__ import annotations

import json

import pandas as pd
from ray import tune
from ray.tune import ExperimentAnalysis

from study import results as R
from study.data import load_splits
from study.devices import pick_device
from study.engine.cluster import errored_trial_dirs, resolve_gpus, trial_slots
from study.engine.fixed import run_fixed_configs
from study.engine.trainable import TrialSetup, with_setup
from study.engine.trial_tables import trial_rows, trials_frame
from study.followups.reproduce_plan import EPOCHS_COLUMN, RUN_DIR_PREFIX, ReproducePlan
from study.metrics.evaluator import prepare_evaluation
from study.store import StudyStore


def run_reproduction(plan: ReproducePlan) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Run (or continue) the reproduction on an initialised Ray; writes and returns (trials,
    history), or None if it was interrupted."""
    store = StudyStore(plan.study_dir)
    data = load_splits(plan.data_dir, train_subset=plan.train_subset, download=False)
    assets = prepare_evaluation(data, pick_device(), iw_images=plan.iw_images,
                                prdc_images=plan.eval_samples)  # the PRDC radii once, not per trial
    gpus = resolve_gpus(plan.cpus_per_trial, plan.gpus_per_trial)
    printed = frozenset(plan.epochs)
    setup = TrialSetup(data=data, assets=assets, threads=max(1, int(plan.cpus_per_trial)),
                       gpus_per_trial=gpus, validate_epochs=printed, test_epochs=printed)
    trainable = tune.with_resources(with_setup(setup), {"cpu": plan.cpus_per_trial, "gpu": gpus})
    configs = plan.configs()
    print(f"reproducing seed study {plan.reproduces_seed_study}: {', '.join(plan.configurations)} x seeds "
          f"{list(plan.seeds)}, recorded at epochs {list(plan.epochs)} ({len(configs)} runs of "
          f"{plan.max_epochs} epochs, {plan.preset} preset) -> {plan.study_dir}", flush=True)
    store.write_bytes(store.path(R.STUDY_JSON), plan.to_json().encode())
    results, finished = run_fixed_configs(
        trainable, [c.to_dict() for c in configs], storage_path=plan.storage_path, name=plan.name,
        max_failures=plan.max_failures, keep_checkpoints=plan.keep_checkpoints, dirname_prefix=RUN_DIR_PREFIX,
        slots=trial_slots(plan.cpus_per_trial, gpus))
    if not finished:
        return None
    errored = errored_trial_dirs(results)
    trials, history = reproduction_rows(store, plan, errored)
    store.write_table(trials, R.TRIALS_FILE)
    store.write_table(history, R.HISTORY_FILE)
    return trials, history


def reproduction_rows(store: StudyStore, plan: ReproducePlan,
                      errored: set[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, history): one trials row per run x printed epoch count, each with the history up to it."""
    analysis = ExperimentAnalysis(store.root, storage_filesystem=store.fs)
    runs, history = trial_rows(store, plan.name, analysis.trials, errored=errored)
    rows, history_rows = [], []
    for run in runs:
        for epochs in plan.epochs:
            snapshot = store.path(run[R.TRIAL_DIR], R.epoch_summary_name(epochs))
            if epochs < plan.max_epochs and store.exists(snapshot):
                row = {R.STUDY: plan.name, **json.loads(store.read_bytes(snapshot))}
                row[R.TRIAL_DIR] = run[R.TRIAL_DIR]
                row[R.CHECKPOINT] = None  # only the run's latest checkpoints are kept
            else:  # the last count, or a run that diverged or failed before this count: its own end
                row = dict(run)
                row[EPOCHS_COLUMN] = epochs
            row[R.TRIAL_ID] = f"{run[R.TRIAL_ID]}-e{epochs}"
            row[R.SEED_CONFIG] = True
            rows.append(row)
            history_rows += [{**h, R.TRIAL_ID: row[R.TRIAL_ID]} for h in history
                             if h[R.TRIAL_ID] == run[R.TRIAL_ID] and h[R.EPOCH] <= epochs]
    return finalise_reproduction(trials_frame(rows)), pd.DataFrame(history_rows)


def finalise_reproduction(trials: pd.DataFrame) -> pd.DataFrame:
    """The one place the reproduction's rows are completed before trials.parquet is written
    (later metrics, e.g. the Inception FID the first seed study printed, hook in here)."""
    return trials.sort_values([R.FAMILY, EPOCHS_COLUMN, R.SEED], kind="stable").reset_index(drop=True)


def summary_table(trials: pd.DataFrame) -> str:
    """Per configuration and epoch count: seeds, mean final validation FID, test FID, test BCE loss."""
    columns = [c for c in (R.FINAL_VAL_FID, R.TEST_FID, R.TEST_BCE_NELBO) if c in trials]
    grouped = trials.groupby([R.FAMILY, R.ARCH, EPOCHS_COLUMN], sort=True)
    table = grouped[columns].mean()
    table.insert(0, "seeds", grouped.size())
    return table.to_string(float_format=lambda v: f"{v:.4g}")
