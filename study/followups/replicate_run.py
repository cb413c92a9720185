"""Replicates: run the planned re-trainings (study/followups/replicate_plan.py) through the one runner
(study/engine/runner.py) to their last epoch, and write replicates.parquet (the library half of
`python -m study.replicate`).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from study import results as R
from study.engine import console
from study.engine.runner import FixedTrials, Rows, Run, run_trials
from study.engine.trial_tables import TRIAL_COLUMNS, trials_frame
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


def run_replicates(plan: ReplicatePlan, *, data=None, assets=None) -> pd.DataFrame | None:
    """Run (or continue) the replicates of `plan` (followups/replicate_plan.py prepare) on an initialised
    Ray through the one runner (study/engine/runner.py) and write replicates.parquet; returns its rows,
    or None if the run was interrupted. `data`/`assets`: the study's splits and evaluation assets when
    the caller has them (study.launch), else loaded by the runner."""
    source = plan.source
    _, search, trials = read_study(source)
    runs = plan_runs(search, trials, plan.top, plan.seeds, plan.epochs)

    def before(run: Run, restoring: bool) -> None:
        # the likelihood of the configurations replicated here, when their search did not compute it (a
        # --top other than the launcher's, or a search whose launcher stopped before its likelihood step)
        run_likelihood(search, run.setup, run.gpus, plan.top, source)
        n_configs = len({r.source_trial_id for r in runs})
        print(f"replicating {n_configs} configurations of study {plan.study} x {plan.seeds} seeds "
              f"({len(runs)} runs, seeds {replicate_seeds(plan.study_seed, plan.seeds)}, "
              f"{runs[0].config.epochs if plan.epochs else 'their'} epochs, no early stopping) -> "
              f"{source}/{R.REPLICATES_DIR}", flush=True)
        source.write_bytes(source.replicates_spec, json.dumps(
            replicates_spec(plan.top, plan.seeds, plan.epochs, runs), indent=1).encode())
        # every run to its last epoch
        console.expect(console.StudyShape(float(runs[0].config.epochs), run.slots))

    def export(run: Run, rows: Rows) -> pd.DataFrame:
        frame = replicate_rows(rows.trials, runs)
        source.write_table(frame, R.REPLICATES_FILE)
        return frame

    # every replicate is described (replicates.parquet): each computes its likelihood itself
    trials_to_run = FixedTrials([r.config.to_dict() for r in longest_first(runs, trials)],
                                REPLICATE_DIR_PREFIX)
    return run_trials(plan, trials_to_run, export, expect_gpus=plan.expect_gpus,
                      setup_options=dict(suite_every=plan.suite_every), data=data, assets=assets,
                      before=before, study=plan.study, tables=source)


def replicate_rows(rows: list[dict[str, Any]], runs: list[ReplicateRun]) -> pd.DataFrame:
    """The rows of replicates.parquet from the replicate experiment's trial rows (study: the search's
    name, trial directories relative to the study directory): each with its source and seed."""
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
