"""Reproductions: run a seed study's own experiment as planned (study/followups/reproduce_plan.py)
through the one runner (study/engine/runner.py) and write its tables (the library half of
`python -m study.reproduce`).
"""

from __future__ import annotations

import json

import pandas as pd

from study import results as R
from study.engine.runner import FixedTrials, Rows, Run, run_trials
from study.engine.trial_tables import trials_frame
from study.followups.reproduce_plan import EPOCHS_COLUMN, RUN_DIR_PREFIX, ReproducePlan
from study.store import StudyStore


def run_reproduction(plan: ReproducePlan) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Run (or continue) the reproduction on an initialised Ray through the one runner
    (study/engine/runner.py); writes and returns (trials, history), or None if it was interrupted."""
    configs = plan.configs()
    printed = frozenset(plan.epochs)

    def before(run: Run, restoring: bool) -> None:
        print(f"reproducing seed study {plan.reproduces_seed_study}: {', '.join(plan.configurations)} x "
              f"seeds {list(plan.seeds)}, recorded at epochs {list(plan.epochs)} ({len(configs)} runs of "
              f"{plan.max_epochs} epochs, {plan.preset} preset) -> {plan.store}", flush=True)
        run.store.write_text(R.STUDY_JSON, plan.to_json())

    def export(run: Run, rows: Rows) -> tuple[pd.DataFrame, pd.DataFrame]:
        trials, history = reproduction_rows(run.store, plan, rows)
        run.store.write_table(trials, R.TRIALS_FILE)
        run.store.write_table(history, R.HISTORY_FILE)
        return trials, history

    return run_trials(plan, FixedTrials([c.to_dict() for c in configs], RUN_DIR_PREFIX), export,
                      setup_options=dict(validate_epochs=printed, test_epochs=printed), before=before)


def reproduction_rows(store: StudyStore, plan: ReproducePlan,
                      runs: Rows) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, history): one trials row per run x printed epoch count, each with the history up to it."""
    rows, history_rows = [], []
    for run in runs.trials:
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
            history_rows += [{**h, R.TRIAL_ID: row[R.TRIAL_ID]} for h in runs.history
                             if h[R.TRIAL_ID] == run[R.TRIAL_ID] and h[R.EPOCH] <= epochs]
    return finalise_reproduction(trials_frame(rows)), pd.DataFrame(history_rows)


def finalise_reproduction(trials: pd.DataFrame) -> pd.DataFrame:
    """The one place the reproduction's rows are completed before trials.parquet is written
    (later metrics, e.g. the Inception FID the first seed study printed, hook in here)."""
    return trials.sort_values([R.FAMILY, EPOCHS_COLUMN, R.SEED], kind="stable").reset_index(drop=True)
