"""The search: Optuna's sampler, Ray Tune's OptunaSearch over a family's define-by-run space (the
seed configurations enqueued first), and the trial scheduler that stops trials on validation FID."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from ray.tune.schedulers import FIFOScheduler, HyperBandScheduler

from search_spaces import define_by_run, seed_points, tpe_startup_trials
from study import results as R
from study.engine.plan import PARETO_METRICS, STOP_SIGNALS, StudyPlan
from study.engine.recovery import ResumableASHA, ResumableOptunaSearch
from study.optuna_storage import open_storage


def study_seed_points(plan: StudyPlan) -> list[dict[str, Any]]:
    """The seed configurations' Optuna parameters the study enqueues (no more than its trials)."""
    return seed_points(plan.family, plan.space())[: plan.trials]


def make_sampler(plan: StudyPlan, concurrency: int = 1):
    """The plan's Optuna sampler for a study that runs `concurrency` trials at once."""
    # TPE's random start-up scaled to the study, counted after the enqueued seed configurations
    # (search_spaces.tpe_startup_trials; Optuna's fixed 10 leaves small studies unguided)
    startup = tpe_startup_trials(plan.trials, len(study_seed_points(plan)))
    samplers = {
        # multivariate + group: TPE that models the per-architecture (conditional) parameters jointly;
        # constant liar whenever trials run at once: the running trials count as bad, so concurrent
        # asks are not near-duplicates (Optuna < 5 has it off by default; docs/search.md)
        "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                                       n_startup_trials=startup,
                                                       constant_liar=concurrency > 1),
        "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
        "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed),
        "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
        "gp": lambda seed: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False),
    }
    with warnings.catch_warnings():  # TPE's `group` and QMC are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return samplers[plan.sampler](plan.seed)


def make_searcher(plan: StudyPlan, concurrency: int = 1):
    """OptunaSearch over the family's define-by-run space, seed configurations enqueued first
    (Ray enqueues points_to_evaluate into the Optuna study; tests check they run first), for a
    study that runs `concurrency` trials at once (Tune's max_concurrent_trials)."""
    metric: str | list[str] = R.VAL_FID
    mode: str | list[str] = "min"
    if plan.objective == "pareto":
        metric, mode = list(PARETO_METRICS), ["min"] * len(PARETO_METRICS)
    return ResumableOptunaSearch(
        space=define_by_run(plan.family, plan.space()),
        metric=metric,
        mode=mode,
        points_to_evaluate=study_seed_points(plan),
        sampler=make_sampler(plan, concurrency),
        storage=open_storage(plan.store),  # <study dir>/optuna.db (study/optuna_storage.py)
        study_name=plan.name,
    )


def make_scheduler(plan: StudyPlan):
    """The plan's trial scheduler, comparing the plan's stop signal (STOP_SIGNALS) at its rungs."""
    common: dict[str, Any] = dict(time_attr=R.EPOCH, metric=STOP_SIGNALS[plan.stop_signal], mode="min",
                                  max_t=plan.max_epochs)
    if plan.scheduler == "asha":  # ASHA whose rungs a --resume rebuilds
        return ResumableASHA(grace_period=plan.grace_period, reduction_factor=plan.reduction_factor, **common)
    if plan.scheduler == "hyperband":
        return HyperBandScheduler(reduction_factor=plan.reduction_factor, **common)
    return FIFOScheduler()


def signal_values(history: pd.DataFrame, signal: str) -> pd.Series:
    """A stop signal (STOP_SIGNALS key) per row of a history sorted by trial and epoch: `raw`, the
    epoch's validation FID; `best`, the trial's lowest so far (what the trainable reports)."""
    fid = history[R.VAL_FID].where(np.isfinite(history[R.VAL_FID]))
    if signal == "raw":
        return fid
    trials = history[R.TRIAL_ID]
    return fid.groupby(trials).cummin().groupby(trials).ffill()  # a NaN epoch keeps the best so far


@dataclasses.dataclass(frozen=True)
class ReplayedTrial:
    """A trial as ASHA sees it in a replay: its id is all the scheduler reads of a Trial."""

    trial_id: str


def asha_stop_epochs(plan: StudyPlan, history: pd.DataFrame, trial_order: Sequence[str]) -> dict[str, int]:
    """trial -> the epoch (below max_epochs) at which the plan's ASHA stops it, for `history`'s
    trials run one at a time in `trial_order`: the scheduler `make_scheduler` builds, fed each
    trial's recorded per-epoch stop signal. For a study run one trial at a time on a CPU (bit-for-bit
    training) these are that study's own decisions, and a no-stopping study's replay is the study
    its ASHA twin would have run (benchmarks/bench_search.py), without training it again."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    scheduler = make_scheduler(dataclasses.replace(plan, scheduler="asha"))
    metric = STOP_SIGNALS[plan.stop_signal]
    frame = history.drop_duplicates([R.TRIAL_ID, R.EPOCH], keep="last").sort_values([R.TRIAL_ID, R.EPOCH])
    frame = frame.assign(_signal=signal_values(frame, plan.stop_signal))
    stopped: dict[str, int] = {}
    for trial_id in dict.fromkeys(trial_order):
        trial: Any = ReplayedTrial(trial_id)
        controller: Any = None
        AsyncHyperBandScheduler.on_trial_add(scheduler, controller, trial)  # (nothing saved to rebuild)
        rows = frame[frame[R.TRIAL_ID] == trial_id]
        result: dict[str, float] = {}
        for epoch, value in zip(rows[R.EPOCH], rows["_signal"], strict=True):
            result = {R.EPOCH: int(epoch), metric: float(value)}
            if scheduler.on_trial_result(controller, trial, result) == TrialScheduler.STOP:
                if epoch < plan.max_epochs:  # (at max_epochs ASHA "stops" a trial that is done)
                    stopped[trial_id] = int(epoch)
                break
        if result:
            scheduler.on_trial_complete(controller, trial, result)
    return stopped


def replay_asha(plan: StudyPlan, history: pd.DataFrame, trial_order: Sequence[str]) -> pd.DataFrame:
    """`history` cut as the plan's ASHA would have cut it (asha_stop_epochs): each stopped trial
    keeps its epochs up to the one it was stopped at."""
    frame = history.drop_duplicates([R.TRIAL_ID, R.EPOCH], keep="last")
    stops = asha_stop_epochs(plan, frame, trial_order)
    limit = frame[R.TRIAL_ID].map(stops).fillna(np.inf)
    return frame[frame[R.EPOCH] <= limit].reset_index(drop=True)
