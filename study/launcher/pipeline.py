"""The launcher's library half: a study from its spec to its tables, then what follows it.

`study_command(spec, plan, lock)` takes the launcher's spec and the plan that launch_plan.checked_plan
resolved and checked (MNIST, the dashboard port, the study lock: before Ray starts or anything is
written) and makes the command that study/engine/command.py run_command runs on Ray: the search
(study/engine/study_run.py), then the replicates of its best configurations
(study/followups/replicate_run.py) and the Inception step, and the end-of-study summary.
`python -m study.launch` (study/launch.py) is its parser.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import pandas as pd
import torch

from models import build_model
from models.config import ConfigError
from search_spaces import seed_configs
from study import results as R
from study.data import load_splits, to_unit
from study.devices import pick_device
from study.engine import console, sharing, tracking
from study.engine.cluster import (
    check_cuda_on_gpu_nodes,
    check_shared_storage,
    cluster_gpus,
    resolve_gpus,
    trial_slots,
)
from study.engine.command import Command
from study.engine.lock import StudyLock, UriStudyLock
from study.engine.plan import StudyPlan, expected_epochs
from study.engine.recovery import reap_stale_ray, record_local_ray
from study.engine.spec import FULL_PRESET, QUICK_PRESET, search_preset
from study.engine.study_run import run_inception, run_study, study_setup, wants_inception
from study.engine.trial_tables import ExportedStudy, summary_table
from study.followups.picked_nll import run_likelihood
from study.followups.replicate_plan import prepare as prepare_replicates
from study.followups.replicate_plan import summary_table as replicate_table
from study.followups.replicate_run import run_replicates
from study.launcher.launch_plan import LaunchSpec
from study.metrics.evaluator import prepare_evaluation
from study.store import is_uri


def check_cluster(plan: StudyPlan) -> None:
    """What only the running cluster can tell, before any trial: every node sees a local storage
    path, and every GPU node's torch can use CUDA (ConfigError otherwise)."""
    check_shared_storage(plan.storage_path)
    check_cuda_on_gpu_nodes()


def _run(spec: LaunchSpec, plan: StudyPlan):
    """Search, replicates, Inception on the running Ray: (exported study or None, wall seconds,
    replicate rows or None, why the Inception step failed or None)."""
    check_cluster(plan)
    inception = wants_inception(plan)  # decided now: a fallback to none warns before the search
    data = load_splits(plan.data_dir, train_subset=plan.train_subset, download=False)
    prior = None
    if cluster_gpus(plan.expect_gpus) == 0:  # trials train on CPUs like this one: time a few steps
        gpus = resolve_gpus(plan.cpus_per_trial, plan.gpus_per_trial, plan.expect_gpus)
        prior = probe_epoch_seconds(plan, data)
        if plan.preset == FULL_PRESET:
            print(gpu_scale_line(plan, len(data.train.images), prior,
                                 trial_slots(plan.cpus_per_trial, gpus, plan.expect_gpus)), flush=True)
    assets = None
    if plan.eval_samples > 0:  # the feature network and real statistics, computed once
        assets = prepare_evaluation(data, pick_device(), iw_images=plan.iw_images,
                                    prdc_images=plan.eval_samples)
    began = time.perf_counter()
    exported = run_study(plan, data, assets, prior_epoch_s=prior)
    if exported is not None:  # the picked VAE trials' likelihood (followups/picked_nll.py)
        gpus = resolve_gpus(plan.cpus_per_trial, plan.gpus_per_trial, plan.expect_gpus)
        scored = run_likelihood(plan, study_setup(plan, data, assets), gpus, spec.replicate_top)
        if scored is not None:
            exported = replace(exported, trials=scored)
    wall = time.perf_counter() - began
    replicated = None
    if exported is not None and spec.replicate_top is not None and spec.replicate_seeds is not None:
        replicates, _, _ = prepare_replicates(plan.store, spec.replicate_top, spec.replicate_seeds)
        replicated = run_replicates(replicates, data=data, assets=assets)
    failed = None
    if exported is not None and inception:  # after the replicates: it scores them too
        failed = run_inception(plan, data)
    return exported, wall, replicated, failed


PROBE_STEPS = 3  # timed training steps per seed configuration (after one untimed)


def probe_epoch_seconds(plan: StudyPlan, data) -> float:
    """Training seconds of one epoch of the study's seed configurations on this machine's CPU (their
    mean), from PROBE_STEPS timed steps each at the trial's thread count: the pace the console's
    time-left estimate uses until the first epochs are timed. A second or two."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(plan.cpus_per_trial)))
    try:
        seconds = []
        for config in seed_configs(plan.family, plan.space()):
            torch.manual_seed(config.seed)
            model = build_model(config.model)
            optimizers = model.make_optimizers()
            x = to_unit(data.train.images[: config.batch_size])
            model.train_step(x, optimizers)  # the first step allocates
            started = time.perf_counter()
            for _ in range(PROBE_STEPS):
                model.train_step(x, optimizers)
            step = (time.perf_counter() - started) / PROBE_STEPS
            seconds.append(step * (len(data.train.images) // config.batch_size))
        return sum(seconds) / len(seconds)
    finally:
        torch.set_num_threads(previous)


def gpu_scale_line(plan: StudyPlan, images: int, epoch_s: float, slots: int) -> str:
    """The one line a full-preset study started without a GPU prints: what it is, its rough size
    here, and the laptop version. It runs anyway."""
    training = plan.trials * expected_epochs(plan) * epoch_s / max(1, min(slots, plan.trials))
    quick = search_preset(QUICK_PRESET)
    return (f"note: the full preset is a GPU-scale study ({plan.trials} trials x up to {plan.max_epochs} "
            f"epochs x {images:,} images); on this machine's CPUs its training alone is roughly "
            f"{console.duration(training)} ({slots} trial(s) at once, from timed steps of the seed "
            f"configurations). `--quick` is the laptop version (at most {quick['max_epochs']} epochs on "
            f"{quick['train_subset']:,} images, minutes per trial); running the full study as asked.")


def study_command(spec: LaunchSpec, plan: StudyPlan, lock: StudyLock | UriStudyLock | None) -> Command:
    """The study of `plan` (resolved from `spec` and checked by launch_plan.checked_plan, which took
    `lock`) as a command for study/engine/command.py run_command: this machine's claim (its other
    studies, the dashboard port, the CPUs; ConfigError, with the lock released, when it cannot be had),
    the trackers, then the search, its replicates and the Inception step on Ray."""
    ray_settings = spec.ray
    try:  # after the study's own lock: this machine's other studies, the dashboard port, the CPUs
        claim = None if not ray_settings.local else sharing.claim(
            plan.name, ray_settings.dashboard_host, ray_settings.dashboard_port, ray_settings.num_cpus,
            plan.cpus_per_trial)
    except ConfigError:
        if lock is not None:
            lock.release()
        raise
    if spec.resume:
        print(f"resuming study {plan.name} with the settings it started with ({R.STUDY_JSON}), MNIST from "
              f"{plan.data_dir}; other study flags but --data-dir are ignored", flush=True)
        if reaped := reap_stale_ray(plan.store):
            print(f"ended {len(reaped)} leftover process(es) of the Ray that the interrupted launcher "
                  "started", flush=True)
    if claim is not None and (shared := sharing.describe(claim, ray_settings.num_cpus)):
        print(shared, flush=True)

    def on_ray(started: bool) -> None:
        if started and ray_settings.local:
            record_local_ray(plan.store)
        for line in console.hints(plan.study_dir, local=not is_uri(plan.storage_path)):
            print(line, flush=True)

    def release() -> None:
        if lock is not None:
            lock.release()
        if claim is not None:
            claim.release()

    def run():
        outcome = _run(spec, plan)
        return None if outcome[0] is None else outcome  # the search itself was interrupted

    return Command(
        ray=ray_settings, run=run, finished=lambda outcome: finish(spec, plan, *outcome),
        interrupted=(f"\nstudy {plan.name} was interrupted before every trial finished; continue it with\n"
                     f"  python -m study.launch --family {plan.family} --name {plan.name} "
                     f"--storage-path {plan.storage_path} --resume"),
        num_cpus=claim.num_cpus if claim is not None else None,
        dashboard=((ray_settings.dashboard_host, claim.port) if claim is not None and claim.port is not None
                   else None),
        callbacks=tracking.callbacks(ray_settings.trackers, plan.study_dir, plan.name),
        on_ray=on_ray, release=release)


def finish(spec: LaunchSpec, plan: StudyPlan, exported: ExportedStudy, wall: float,
           replicated: pd.DataFrame | None, failed: str | None) -> int:
    """The end of a search that finished: its summary, its replicates' (or how to continue them), the
    Inception step's failure; the exit status."""
    print_outcome(plan, exported, wall)
    if spec.replicate_top is not None:
        if replicated is None:
            print(f"the replicates were interrupted; continue them with\n  python -m study.replicate "
                  f"{plan.study_dir} --top {spec.replicate_top} --seeds {spec.replicate_seeds}",
                  file=sys.stderr)
            return R.EXIT_INTERRUPTED
        print(f"replicates: {plan.study_dir}/{R.REPLICATES_FILE}\n{replicate_table(replicated)}")
    if failed is not None:
        print(f"error: {failed}; the study's tables are complete without Inception FID "
              f"({plan.study_dir}/{R.TRIALS_FILE}); fix the cause and score them with "
              "`python -m study.evaluate --inception` per checkpoint.", file=sys.stderr)
        return 1
    return 0


def print_outcome(plan: StudyPlan, exported: ExportedStudy, wall: float) -> None:
    """The end-of-study summary: stop reasons, one line per trial, the best trial and the tables."""
    reasons = exported.trials[R.STOP_REASON].value_counts().items()
    print(f"\nstudy {plan.name} finished in {wall:.1f} s: {len(exported.trials)} trials, "
          + ", ".join(f"{n} {reason}" for reason, n in reasons))
    print(summary_table(exported.trials))
    if exported.best_trial_id is not None:
        print(f"best trial {exported.best_trial_id}; its samples: {plan.study_dir}/{R.BEST_SAMPLES_FILE}")
    print(f"tables: {plan.study_dir}/{R.TRIALS_FILE}, {plan.study_dir}/{R.HISTORY_FILE}")
