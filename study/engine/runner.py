"""The one experiment runner: a set of trials through Ray Tune on an initialised Ray, from the data to
the tables.

`run_trials` runs either the trials an Optuna searcher suggests under a scheduler (`SearchTrials`: the
search, study/engine/study_run.py) or a fixed list of configurations, each once to its last epoch
(`FixedTrials`: the replicates, followups/replicate_run.py; the reproduction, followups/reproduce_run.py;
the search lab's replicates, benchmarks/lab_replicates.py). Every run goes the same way:

    data -> evaluation assets -> resources (GPUs per trial, trials at once) -> the trainable with the
    shared TrialSetup -> a new Tuner, or the interrupted one restored -> fit -> the errored trials ->
    the experiment's trials as rows (trial_tables.trial_rows) -> the caller's tables

and a caller says only what differs: its setup options, what it prints and writes before the trials
(`before`), and how its rows become its tables (`export`). An interrupted run (Ctrl-C, or trials left
unfinished) returns None; the same call continues it (Tune's experiment state).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from models.config import TrainConfig
from study import optuna_storage
from study.data import MNISTSplits, load_splits
from study.devices import pick_device
from study.engine.cluster import errored_trial_dirs, fit, resolve_gpus, run_config, trial_dirname, trial_slots
from study.engine.fixed import fixed_tune_config
from study.engine.spec import RunSpec
from study.engine.trainable import TrialSetup, with_setup
from study.engine.trial_tables import EarlyStopEvaluator, experiment_trials, trial_rows
from study.metrics.evaluator import EvaluationAssets, prepare_evaluation
from study.store import StudyStore

T = TypeVar("T")


@dataclass(frozen=True)
class SearchTrials:
    """`trials` trials that an Optuna searcher suggests and a scheduler may stop (study.launch); the
    searcher keeps its Optuna study in the study's optuna.db (study/optuna_storage.py)."""

    searcher: Callable[[int], Searcher]  # trials at once -> the searcher (it is told the slots)
    scheduler: TrialScheduler
    trials: int

    @property
    def count(self) -> int:
        return self.trials

    def tune_config(self, slots: int) -> tune.TuneConfig:
        return tune.TuneConfig(search_alg=self.searcher(slots), scheduler=self.scheduler,
                               num_samples=self.trials, trial_dirname_creator=trial_dirname,
                               # one worker process per concurrent slot, not per trial: no process
                               # start, torch import and actor set-up per trial; with a searcher Tune
                               # keeps 1 trial pending unless told the slots, and a reused actor then
                               # takes it: every slot must be asked for
                               reuse_actors=True, max_concurrent_trials=slots)


@dataclass(frozen=True)
class FixedTrials:
    """Each configuration once, to its last epoch, FIFO (study/engine/fixed.py); trial directories
    `<dirname_prefix>_0001_<id>`."""

    configs: list[dict[str, Any]]
    dirname_prefix: str

    @property
    def count(self) -> int:
        return len(self.configs)

    def tune_config(self, slots: int) -> tune.TuneConfig:
        return fixed_tune_config(self.configs, slots, self.dirname_prefix)


@dataclass(frozen=True)
class Run:
    """What the runner resolved before the trials start, handed to the caller's steps."""

    spec: RunSpec
    store: StudyStore  # the Ray experiment's directory (the spec's study directory)
    data: MNISTSplits
    assets: EvaluationAssets | None
    setup: TrialSetup
    gpus: float  # per trial, resolved on the live cluster
    slots: int  # trials at once


@dataclass(frozen=True)
class Rows:
    """The finished experiment's rows (trial_tables.trial_rows): one per trial, one per trial-epoch."""

    trials: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)


def trial_setup(spec: RunSpec, data: MNISTSplits, assets: EvaluationAssets | None, gpus: float,
                **options: Any) -> TrialSetup:
    """What every trial of a run shares: the data, the evaluation assets, a CPU trial's threads, the
    resolved GPUs per trial, and the run's own `options` (TrialSetup's fields)."""
    return TrialSetup(data=data, assets=assets, threads=max(1, int(spec.cpus_per_trial)), gpus_per_trial=gpus,
                      **options)


def load_run_data(spec: RunSpec, data: MNISTSplits | None = None,
                  assets: EvaluationAssets | None = None) -> tuple[MNISTSplits, EvaluationAssets | None]:
    """The run's splits and evaluation assets (the feature network, the real statistics and PRDC radii,
    computed once, not per trial; none when the run computes no metrics), unless the caller has them."""
    if data is None:
        data = load_splits(spec.data_dir, train_subset=spec.train_subset, download=False)
    if assets is None and spec.eval_samples > 0:
        assets = prepare_evaluation(data, pick_device(), iw_images=spec.iw_images,
                                    prdc_images=spec.eval_samples)
    return data, assets


def run_trials(spec: RunSpec, trials: SearchTrials | FixedTrials, export: Callable[[Run, Rows], T], *,
               expect_gpus: int | None = None, setup_options: Mapping[str, Any] | None = None,
               data: MNISTSplits | None = None, assets: EvaluationAssets | None = None,
               before: Callable[[Run, bool], None] | None = None, study: str | None = None,
               tables: StudyStore | None = None, seed_configs: Sequence[TrainConfig] = (),
               stopped: Callable[[Run], EarlyStopEvaluator] | None = None) -> T | None:
    """Run (or continue) `trials` as the Ray experiment of `spec` (spec.store) on an initialised Ray
    and return what `export(run, rows)` makes of its rows; None if the run was interrupted before
    every trial ended.

    `before(run, restoring)`: the caller's lines and files before the trials start (restoring: an
    interrupted experiment is continued). `study`: the rows' study name (default spec.name); `tables`:
    the directory the rows' paths are relative to (default the experiment's); `seed_configs`: the
    configurations whose rows are marked seed_config; `stopped(run)`: the evaluator of trials a
    scheduler stopped (their test metrics from their last checkpoint)."""
    store = spec.store
    data, assets = load_run_data(spec, data, assets)
    gpus = resolve_gpus(spec.cpus_per_trial, spec.gpus_per_trial, expect_gpus)
    setup = trial_setup(spec, data, assets, gpus, **(setup_options or {}))
    trainable = tune.with_resources(with_setup(setup), {"cpu": spec.cpus_per_trial, "gpu": gpus})
    run = Run(spec, store, data, assets, setup, gpus, trial_slots(spec.cpus_per_trial, gpus, expect_gpus))
    restoring = tune.Tuner.can_restore(store.uri)
    if before is not None:
        before(run, restoring)
    searched = isinstance(trials, SearchTrials)
    if restoring:
        if searched:
            optuna_storage.fetch(store)  # the restored searcher reopens this file
        else:
            print(f"continuing the interrupted run in {store} (finished trials are not run again)",
                  flush=True)
        tuner = tune.Tuner.restore(store.uri, trainable=trainable, resume_unfinished=True,
                                   resume_errored=False)
    else:
        tuner = tune.Tuner(trainable, tune_config=trials.tune_config(run.slots),
                           run_config=run_config(spec.name, spec.storage_path, spec.max_failures,
                                                 spec.keep_checkpoints))
    try:
        results, interrupted = fit(tuner)
    finally:
        if searched:
            optuna_storage.publish(store)  # a URI study's database into its study directory
    # the in-memory statuses: the saved experiment state can lag behind (HyperBand leaves trials it
    # stopped while paused marked PAUSED on disk); Ctrl-C marks the running trials TERMINATED in
    # memory, so the interrupt is checked too
    if interrupted or results.num_terminated + results.num_errors < trials.count:
        return None
    errored = errored_trial_dirs(results)
    rows, history = trial_rows(tables or store, study or spec.name, experiment_trials(store), seed_configs,
                               None if stopped is None else stopped(run), errored)
    return export(run, Rows(rows, history))
