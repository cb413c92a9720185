"""The search: Optuna's sampler, Ray Tune's OptunaSearch over a family's define-by-run space (the
seed configurations enqueued first), and the trial scheduler that stops trials on validation FID."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from ray.tune.schedulers import FIFOScheduler, HyperBandScheduler

from search_spaces import define_by_run, seed_points, tpe_startup_trials
from study import results as R
from study.optuna_storage import open_storage
from study.tune.plan import PARETO_METRICS, StudyPlan
from study.tune.recovery import ResumableASHA, ResumableOptunaSearch


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
        storage=open_storage(plan.study_dir),  # <study dir>/optuna.db (study/optuna_storage.py)
        study_name=plan.name,
    )


def make_scheduler(plan: StudyPlan):
    common: dict[str, Any] = dict(time_attr=R.EPOCH, metric=R.VAL_FID, mode="min", max_t=plan.max_epochs)
    if plan.scheduler == "asha":  # ASHA whose rungs a --resume rebuilds
        return ResumableASHA(grace_period=plan.grace_period, reduction_factor=plan.reduction_factor, **common)
    if plan.scheduler == "hyperband":
        return HyperBandScheduler(reduction_factor=plan.reduction_factor, **common)
    return FIFOScheduler()
