"""The VAE's importance-weighted NLL after the search, for the trials a report picks only.

The NLL (k = 500 decoder passes per binarized test image, study/metrics/likelihood.py) costs seconds
per model, more than a quick trial's training; a search therefore leaves it out of every trial
(study/engine/study_run.py: TrialSetup.test_nll False) and this step computes it for the trials a
report can describe (study/quality_gate.py described_trials: the best, the seed configurations, the
usable trials on a front) and those the replicates re-train (--replicate-top), from each trial's
last checkpoint (a stopped trial's: the epoch it stopped at), in one scoring worker per trial slot
(study/engine/scoring.py). The numbers are the ones the trial would have computed (same model,
seeds and images); their seconds go in R.LIKELIHOOD_SECONDS, not in the trial's R.TRIAL_SECONDS (a step
after the search, like the Inception FID: study/results.py).
Replicates compute it inside their trials: every replicate is described.
"""

from __future__ import annotations

import pandas as pd

from models.config import FAMILY_VAE
from study import results as R
from study.data import load_splits
from study.engine.cluster import trial_slots
from study.engine.plan import StudyPlan
from study.engine.scoring import ScoringWorker, scoring_pool
from study.engine.trainable import TrialSetup
from study.engine.trial_tables import NLL_COLUMNS
from study.followups.replicate_plan import select_sources
from study.metrics.evaluator import prepare_evaluation
from study.quality_gate import described_trials
from study.store import StudyStore


def picked_trials(trials: pd.DataFrame, replicate_top: int | None = None) -> list[str]:
    """The trial ids whose likelihood a report uses: described_trials, plus the replicates' sources."""
    ids = [str(trials.loc[label, R.TRIAL_ID]) for label in described_trials(trials)]
    if replicate_top:
        ids += [source for source, _, _ in select_sources(trials, replicate_top)]
    usable = set(trials.loc[trials[R.CHECKPOINT].map(lambda c: isinstance(c, str)), R.TRIAL_ID].astype(str))
    diverged = set(trials.loc[trials[R.STOP_REASON].isin([R.STOP_DIVERGED, R.STOP_ERROR, R.STOP_OOM]),
                              R.TRIAL_ID].astype(str))
    return [t for t in dict.fromkeys(ids) if t in usable and t not in diverged]


def missing(trials: pd.DataFrame, ids: list[str]) -> list[str]:
    """The trials of `ids` without a likelihood yet."""
    if R.TEST_BINARIZED_NLL not in trials:
        return ids
    has = trials.set_index(trials[R.TRIAL_ID].astype(str))[R.TEST_BINARIZED_NLL]
    return [t for t in ids if not pd.notna(has.get(t))]


def run_likelihood(plan: StudyPlan, setup: TrialSetup, gpus: float, replicate_top: int | None = None,
                   study: StudyStore | None = None) -> pd.DataFrame | None:
    """Compute the likelihood of the picked VAE trials that lack it on the initialised Ray and write it
    into the study's trials.parquet (`study`, default the plan's directory); the table as written (None:
    nothing to do, a GAN study or no metrics). python -m study.replicate calls it too, for sources a
    new --top picks."""
    if plan.family != FAMILY_VAE or setup.assets is None:
        return None
    store = study or plan.store
    trials = store.read_table(R.TRIALS_FILE)
    ids = missing(trials, picked_trials(trials, replicate_top))
    if not ids:
        return None
    workers = min(len(ids), trial_slots(plan.cpus_per_trial, gpus, plan.expect_gpus))
    print(f"likelihood (importance-weighted NLL) of the {len(ids)} picked VAE trial(s) of {len(trials)}, "
          f"in {workers} worker(s)", flush=True)
    rows = trials.set_index(trials[R.TRIAL_ID].astype(str))
    with scoring_pool(setup, workers, plan.cpus_per_trial, gpus) as score:
        scored = score("likelihood", [(store, rows.loc[t, R.CHECKPOINT]) for t in ids])
    return write_likelihood(store, trials, dict(zip(ids, scored, strict=True)))


def score_in_process(plan: StudyPlan, store: StudyStore, data_dir: str | None = None) -> pd.DataFrame | None:
    """`run_likelihood` without Ray, one trial after another in this process, for the picked trials
    that lack it (python -m study.export after a launcher that died before this step)."""
    if plan.family != FAMILY_VAE or plan.eval_samples == 0:
        return None
    trials = store.read_table(R.TRIALS_FILE)
    rows = trials.set_index(trials[R.TRIAL_ID].astype(str))
    ids = missing(trials, picked_trials(trials))
    if not ids:
        return None
    print(f"likelihood (importance-weighted NLL) of {len(ids)} picked VAE trial(s), in this process",
          flush=True)
    data = load_splits(data_dir or plan.data_dir, train_subset=plan.train_subset, download=False)
    worker = ScoringWorker(TrialSetup(data=data, assets=prepare_evaluation(data, iw_images=plan.iw_images)))
    return write_likelihood(store, trials, {t: worker.likelihood(store, rows.loc[t, R.CHECKPOINT])
                                            for t in ids})


def write_likelihood(store: StudyStore, trials: pd.DataFrame,
                     scored: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Put the likelihood columns of `scored` ({trial id: row}), their seconds included, into
    trials.parquet; the table as written."""
    for column in NLL_COLUMNS:
        if column not in trials:
            trials[column] = float("nan")
    position = {str(t): i for i, t in enumerate(trials[R.TRIAL_ID])}
    for trial_id, row in scored.items():
        index = trials.index[position[trial_id]]
        for column in NLL_COLUMNS:
            if column in row:
                trials.at[index, column] = row[column]
    store.write_table(trials, R.TRIALS_FILE)
    return trials
