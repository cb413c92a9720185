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
import ipaddress
import os
import posixpath
import signal
import sys
import threading
import time
import warnings
from typing import Any

from models.config import AMP_MODES, AMP_NONE, FAMILIES, ConfigError
from search_spaces import define_by_run, seed_configs, seed_points, tpe_startup_trials
from study import results as R
from study.data import DATA_DIR_ENV, DataNotFoundError
from study.lock import StudyLock, StudyLockedError
from study.plan import (
    INCEPTION_CHOICES,
    INCEPTION_IMAGES,
    OBJECTIVES,
    PARETO_METRICS,
    PRESETS,
    SAMPLERS,
    SCHEDULERS,
    StudyPlan,
    check_data,
    check_storage,
    checkpoint_epochs,
    load_resume_plan,
    plan_from_args,
)
from study.store import StudyStore, is_uri

DEFAULT_DASHBOARD_PORT = 8265
# Ray's switch for single-node (laptop) clusters: its node address becomes 127.0.0.1, so the GCS,
# raylet, agents and workers listen on loopback only (on Linux Ray otherwise binds all interfaces)
LOOPBACK_ENV = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
EXIT_INTERRUPTED = 130


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
            f"  {name:<6} " + ", ".join(f"{k}={v}" for k, v in values.items())
            for name, values in PRESETS.items()
        ) + "\n\ncluster: start `ray start --head` on one machine and `ray start --address HEAD:6379` "
        "on the others, then run with --address HEAD:6379 and a --storage-path every node can "
        "reach (NFS path or s3://...).",
    )
    p.add_argument("--family", required=True, choices=FAMILIES, help="model family to study")
    p.add_argument("--trials", type=int, help="number of trials, seed configurations included (default 16)")
    p.add_argument("--max-epochs", type=int, help="epochs of a trial that is never stopped (default 20)")
    p.add_argument("--grace-period", type=int,
                   help="epochs before ASHA/HyperBand may stop a trial (default 2)")
    p.add_argument("--reduction-factor", type=float, help="ASHA/HyperBand halving rate (default 3)")
    p.add_argument("--scheduler", choices=SCHEDULERS,
                   help="trial scheduler on validation FID: asha (default), hyperband (pauses and "
                   "resumes trials from per-epoch checkpoints) or none (every trial runs all epochs; "
                   "the default of --objective pareto, whose front needs the small models ASHA stops)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                   help="Optuna sampler (default tpe; nsga2 suits --objective pareto)")
    p.add_argument("--objective", choices=OBJECTIVES, default="fid",
                   help="fid: minimise validation FID; pareto: minimise validation FID, total "
                   "parameters and training seconds together (Optuna multi-objective)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial's training")
    p.add_argument("--name",
                   help="study name: results go to <storage-path>/<name> (default: <family>-<time>)")
    p.add_argument("--train-subset", type=int,
                   help="train on the first N training images (default: all 50,000)")
    p.add_argument("--eval-samples", type=int,
                   help="generated images per validation FID/KID/IS (default 10,000)")
    p.add_argument("--iw-images", type=int,
                   help="binarized test images behind a VAE's importance-weighted NLL, k=500 decoder passes "
                        "each (default: all 10,000; --quick 500)")
    p.add_argument("--checkpoint-every", type=int, default=10,
                   help="epochs between checkpoints; scheduler rungs and the last epoch always get one")
    p.add_argument("--data-dir",
                   help=f"directory holding MNIST/raw/ (default: ${DATA_DIR_ENV}, else a download cache)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs (and torch threads) per trial")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPUs per trial, fractional to share one (0.25 packs four trials on a GPU); "
                   "default 1 when the cluster has GPUs, else 0")
    p.add_argument("--max-failures", type=int, default=2,
                   help="retries of a crashed trial from its last checkpoint")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="latest checkpoints kept per trial")
    p.add_argument("--address",
                   help="join an existing Ray cluster (e.g. HEAD:6379 or 'auto') instead of starting one")
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
    replicates = p.add_argument_group("replicates (python -m study.replicate), straight after the search")
    replicates.add_argument("--replicate-top", type=int,
                            help="then re-train the K best trials and the seed configurations with new seeds "
                            "(default: no replicates)")
    replicates.add_argument("--replicate-seeds", type=int, default=5,
                            help="new seeds per replicated configuration (default 5)")
    gpu = p.add_argument_group("GPU speed (they run on a CPU too)")
    gpu.add_argument("--amp", choices=AMP_MODES, default=AMP_NONE,
                     help="bf16: training steps under bfloat16 autocast (default none: fp32)")
    gpu.add_argument("--channels-last", action="store_true",
                     help="conv models' weights in channels-last memory format (faster on tensor cores)")
    gpu.add_argument("--eval-batch-size", type=int, default=1000,
                     help="generated images per evaluation batch (default 1000; e.g. 5000 on a GPU)")
    p.add_argument("--inception", choices=INCEPTION_CHOICES,
                   help="final: after the search, the paper-comparable Inception FID of the best trial, the "
                   "Pareto trials and any replicates, into trials.parquet (default: final when the cluster "
                   "has a GPU, else none)")
    p.add_argument("--inception-images", type=int,
                   help=f"generated and test images per Inception FID (default {INCEPTION_IMAGES:,}, the "
                   "protocol; ~0.1 s per image on a CPU, so cap it there, e.g. 2000)")
    presets = p.add_mutually_exclusive_group()
    presets.add_argument("--quick", action="store_true", help="the 'quick' preset: minutes on a laptop CPU")
    presets.add_argument("--smoke-test", action="store_true", help="the 'smoke' preset the tests run")
    return p


def check_dashboard_port(host: str, port: int) -> None:
    """A local Ray cannot start its dashboard on a busy port; say so before starting anything."""
    import socket

    if not 0 < port < 65536:
        raise ConfigError(f"--dashboard-port {port}: a port must be between 1 and 65535, "
                          "e.g. --dashboard-port 8265.")
    with socket.socket() as probe:
        # as the dashboard's own server does: a socket of a crashed study left in TIME_WAIT must not
        # block an immediate --resume (a port someone listens on still fails to bind)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"the Ray dashboard cannot listen on {host}:{port} ({exc.strerror}); another Ray may be "
                f"running there: join it with --address auto, or pick a free port with --dashboard-port."
            ) from None


def study_seed_points(plan: StudyPlan) -> list[dict[str, Any]]:
    """The seed configurations' Optuna parameters the study enqueues (no more than its trials)."""
    return seed_points(plan.family, plan.space())[: plan.trials]


def make_sampler(plan: StudyPlan):
    import optuna

    # TPE's random start-up scaled to the study, counted after the enqueued seed configurations
    # (search_spaces.tpe_startup_trials; Optuna's fixed 10 leaves small studies unguided)
    startup = tpe_startup_trials(plan.trials, len(study_seed_points(plan)))
    samplers = {
        # multivariate + group: TPE that models the per-architecture (conditional) parameters jointly
        "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                                       n_startup_trials=startup),
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
    from study.optuna_storage import open_storage
    from study.recovery import ResumableOptunaSearch  # OptunaSearch that survives a killed driver

    metric: str | list[str] = R.VAL_FID
    mode: str | list[str] = "min"
    if plan.objective == "pareto":
        metric, mode = list(PARETO_METRICS), ["min"] * len(PARETO_METRICS)
    return ResumableOptunaSearch(
        space=define_by_run(plan.family, plan.space()),
        metric=metric,
        mode=mode,
        points_to_evaluate=study_seed_points(plan),
        sampler=make_sampler(plan),
        storage=open_storage(plan.study_dir),  # <study dir>/optuna.db (study/optuna_storage.py)
        study_name=plan.name,
    )


def make_scheduler(plan: StudyPlan):
    from ray.tune.schedulers import FIFOScheduler, HyperBandScheduler

    from study.recovery import ResumableASHA  # ASHA whose rungs a --resume rebuilds

    common: dict[str, Any] = dict(time_attr=R.EPOCH, metric=R.VAL_FID, mode="min", max_t=plan.max_epochs)
    if plan.scheduler == "asha":
        return ResumableASHA(grace_period=plan.grace_period, reduction_factor=plan.reduction_factor, **common)
    if plan.scheduler == "hyperband":
        return HyperBandScheduler(reduction_factor=plan.reduction_factor, **common)
    return FIFOScheduler()


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
        # one node: Ray's servers then bind to 127.0.0.1 instead of every interface (Ray reads this
        # when it is imported; main sets it first, see LOOPBACK_ENV)
        os.environ.setdefault(*LOOPBACK_ENV)
        # address="local": always a new Ray of our own; without it ray.init joins any Ray already
        # running on this machine (another study's) and refuses our num_cpus
        context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=True,
                           dashboard_host=dashboard_host, dashboard_port=dashboard_port,
                           runtime_env=code_runtime_env())
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
        raise ConfigError(f"a trial asks for {plan.cpus_per_trial:g} CPU + {gpus:g} GPU, but the largest "
                          f"node of this Ray cluster has {most_cpus:g} CPU + {most_gpus:g} GPU; lower "
                          "--cpus-per-trial / --gpus-per-trial.")
    return gpus


def trial_slots(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster runs at once (its nodes' CPUs and GPUs over a trial's)."""
    import ray

    slots = 0
    for node in (n["Resources"] for n in ray.nodes() if n.get("Alive")):
        fits = int(node.get("CPU", 0) // cpus_per_trial)
        if gpus_per_trial > 0:
            fits = min(fits, int(node.get("GPU", 0) / gpus_per_trial + 1e-9))
        slots += fits
    return max(1, slots)


def run_study(plan: StudyPlan, data, assets, resume: bool = False):
    """Run (or resume) the Tune experiment on an initialised Ray; returns the ExportedStudy, or
    None if the study was interrupted before every trial finished."""
    import ray
    from ray import tune

    from study import optuna_storage
    from study.export import export_study
    from study.trainable import TrialSetup, evaluate_stopped_trial, with_setup

    gpus = resolve_gpus(plan)
    setup = TrialSetup(data=data, assets=assets, checkpoint_epochs=checkpoint_epochs(plan),
                       threads=max(1, int(plan.cpus_per_trial)))
    trainable = tune.with_resources(with_setup(setup), {"cpu": plan.cpus_per_trial, "gpu": gpus})
    store = StudyStore(plan.study_dir)
    print(f"study {plan.name}: {plan.family}, {plan.trials} trials, up to {plan.max_epochs} epochs, "
          f"{plan.scheduler} scheduler, {plan.sampler} sampler, objective {plan.objective}, "
          f"{plan.cpus_per_trial:g} CPU + {gpus:g} GPU per trial -> {plan.study_dir}", flush=True)
    if resume:
        optuna_storage.fetch(plan.study_dir)  # the restored searcher reopens this file
        tuner = tune.Tuner.restore(store.uri, trainable=trainable, resume_unfinished=True,
                                   resume_errored=False)
    else:
        store.write_bytes(store.path(R.STUDY_JSON), plan.to_json().encode())
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=make_searcher(plan), scheduler=make_scheduler(plan),
                                        num_samples=plan.trials, trial_dirname_creator=trial_dirname,
                                        # one worker process per concurrent slot, not per trial: no
                                        # process start, torch import and actor set-up per trial; with
                                        # a searcher Tune keeps 1 trial pending unless told the slots,
                                        # and a reused actor then takes it: every slot must be asked for
                                        reuse_actors=True,
                                        max_concurrent_trials=trial_slots(plan.cpus_per_trial, gpus)),
            run_config=tune.RunConfig(
                name=plan.name,
                storage_path=plan.storage_path,
                failure_config=tune.FailureConfig(max_failures=plan.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=plan.keep_checkpoints),
                sync_config=tune.SyncConfig(sync_artifacts=True),  # trial files -> trial directory
            ),
        )
    handler = signal.getsignal(signal.SIGINT)
    try:
        results = tuner.fit()
    finally:
        optuna_storage.publish(plan.study_dir)  # a URI study's database into its study directory
    interrupted = tune_was_interrupted(handler)
    signal.signal(signal.SIGINT, handler)
    # the in-memory statuses: the saved experiment state can lag behind (HyperBand leaves
    # trials it stopped while paused marked PAUSED on disk); Ctrl-C marks the running trials
    # TERMINATED in memory, so the interrupt is checked too
    if interrupted or results.num_terminated + results.num_errors < plan.trials:
        return None

    setup_ref = ray.put(setup)
    evaluate = ray.remote(evaluate_stopped_trial).options(num_cpus=plan.cpus_per_trial, num_gpus=gpus)

    def evaluate_stopped(checkpoints):
        print(f"evaluating {len(checkpoints)} early-stopped trial(s) on the test split", flush=True)
        return ray.get([evaluate.remote(c, setup_ref) for c in checkpoints])

    ended = [results[i] for i in range(len(results))]
    errored = {posixpath.basename(r.path) for r in ended if r.error is not None}
    return export_study(plan.study_dir, plan.name, seed_configs(plan.family, plan.space()),
                        evaluate_stopped, errored=errored)


def tune_was_interrupted(handler_before) -> bool:
    """Whether Ctrl-C ended Tuner.fit: Tune's SIGINT handler (ray/tune/tune.py) puts the previous
    handler back when it fires, and only then (it installs itself only on the main thread)."""
    if threading.current_thread() is not threading.main_thread() or os.getenv("TUNE_DISABLE_SIGINT_HANDLER",
                                                                             "0") != "0":
        return False
    return signal.getsignal(signal.SIGINT) is handler_before


def wants_inception(plan: StudyPlan) -> bool:
    """--inception final, or left out on a cluster with a GPU (needs the initialised Ray)."""
    import ray

    if plan.inception is not None:
        return plan.inception == "final" and plan.eval_samples > 0
    return plan.eval_samples > 0 and ray.cluster_resources().get("GPU", 0) > 0


def run_inception(plan: StudyPlan, data) -> None:
    """Inception FID of the chosen trials (study/inception.py: score_study), as one Ray task on a GPU
    when the cluster has one, written into trials.parquet (and replicates.parquet)."""
    import ray

    from study.inception import score_study

    gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    print(f"Inception FID ({plan.inception_images} generated vs test images) of the chosen trials",
          flush=True)
    task = ray.remote(score_study).options(num_cpus=plan.cpus_per_trial, num_gpus=gpus)
    scored = ray.get(task.remote(plan.study_dir, data.test.images, plan.inception_images))
    for table, values in scored.items():
        print(f"  {table}: " + ", ".join(f"{trial} {fid:.2f}" for trial, fid in values.items()), flush=True)


def trial_dirname(trial) -> str:
    """trial_0001_<id>: creation order (Tune's experiment tag starts with the trial counter), so
    the seed configurations' trials sort first."""
    counter = str(trial.experiment_tag).split("_", 1)[0]
    return f"trial_{counter.zfill(4)}_{trial.trial_id}" if counter.isdigit() else f"trial_{trial.trial_id}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.address:
        os.environ.setdefault(*LOOPBACK_ENV)  # before anything imports Ray, see LOOPBACK_ENV
    try:
        check_storage(args.storage_path)
        if args.resume:
            plan = load_resume_plan(args)
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
        if not args.address:
            check_dashboard_port(args.dashboard_host, args.dashboard_port)
            if args.num_cpus is not None and args.num_cpus < plan.cpus_per_trial:
                raise ConfigError(f"--num-cpus {args.num_cpus}: the local Ray needs at least "
                                  f"--cpus-per-trial ({plan.cpus_per_trial:g}) CPUs to run one trial.")
        if args.replicate_top is not None:
            from study.replicate import validate as validate_replicates

            validate_replicates(args.replicate_top, args.replicate_seeds, None, flag="--replicate-")
        # last check: one launcher per study (a second one, or a --resume while it runs, is refused)
        lock = None if is_uri(plan.storage_path) else StudyLock.acquire(plan.storage_path, plan.name)
    except (ConfigError, DataNotFoundError, StudyLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return R.EXIT_BAD_INPUT

    import ray

    from study.data import load_splits
    from study.metrics import prepare_evaluation
    from study.recovery import reap_stale_ray, record_local_ray
    from study.train import pick_device

    if args.resume:
        print(f"resuming study {plan.name} with the settings it started with ({R.STUDY_JSON}); "
              "other study flags are ignored", flush=True)
    data = load_splits(plan.data_dir, train_subset=plan.train_subset, download=False)
    if args.resume and (reaped := reap_stale_ray(StudyStore(plan.study_dir))):
        print(f"ended {len(reaped)} leftover process(es) of the Ray that the interrupted launcher started",
              flush=True)
    started = start_ray(args.address, args.num_cpus, args.dashboard_host, args.dashboard_port)
    try:
        if started and not args.address:
            record_local_ray(StudyStore(plan.study_dir))
        assets = None
        if plan.eval_samples > 0:  # the feature network and real statistics, computed once
            assets = prepare_evaluation(data, pick_device(), iw_images=plan.iw_images,
                                        prdc_images=plan.eval_samples)
        began = time.perf_counter()
        exported = run_study(plan, data, assets, resume=args.resume)
        wall = time.perf_counter() - began
        replicated = None
        if exported is not None and args.replicate_top is not None:
            from study.replicate import run_replicates

            replicated = run_replicates(plan.study_dir, args.replicate_top, args.replicate_seeds, data=data,
                                        assets=assets)
        if exported is not None and wants_inception(plan):  # after the replicates: it scores them too
            run_inception(plan, data)
    except KeyboardInterrupt:
        exported, wall = None, 0.0
    except ConfigError as exc:  # resources no node has: found once Ray is up, before any trial
        print(f"error: {exc}", file=sys.stderr)
        return R.EXIT_BAD_INPUT
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
    reasons = exported.trials[R.STOP_REASON].value_counts().items()
    print(f"\nstudy {plan.name} finished in {wall:.1f} s: {len(exported.trials)} trials, "
          + ", ".join(f"{n} {reason}" for reason, n in reasons))
    from study.export import summary_table

    print(summary_table(exported.trials))
    if exported.best_trial_id is not None:
        print(f"best trial {exported.best_trial_id}; its samples: {plan.study_dir}/{R.BEST_SAMPLES_FILE}")
    print(f"tables: {plan.study_dir}/{R.TRIALS_FILE}, {plan.study_dir}/{R.HISTORY_FILE}")
    if args.replicate_top is not None:
        from study.replicate import summary_table as replicate_table

        if replicated is None:
            print(f"the replicates were interrupted; continue them with\n  python -m study.replicate "
                  f"{plan.study_dir} --top {args.replicate_top} --seeds {args.replicate_seeds}",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        print(f"replicates: {plan.study_dir}/{R.REPLICATES_FILE}\n{replicate_table(replicated)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
