"""Replicates: run the planned re-trainings (study/followups/replicate_plan.py) through Ray Tune to their
last epoch, and write replicates.parquet (the library half of `python -m study.replicate`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from ray import tune
from ray.tune import ExperimentAnalysis

from study import results as R
from study.data import load_splits
from study.devices import pick_device
from study.engine import console
from study.engine.cluster import errored_trial_dirs, resolve_gpus, trial_slots
from study.engine.fixed import run_fixed_configs
from study.engine.trainable import TrialSetup, with_setup
from study.engine.trial_tables import TRIAL_COLUMNS, trial_rows, trials_frame
from study.followups.picked_nll import run_likelihood
from study.followups.replicate_plan import (
    REPLICATE_DIR_PREFIX,
    ReplicatePlan,
    ReplicateRun,
    longest_first,
    plan_runs,
    read_study,
    replicate_seeds,
    replicates_spec,
)
from study.metrics.evaluator import prepare_evaluation
from study.store import StudyStore


def run_replicates(plan: ReplicatePlan, *, data=None, assets=None) -> pd.DataFrame | None:
    """Run (or continue) the replicates of `plan` (followups/replicate_plan.py prepare) on an initialised
    Ray and write replicates.parquet; returns its rows, or None if the run was interrupted.
    `data`/`assets`: the study's splits and evaluation assets when the caller has them (study.launch),
    else loaded here."""
    store, search, trials = read_study(plan.source_dir)
    runs = plan_runs(search, trials, plan.top, plan.seeds, plan.epochs)
    if data is None:
        data = load_splits(plan.data_dir, train_subset=plan.train_subset, download=False)
    if assets is None and plan.eval_samples > 0:
        assets = prepare_evaluation(data, pick_device(), iw_images=plan.iw_images,
                                    prdc_images=plan.eval_samples)  # the PRDC radii once, not per trial
    gpus = resolve_gpus(plan.cpus_per_trial, plan.gpus_per_trial, plan.expect_gpus)
    # every replicate is described (replicates.parquet): each computes its likelihood itself
    setup = TrialSetup(data=data, assets=assets, threads=max(1, int(plan.cpus_per_trial)),
                       gpus_per_trial=gpus, suite_every=plan.suite_every)
    trainable = tune.with_resources(with_setup(setup), {"cpu": plan.cpus_per_trial, "gpu": gpus})
    # the likelihood of the configurations replicated here, when their search did not compute it (a --top
    # other than the launcher's, or a search whose launcher stopped before its likelihood step)
    run_likelihood(search, setup, gpus, plan.top, plan.source_dir)
    n_configs = len({r.source_trial_id for r in runs})
    print(f"replicating {n_configs} configurations of study {plan.study} x {plan.seeds} seeds "
          f"({len(runs)} runs, seeds {replicate_seeds(plan.study_seed, plan.seeds)}, "
          f"{runs[0].config.epochs if plan.epochs else 'their'} epochs, no early stopping) -> "
          f"{store.uri}/{R.REPLICATES_DIR}", flush=True)
    store.write_bytes(store.path(R.REPLICATES_DIR, R.REPLICATES_SPEC),
                      json.dumps(replicates_spec(plan.top, plan.seeds, plan.epochs, runs), indent=1).encode())
    slots = trial_slots(plan.cpus_per_trial, gpus)
    console.expect(console.StudyShape(float(runs[0].config.epochs), slots))  # every run to its last epoch
    results, finished = run_fixed_configs(
        # the directory as given now (study.json's storage path is where the study was first written)
        trainable, [r.config.to_dict() for r in longest_first(runs, trials)],
        storage_path=plan.storage_path, name=plan.name,
        max_failures=plan.max_failures, keep_checkpoints=plan.keep_checkpoints,
        dirname_prefix=REPLICATE_DIR_PREFIX, slots=slots)
    if not finished:
        return None
    errored = errored_trial_dirs(results)
    rows = replicate_rows(store, plan.study, runs, errored)
    store.write_table(rows, R.REPLICATES_FILE)
    return rows


def replicate_rows(store: StudyStore, study: str, runs: list[ReplicateRun],
                   errored: set[str] | None = None) -> pd.DataFrame:
    """The rows of replicates.parquet (study: the search's name) from the finished Ray experiment
    STUDY_DIR/replicates/."""
    analysis = ExperimentAnalysis(store.path(R.REPLICATES_DIR), storage_filesystem=store.fs)
    rows, _ = trial_rows(store, study, analysis.trials, errored=errored)
    by_config = {r.config.to_json(): r for r in runs}
    for row in rows:
        run = by_config[row[R.CONFIG_JSON]]
        row[R.SOURCE_TRIAL_ID], row[R.REPLICATE_SEED] = run.source_trial_id, run.seed
        row[R.SEED_CONFIG] = run.seed_config
    return finalise_replicates(rows, runs)


def finalise_replicates(rows: list[dict[str, Any]], runs: list[ReplicateRun]) -> pd.DataFrame:
    """The one place replicate rows are completed before replicates.parquet is written: the
    trials.parquet columns, source and seed after the trial id, one row per planned run (checked),
    ordered by the selection order of the configurations, then seed. Metrics added to replicates
    later (e.g. study.inception's Inception FID of chosen runs) belong here."""
    frame = trials_frame(rows)
    keys = list(zip(frame[R.SOURCE_TRIAL_ID], frame[R.REPLICATE_SEED], strict=True))
    planned = [(r.source_trial_id, r.seed) for r in runs]
    if len(set(keys)) != len(keys) or set(keys) != set(planned):
        raise RuntimeError(f"the replicate experiment holds runs {sorted(keys)}, not the planned {planned}")
    frame = frame.iloc[sorted(range(len(frame)), key=lambda i: planned.index(keys[i]))]
    first = [R.STUDY, R.TRIAL_ID, R.SOURCE_TRIAL_ID, R.REPLICATE_SEED]
    order = first + [c for c in TRIAL_COLUMNS if c not in first]
    order += [c for c in frame.columns if c not in order]
    return frame[order].reset_index(drop=True)


def summary_table(rows: pd.DataFrame) -> str:
    """Per source configuration: seeds, and mean +- sd of the final validation FID and test FID."""
    def fmt(values: pd.Series) -> str:
        values = pd.to_numeric(values, errors="coerce").dropna()
        if values.empty:
            return "-"
        sd = values.std(ddof=1) if len(values) > 1 else math.nan
        return f"{values.mean():.4g}" + (f" ± {sd:.2g}" if math.isfinite(sd) else "")

    lines = []
    for source, group in rows.groupby(R.SOURCE_TRIAL_ID, sort=False):
        lines.append({"source_trial": source, R.ARCH: group[R.ARCH].iloc[0],
                      R.SEED_CONFIG: bool(group[R.SEED_CONFIG].iloc[0]), "seeds": len(group),
                      f"{R.FINAL_VAL_FID} (mean ± sd)": fmt(group[R.FINAL_VAL_FID]),
                      f"{R.TEST_FID} (mean ± sd)": fmt(group[R.TEST_FID]),
                      "stop reasons": ", ".join(sorted(set(group[R.STOP_REASON])))})
    return pd.DataFrame(lines).to_string(index=False)
