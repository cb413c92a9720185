"""The search lab's simulator (issue 28, item 4): the product's own search engine against a surrogate.

One simulated study runs what the launcher runs, minus Ray and training:
  - the family's define-by-run space (`search_spaces.define_by_run`, the seed configurations
    enqueued first: `study.engine.search.study_seed_points`);
  - the launcher's Optuna sampler (`study.engine.search.make_sampler`: TPE's start-up rule,
    multivariate + group, constant liar when more than one trial runs), or one the lab adds
    (`tpe-default`: Optuna's defaults);
  - the launcher's ASHA (`study.engine.search.make_scheduler`, fed each result in simulated time as
    Tune feeds it, the way `asha_stop_epochs` does one trial at a time);
  - W workers on a simulated clock: a trial's epoch ends `epoch seconds` after the one before; a
    worker that frees up asks Optuna for the next trial at once, while the others are still RUNNING
    in the Optuna study (so the constant liar sees them). Each epoch's validation FID is reported to
    the Optuna trial as it arrives; a stopped trial is told PRUNED, a finished one COMPLETE with its
    final FID (study.engine.recovery's rule).
A trial's FID curve is the surrogate's noise-free curve plus seed noise drawn from the repetition's
own generator for its k-th trial, so repetitions pair across arms: the same seed configurations and
random draws get the same noise in every arm.

The product selects the trial with the lowest *observed* final-epoch validation FID
(`study.results.best_trial`); the lab scores that pick by its *noise-free* FID at that epoch.
"""

from __future__ import annotations

import dataclasses
import heapq
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from search_spaces import define_by_run
from search_spaces.encode import SpaceFeatures, encode
from study import results as R
from study.engine.plan import STOP_SIGNALS, StudyPlan
from study.engine.search import make_sampler, make_scheduler, study_seed_points

# Optuna's TPESampler() as shipped: 10 random start-up trials, univariate, no constant liar
TPE_DEFAULT = "tpe-default"
LAB_SAMPLERS = ("random", "qmc", "tpe", TPE_DEFAULT, "gp")
# scheduler arms: (grace period, reduction factor, stop signal); "none" runs every trial to the end
QUICK_ASHA = "asha"  # the quick preset's ASHA as the repetitions on file ran it: first rung 4, factor 2, raw
# Pinned, not read from PRESETS: a change of the preset must not redefine an arm whose repetitions are on
# file (benchmarks/results/lab/reps); a new preset schedule gets an arm of its own
QUICK_ASHA_RUNGS = (4, 2.0, "raw")
SCHEDULER_VARIANTS: dict[str, tuple[int, float, str] | None] = {
    "none": None,
    QUICK_ASHA: QUICK_ASHA_RUNGS,
    "asha-best": (4, 2.0, "best"),  # the quick rung, on the trial's best FID so far
    "asha-g2-r2": (2, 2.0, "raw"),  # rungs at epochs 2 and 4
    "asha-g1-r2": (1, 2.0, "raw"),  # rungs at 1, 2, 4
    "asha-g1-r3": (1, 3.0, "raw"),  # rungs at 1 and 3
}


def scheduler_arm(plan: dict) -> str | None:
    """The lab's scheduler arm a real study ran (its study.json: scheduler, grace period, reduction
    factor, stop signal), or None when the lab has no such arm."""
    if plan["scheduler"] == "none":
        return "none"
    if plan["scheduler"] != "asha":
        return None
    rungs = (int(plan["grace_period"]), float(plan["reduction_factor"]), plan.get("stop_signal", "raw"))
    return next((name for name, variant in SCHEDULER_VARIANTS.items() if variant == rungs), None)

# a curve source: (config dict, trial index k) -> (noise-free log FID [E], observed log FID [E],
# seconds per epoch)
CurveSource = Callable[[dict, int], tuple[np.ndarray, np.ndarray, float]]


@dataclass(frozen=True)
class Arm:
    """One simulated study design: sampler, scheduler, trials, workers."""

    sampler: str
    scheduler: str
    trials: int
    workers: int

    def plan(self, base: StudyPlan, rep: int) -> StudyPlan:
        """The launcher's plan of this arm's repetition `rep` (its seed), from a table's study plan."""
        sampler = "tpe" if self.sampler == TPE_DEFAULT else self.sampler
        scheduler = "none" if self.scheduler == "none" else "asha"
        changes: dict[str, Any] = dict(trials=self.trials, seed=rep, sampler=sampler, scheduler=scheduler)
        variant = SCHEDULER_VARIANTS[self.scheduler]
        if variant is not None:
            grace, factor, signal = variant
            changes |= dict(grace_period=grace, reduction_factor=float(factor), stop_signal=signal)
        return dataclasses.replace(base, **changes)


def make_lab_sampler(arm: Arm, plan: StudyPlan):
    """The launcher's sampler for the plan (make_sampler, W trials at once), or Optuna's default TPE."""
    if arm.sampler == TPE_DEFAULT:
        return optuna.samplers.TPESampler(seed=plan.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_sampler(plan, concurrency=arm.workers)


def surrogate_source(surrogate, features: SpaceFeatures, rep: int) -> CurveSource:
    """Curves from a fitted surrogate (benchmarks/lab_surrogate.py); trial k's noise from
    the generator seeded (rep, k), the same in every arm."""

    def source(config: dict, k: int) -> tuple[np.ndarray, np.ndarray, float]:
        x = encode(features, config)
        true = surrogate.curves(x)[0]
        noise = surrogate.noise(np.random.default_rng([rep, k]), 1)[0]
        return true, true + noise, float(surrogate.epoch_seconds(x)[0])

    return source


@dataclass
class SimResult:
    """One simulated study: `trials` (one row per trial) and `anytime` (after each trial ends: the
    compute spent so far and the noise-free FID of the trial the product would pick then)."""

    trials: pd.DataFrame
    anytime: pd.DataFrame
    curves: dict[int, np.ndarray]  # trial index -> its whole observed log FID curve (even if stopped)

    def pick(self) -> pd.Series:
        return self.trials.loc[self.trials["observed_final"].idxmin()]


def simulate(arm: Arm, plan: StudyPlan, source: CurveSource) -> SimResult:
    """One study of `arm` under `plan` (an Arm.plan), its curves from `source`."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    max_epochs = plan.max_epochs
    sampler = make_lab_sampler(arm, plan)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    seeds = study_seed_points(plan)
    for point in seeds:
        study.enqueue_trial(point)
    # a model-based sampler guides a trial once this many trials have finished (Optuna counts COMPLETE
    # and PRUNED ones only, so with trials in flight more asks stay random than n_startup_trials says)
    startup = getattr(sampler, "_n_startup_trials", None)
    define = define_by_run(plan.family, plan.space())
    scheduler = make_scheduler(plan) if plan.scheduler == "asha" else None
    metric = STOP_SIGNALS[plan.stop_signal]
    events: list[tuple[float, int, int, int]] = []  # (time, order, trial, epoch)
    order = 0
    running: dict[int, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    curves: dict[int, np.ndarray] = {}

    def launch(now: float) -> None:
        nonlocal order
        k = len(curves)
        guided = startup is not None and k >= len(seeds) and len(rows) >= startup
        ot = study.ask()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = define(ot)
        true, observed, seconds = source(config, k)
        curves[k] = observed
        trial = type("SimTrial", (), {"trial_id": f"t{k:04d}"})()
        if scheduler is not None:
            AsyncHyperBandScheduler.on_trial_add(scheduler, None, trial)
        running[k] = dict(ot=ot, true=true, observed=observed, seconds=seconds, start=now, trial=trial,
                          best=np.inf, config=config, guided=guided)
        heapq.heappush(events, (now + seconds, order, k, 1))
        order += 1

    now = 0.0
    for _ in range(min(arm.workers, arm.trials)):
        launch(now)
    while events:
        now, _, k, epoch = heapq.heappop(events)
        state = running[k]
        fid = float(np.exp(state["observed"][epoch - 1]))
        state["best"] = min(state["best"], fid)
        state["ot"].report(fid, epoch)
        stop = False
        result = {R.EPOCH: epoch, metric: fid if plan.stop_signal == "raw" else state["best"]}
        if scheduler is not None:
            stop = scheduler.on_trial_result(None, state["trial"], result) == TrialScheduler.STOP
        if epoch < max_epochs and not stop:
            heapq.heappush(events, (now + state["seconds"], order, k, epoch + 1))
            order += 1
            continue
        if scheduler is not None:
            scheduler.on_trial_complete(None, state["trial"], result)
        if epoch < max_epochs:
            study.tell(state["ot"], state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(state["ot"], fid)
        rows.append(dict(trial=k, start=state["start"], end=now, epochs=epoch, observed_final=fid,
                         true_final=float(np.exp(state["true"][epoch - 1])),
                         true_full=float(np.exp(state["true"][-1])), arch=state["config"]["arch"],
                         guided=state["guided"]))
        del running[k]
        if len(curves) < arm.trials:
            launch(now)
    trials = pd.DataFrame(rows)
    return SimResult(trials=trials, anytime=anytime(trials), curves=curves)


def anytime(trials: pd.DataFrame) -> pd.DataFrame:
    """After each trial ends (in end order): compute spent by then (every trial's seconds up to that
    moment, running ones included) and the noise-free FID of the product's pick among ended trials."""
    ended = trials.sort_values(["end", "trial"], kind="stable")
    start, end = trials["start"].to_numpy(), trials["end"].to_numpy()
    compute, picked = [], []
    best_observed, best_true = np.inf, np.nan
    for row in ended.itertuples():
        compute.append(float(np.clip(np.minimum(end, row.end) - start, 0, None).sum()))
        if row.observed_final < best_observed:  # ties: the earlier trial stays (results.ranked is stable)
            best_observed, best_true = row.observed_final, row.true_final
        picked.append(best_true)
    return pd.DataFrame({"compute_s": compute, "pick_true": picked})
