"""`python -m study.launch`: a Ray Tune + Optuna study over one model family.

    python -m study.launch --family gan --trials 64
    python -m study.launch --family vae --trials 8 --quick --data-dir ../shared/data
    python -m study.launch --family gan --name my-study --resume        # after an interruption

Every flag is checked (and MNIST found) before Ray starts or anything is written. A local Ray
(no --address) runs the dashboard on 127.0.0.1:8265 with Ray's token authentication on. The
seed studies' configurations are the first trials (enqueued in Optuna's study); ASHA stops
trials on validation FID; results land in <storage-path>/<name>/: Ray's experiment, study.json
(these settings, reused by --resume), trials.parquet, history.parquet and best_samples.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import posixpath
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

from models.config import FAMILIES, ConfigError
from search_spaces import (
    DEFAULT_WIDTH_RANGE,
    SpaceOptions,
    define_by_run,
    seed_configs,
    seed_points,
)
from study import results as R
from study.data import DATA_DIR_ENV, DataNotFoundError, has_mnist, resolve_data_dir, verify_mnist
from study.export import StudyStore
from study.lock import StudyLock, StudyLockedError

SCHEDULERS = ("asha", "hyperband", "none")
SAMPLERS = ("tpe", "random", "nsga2", "qmc", "gp")
OBJECTIVES = ("fid", "pareto")
# pareto: minimise all three (Optuna multi-objective); ASHA still stops on validation FID alone
PARETO_METRICS = (R.VAL_FID, R.PARAMS_TOTAL, R.TRAIN_SECONDS)
DEFAULT_DASHBOARD_PORT = 8265
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# Flags left unset take their value from the preset. "full" is the real study; "quick" a laptop
# CPU finishes in minutes (seed-width networks at most, a 4,000-image subset, at most 8 epochs,
# 1,000 FID samples);
# "smoke" is what the tests run (1/8-width networks, 2,000 images, seconds per trial).
PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(trials=16, max_epochs=20, grace_period=2, reduction_factor=3, train_subset=None,
                 eval_samples=10_000, iw_images=None, width_scale=1.0, width_range=DEFAULT_WIDTH_RANGE,
                 batch_sizes=(32, 64, 128, 256)),
    "quick": dict(trials=8, max_epochs=8, grace_period=2, reduction_factor=2, train_subset=4_000,
                  eval_samples=1_000, iw_images=2_000, width_scale=1.0, width_range=(0.25, 1.0), batch_sizes=(32, 64, 128)),
    "smoke": dict(trials=4, max_epochs=4, grace_period=1, reduction_factor=2, train_subset=2_000,
                  eval_samples=500, iw_images=500, width_scale=0.125, width_range=(0.5, 1.0), batch_sizes=(64, 128)),
}


@dataclass(frozen=True)
class StudyPlan:
    """Every setting of one study, resolved and validated; saved as study.json."""

    family: str
    name: str
    trials: int
    max_epochs: int
    grace_period: int
    reduction_factor: float
    scheduler: str
    sampler: str
    objective: str
    seed: int
    train_subset: int | None
    eval_samples: int
    iw_images: int | None  # test images behind a VAE's importance-weighted NLL (None: all)
    checkpoint_every: int
    width_scale: float
    width_range: tuple[float, float]
    batch_sizes: tuple[int, ...]
    cpus_per_trial: float
    gpus_per_trial: float | None  # None: 1 per trial when the cluster has GPUs, else 0
    max_failures: int
    keep_checkpoints: int
    data_dir: str
    storage_path: str  # absolute local path or URI
    preset: str

    @property
    def study_dir(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    def space(self) -> SpaceOptions:
        loop = dict(epochs=self.max_epochs, seed=self.seed, eval_samples=self.eval_samples,
                    train_subset=self.train_subset, checkpoint_every=self.checkpoint_every)
        return SpaceOptions(width_scale=self.width_scale, width_range=tuple(self.width_range),
                            batch_sizes=tuple(self.batch_sizes), loop=loop)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> StudyPlan:
        raw = json.loads(text)
        for key in ("width_range", "batch_sizes"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study.launch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a distributed hyperparameter study of one model family (GAN or VAE) on "
        "MNIST with Ray Tune and Optuna. The seed studies' configurations run first; ASHA stops "
        "poor trials early on validation FID. Results: <storage-path>/<name>/trials.parquet "
        "(one row per trial), history.parquet (one row per trial-epoch), best_samples.png, and "
        "Ray's experiment (TensorBoard logs with sample grids, checkpoints).",
        epilog="presets (flags you give override them):\n" + "\n".join(
            f"  {name:<6} " + ", ".join(f"{k}={v}" for k, v in values.items()) for name, values in PRESETS.items()
        ) + "\n\ncluster: start `ray start --head` on one machine and `ray start --address HEAD:6379` "
        "on the others, then run with --address HEAD:6379 and a --storage-path every node can "
        "reach (NFS path or s3://...).",
    )
    p.add_argument("--family", required=True, choices=FAMILIES, help="model family to study")
    p.add_argument("--trials", type=int, help="number of trials, seed configurations included (default 16)")
    p.add_argument("--max-epochs", type=int, help="epochs of a trial that is never stopped (default 20)")
    p.add_argument("--grace-period", type=int, help="epochs before ASHA/HyperBand may stop a trial (default 2)")
    p.add_argument("--reduction-factor", type=float, help="ASHA/HyperBand halving rate (default 3)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="asha",
                   help="trial scheduler on validation FID: asha (default), hyperband (pauses and "
                   "resumes trials from per-epoch checkpoints) or none (every trial runs all epochs)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                   help="Optuna sampler (default tpe; nsga2 suits --objective pareto)")
    p.add_argument("--objective", choices=OBJECTIVES, default="fid",
                   help="fid: minimise validation FID; pareto: minimise validation FID, total "
                   "parameters and training seconds together (Optuna multi-objective)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial's training")
    p.add_argument("--name", help="study name: results go to <storage-path>/<name> (default: <family>-<time>)")
    p.add_argument("--train-subset", type=int, help="train on the first N training images (default: all 50,000)")
    p.add_argument("--eval-samples", type=int, help="generated images per validation FID/KID/IS (default 10,000)")
    p.add_argument("--iw-images", type=int,
                   help="test images behind a VAE's importance-weighted NLL, k=100 passes each (default: all 10,000)")
    p.add_argument("--checkpoint-every", type=int, default=10,
                   help="epochs between checkpoints; scheduler rungs and the last epoch always get one")
    p.add_argument("--data-dir", help=f"directory holding MNIST/raw/ (default: ${DATA_DIR_ENV}, else a download cache)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs (and torch threads) per trial")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPUs per trial, fractional to share one (0.25 packs four trials on a GPU); "
                   "default 1 when the cluster has GPUs, else 0")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial from its last checkpoint")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="latest checkpoints kept per trial")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. HEAD:6379 or 'auto') instead of starting one")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray the launcher starts (default: all)")
    p.add_argument("--storage-path", default="results",
                   help="where studies are written: a local directory (default ./results) or a URI "
                   "such as s3://bucket/results that every node can reach")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted study --name with its saved settings (study.json); "
                   "finished trials are not re-run")
    p.add_argument("--dashboard-host", default="127.0.0.1",
                   help="interface of the Ray dashboard of a local Ray (default 127.0.0.1; anything "
                   "else exposes it to the network, token-protected)")
    p.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT, help="Ray dashboard port")
    presets = p.add_mutually_exclusive_group()
    presets.add_argument("--quick", action="store_true", help="the 'quick' preset: minutes on a laptop CPU")
    presets.add_argument("--smoke-test", action="store_true", help="the 'smoke' preset the tests run")
    return p


def _fail(message: str) -> None:
    raise ConfigError(message)


def plan_from_args(args: argparse.Namespace) -> StudyPlan:
    """Resolve presets and defaults; raise ConfigError on anything invalid."""
    preset = "smoke" if args.smoke_test else "quick" if args.quick else "full"
    values = dict(PRESETS[preset])
    for key in ("trials", "max_epochs", "grace_period", "reduction_factor", "train_subset", "eval_samples",
                "iw_images"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    name = args.name or f"{args.family}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = args.storage_path if "://" in args.storage_path else os.path.abspath(os.path.expanduser(args.storage_path))
    data_root, _ = resolve_data_dir(args.data_dir)
    plan = StudyPlan(
        family=args.family, name=name, trials=values["trials"], max_epochs=values["max_epochs"],
        grace_period=values["grace_period"], reduction_factor=float(values["reduction_factor"]),
        scheduler=args.scheduler, sampler=args.sampler, objective=args.objective, seed=args.seed,
        train_subset=values["train_subset"], eval_samples=values["eval_samples"], iw_images=values["iw_images"],
        checkpoint_every=args.checkpoint_every, width_scale=values["width_scale"],
        width_range=tuple(values["width_range"]), batch_sizes=tuple(values["batch_sizes"]),
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        max_failures=args.max_failures, keep_checkpoints=args.keep_checkpoints,
        data_dir=str(data_root.resolve()), storage_path=storage, preset=preset,
    )
    validate(plan)
    return plan


def validate(plan: StudyPlan) -> None:
    if plan.trials < 1:
        _fail(f"--trials {plan.trials}: a study needs at least 1 trial (the first ones are the seed "
              "studies' configurations), e.g. --trials 8.")
    if plan.max_epochs < 1:
        _fail(f"--max-epochs {plan.max_epochs}: give at least 1 epoch.")
    if plan.scheduler != "none" and not 1 <= plan.grace_period <= plan.max_epochs:
        _fail(f"--grace-period {plan.grace_period}: must be between 1 and --max-epochs ({plan.max_epochs}).")
    if plan.reduction_factor <= 1:
        _fail(f"--reduction-factor {plan.reduction_factor}: must be > 1 (2 halves the trials at each rung).")
    if plan.scheduler != "none" and plan.eval_samples < 1:
        _fail(f"--eval-samples {plan.eval_samples}: the {plan.scheduler} scheduler stops trials on "
              "validation FID, which needs generated samples; give e.g. --eval-samples 1000 or use --scheduler none.")
    if plan.eval_samples < 0 or plan.eval_samples == 1:
        _fail(f"--eval-samples {plan.eval_samples}: give 0 (no metrics) or at least 2 generated images.")
    if plan.iw_images is not None and plan.iw_images < 1:
        _fail(f"--iw-images {plan.iw_images}: give at least 1 test image (or leave it out for all).")
    if plan.train_subset is not None and plan.train_subset < max(plan.batch_sizes):
        _fail(f"--train-subset {plan.train_subset}: smaller than the largest searched batch size "
              f"({max(plan.batch_sizes)}); give at least that many images.")
    if plan.checkpoint_every < 1 or plan.max_failures < 0 or plan.keep_checkpoints < 1:
        _fail("--checkpoint-every and --keep-checkpoints must be >= 1, --max-failures >= 0.")
    if plan.cpus_per_trial <= 0 or (plan.gpus_per_trial is not None and plan.gpus_per_trial < 0):
        _fail(f"--cpus-per-trial {plan.cpus_per_trial} / --gpus-per-trial {plan.gpus_per_trial}: "
              "CPUs must be > 0 and GPUs >= 0 (fractions such as 0.25 share a GPU).")
    if not plan.name or "/" in plan.name or plan.name.startswith("."):
        _fail(f"--name {plan.name!r}: use a plain directory name such as gan-quick.")
    if plan.objective == "pareto" and plan.sampler in ("gp", "qmc"):
        _fail(f"--sampler {plan.sampler} does not support --objective pareto; use tpe or nsga2.")
    plan.space()  # the width range must contain the seed widths


def check_data(data_dir: str) -> None:
    from pathlib import Path

    if not has_mnist(Path(data_dir)):
        raise DataNotFoundError(
            f"MNIST was not found under {data_dir}: expected MNIST/raw/ with the four IDX files "
            "(train-images-idx3-ubyte, ...). Point --data-dir (or $STUDY_DATA_DIR) at the directory "
            "that contains MNIST/, e.g. --data-dir ../shared/data; the launcher never downloads."
        )
    verify_mnist(Path(data_dir))  # headers and sizes: a truncated file fails here, not after Ray starts


def check_storage(storage_path: str) -> None:
    """A local --storage-path must be (or be creatable as) a writable directory; URIs are checked by Ray."""
    if "://" in storage_path:
        return
    reason = R.unwritable_reason(storage_path)
    if reason:
        raise ConfigError(f"--storage-path {storage_path}: {reason}; choose a directory you can write, "
                          "e.g. --storage-path results (nothing was written).")


def check_dashboard_port(host: str, port: int) -> None:
    """A local Ray cannot start its dashboard on a busy port; say so before starting anything."""
    import socket

    if not 0 < port < 65536:
        raise ConfigError(f"--dashboard-port {port}: a port must be between 1 and 65535, e.g. --dashboard-port 8265.")
    with socket.socket() as probe:
        # as the dashboard's own server does: a socket of a crashed study left in TIME_WAIT must not
        # block an immediate --resume (a port someone listens on still fails to bind)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"the Ray dashboard cannot listen on {host}:{port} ({exc.strerror}); another Ray may be running "
                f"there: join it with --address auto, or pick a free port with --dashboard-port."
            ) from None


def make_sampler(plan: StudyPlan):
    import optuna

    samplers = {
        # multivariate + group: TPE that models the per-architecture (conditional) parameters jointly
        "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True),
        "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
        "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed),
        "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
        "gp": lambda seed: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False),
    }
    with warnings.catch_warnings():  # TPE's `group` and QMC are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return samplers[plan.sampler](plan.seed)


def make_searcher(plan: StudyPlan):
    """OptunaSearch over the family's define-by-run space, seed configurations enqueued first
    (Ray enqueues points_to_evaluate into the Optuna study; tests check they run first)."""
    from ray.tune.search.optuna import OptunaSearch

    if plan.objective == "pareto":
        metric, mode = list(PARETO_METRICS), ["min"] * len(PARETO_METRICS)
    else:
        metric, mode = R.VAL_FID, "min"
    return OptunaSearch(
        space=define_by_run(plan.family, plan.space()),
        metric=metric,
        mode=mode,
        points_to_evaluate=seed_points(plan.family, plan.space())[: plan.trials],
        sampler=make_sampler(plan),
    )


def make_scheduler(plan: StudyPlan):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler

    common = dict(time_attr=R.EPOCH, metric=R.VAL_FID, mode="min", max_t=plan.max_epochs)
    if plan.scheduler == "asha":
        return ASHAScheduler(grace_period=plan.grace_period, reduction_factor=plan.reduction_factor, **common)
    if plan.scheduler == "hyperband":
        return HyperBandScheduler(reduction_factor=plan.reduction_factor, **common)
    return FIFOScheduler()


def checkpoint_epochs(plan: StudyPlan) -> frozenset[int]:
    """Epochs that must have a checkpoint: where the scheduler may stop (ASHA) or pause
    (HyperBand, at any epoch) a trial."""
    from study.trainable import scheduler_rungs

    if plan.scheduler == "asha":
        return scheduler_rungs(plan.grace_period, plan.reduction_factor, plan.max_epochs)
    if plan.scheduler == "hyperband":
        return frozenset(range(1, plan.max_epochs + 1))
    return frozenset()


def default_evaluators(plan: StudyPlan, data, device):
    """The metrics' evaluator factory, with the feature network and real statistics computed once."""
    from study.trainable import MetricsFactory

    return MetricsFactory.build(data, device, iw_images=plan.iw_images)


def code_runtime_env() -> dict[str, Any]:
    """Ship this project's packages to every worker (the nodes need only the dependencies)."""
    import models
    import search_spaces
    import study

    return {"py_modules": [models, search_spaces, study]}


def start_ray(address: str | None, num_cpus: int | None, dashboard_host: str, dashboard_port: int) -> bool:
    """Join a cluster or start a local one with the dashboard; returns True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        context = ray.init(address=address, runtime_env=code_runtime_env())
    else:
        if not _is_loopback(dashboard_host):
            print(f"warning: the Ray dashboard listens on {dashboard_host}, reachable from the network "
                  "(it asks for the cluster's auth token); use --dashboard-host 127.0.0.1 to keep it local.",
                  file=sys.stderr)
        context = ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host=dashboard_host,
                           dashboard_port=dashboard_port, runtime_env=code_runtime_env())
    if context.dashboard_url:
        print(f"Ray dashboard: http://{context.dashboard_url}  (log in with the token that "
              "`ray get-auth-token` prints)", flush=True)
    else:
        print("Ray dashboard: not running on this cluster", flush=True)
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_gpus(plan: StudyPlan) -> float:
    """--gpus-per-trial, defaulting to 1 when the cluster has GPUs; refuses requests no node can
    meet (Tune would otherwise wait for them forever)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    gpus = plan.gpus_per_trial if plan.gpus_per_trial is not None else (1.0 if most_gpus > 0 else 0.0)
    if plan.cpus_per_trial > most_cpus or gpus > most_gpus:
        _fail(f"a trial asks for {plan.cpus_per_trial:g} CPU + {gpus:g} GPU, but the largest node of this "
              f"Ray cluster has {most_cpus:g} CPU + {most_gpus:g} GPU; lower --cpus-per-trial / --gpus-per-trial.")
    return gpus


def run_study(plan: StudyPlan, data, evaluators, resume: bool = False):
    """Run (or resume) the Tune experiment on an initialised Ray; returns the ExportedStudy, or
    None if the study was interrupted before every trial finished."""
    import ray
    from ray import tune

    from study.export import export_study
    from study.trainable import TrialSetup, evaluate_checkpoint, with_setup

    gpus = resolve_gpus(plan)
    setup = TrialSetup(data=data, evaluators=evaluators, checkpoint_epochs=checkpoint_epochs(plan),
                       threads=max(1, int(plan.cpus_per_trial)))
    trainable = tune.with_resources(with_setup(setup), {"cpu": plan.cpus_per_trial, "gpu": gpus})
    store = StudyStore(plan.study_dir)
    print(f"study {plan.name}: {plan.family}, {plan.trials} trials, up to {plan.max_epochs} epochs, "
          f"{plan.scheduler} scheduler, {plan.sampler} sampler, objective {plan.objective}, "
          f"{plan.cpus_per_trial:g} CPU + {gpus:g} GPU per trial -> {plan.study_dir}", flush=True)
    if resume:
        tuner = tune.Tuner.restore(store.uri, trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        store.write_bytes(store.path(R.STUDY_JSON), plan.to_json().encode())
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=make_searcher(plan), scheduler=make_scheduler(plan),
                                        num_samples=plan.trials, trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name=plan.name,
                storage_path=plan.storage_path,
                failure_config=tune.FailureConfig(max_failures=plan.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=plan.keep_checkpoints),
                sync_config=tune.SyncConfig(sync_artifacts=True),  # trial files -> trial directory
            ),
        )
    results = tuner.fit()
    # the in-memory statuses: the saved experiment state can lag behind (HyperBand leaves
    # trials it stopped while paused marked PAUSED on disk)
    if results.num_terminated + results.num_errors < plan.trials:
        return None

    setup_ref = ray.put(setup)
    evaluate = ray.remote(evaluate_checkpoint).options(num_cpus=plan.cpus_per_trial, num_gpus=gpus)

    def evaluate_stopped(checkpoints):
        print(f"evaluating {len(checkpoints)} early-stopped trial(s) on the test split", flush=True)
        return ray.get([evaluate.remote(c, setup_ref) for c in checkpoints])

    errored = {posixpath.basename(r.path) for r in results if r.error is not None}
    return export_study(plan.study_dir, plan.name, seed_configs(plan.family, plan.space()), evaluate_stopped,
                        errored=errored)


def trial_dirname(trial) -> str:
    """trial_0001_<id>: creation order (Tune's experiment tag starts with the trial counter), so
    the seed configurations' trials sort first."""
    counter = str(trial.experiment_tag).split("_", 1)[0]
    return f"trial_{counter.zfill(4)}_{trial.trial_id}" if counter.isdigit() else f"trial_{trial.trial_id}"


def load_resume_plan(args: argparse.Namespace) -> StudyPlan:
    if not args.name:
        _fail("--resume needs --name: the name of the interrupted study (a directory under --storage-path).")
    storage = args.storage_path if "://" in args.storage_path else os.path.abspath(os.path.expanduser(args.storage_path))
    store = StudyStore(f"{storage.rstrip('/')}/{args.name}")
    if not store.exists(store.path(R.STUDY_JSON)):
        _fail(f"--resume: {store.uri} holds no study to resume ({R.STUDY_JSON} is missing); check --name "
              "and --storage-path, or start a new study without --resume.")
    try:
        plan = StudyPlan.from_json(store.read_bytes(store.path(R.STUDY_JSON)).decode())
    except (ValueError, TypeError, KeyError) as exc:  # not JSON, or not the launcher's settings
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        _fail(f"--resume: {store.path(R.STUDY_JSON)} is not a {R.STUDY_JSON} the launcher wrote ({why}); restore "
              "it from a backup, or start the study again under a new --name.")
    if plan.family != args.family:
        _fail(f"--resume: study {args.name} is a {plan.family} study, not {args.family}; pass --family {plan.family}.")
    return dataclasses.replace(plan, storage_path=storage)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_storage(args.storage_path)
        if args.resume:
            plan = load_resume_plan(args)
            from ray import tune

            if not tune.Tuner.can_restore(StudyStore(plan.study_dir).uri):
                _fail(f"--resume: {plan.study_dir} has no Ray experiment state to restore; start the study again "
                      "under a new --name.")
        else:
            plan = plan_from_args(args)
            if StudyStore(plan.study_dir).is_nonempty_dir():
                _fail(f"--name {plan.name}: {plan.study_dir} already exists; pass --resume to continue that "
                      "study, or choose another --name (nothing was changed).")
        check_data(plan.data_dir)
        if not args.address:
            check_dashboard_port(args.dashboard_host, args.dashboard_port)
            if args.num_cpus is not None and args.num_cpus < plan.cpus_per_trial:
                _fail(f"--num-cpus {args.num_cpus}: the local Ray needs at least --cpus-per-trial "
                      f"({plan.cpus_per_trial:g}) CPUs to run one trial.")
        # last check: one launcher per study (a second one, or a --resume while it runs, is refused)
        lock = None if "://" in plan.storage_path else StudyLock.acquire(plan.storage_path, plan.name)
    except (ConfigError, DataNotFoundError, StudyLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    import ray

    from study.data import load_splits
    from study.train import pick_device

    if args.resume:
        print(f"resuming study {plan.name} with the settings it started with ({R.STUDY_JSON}); "
              "other study flags are ignored", flush=True)
    data = load_splits(plan.data_dir, train_subset=plan.train_subset, download=False)
    started = start_ray(args.address, args.num_cpus, args.dashboard_host, args.dashboard_port)
    try:
        evaluators = default_evaluators(plan, data, pick_device()) if plan.eval_samples > 0 else None
        began = time.perf_counter()
        exported = run_study(plan, data, evaluators, resume=args.resume)
        wall = time.perf_counter() - began
    except KeyboardInterrupt:
        exported, wall = None, 0.0
    except ConfigError as exc:  # resources no node has: found once Ray is up, before any trial
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if started:
            ray.shutdown()
        if lock is not None:
            lock.release()
    if exported is None:
        print(f"\nstudy {plan.name} was interrupted before every trial finished; continue it with\n"
              f"  python -m study.launch --family {plan.family} --name {plan.name} "
              f"--storage-path {plan.storage_path} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"\nstudy {plan.name} finished in {wall:.0f} s: {len(exported.trials)} trials, "
          + ", ".join(f"{n} {reason}" for reason, n in exported.trials[R.STOP_REASON].value_counts().items()))
    from study.export import summary_table

    print(summary_table(exported.trials))
    if exported.best_trial_id is not None:
        print(f"best trial {exported.best_trial_id}; its samples: {plan.study_dir}/{R.BEST_SAMPLES_FILE}")
    print(f"tables: {plan.study_dir}/{R.TRIALS_FILE}, {plan.study_dir}/{R.HISTORY_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
