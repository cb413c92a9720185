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
import os
import sys

from models.config import AMP_MODES, AMP_NONE, FAMILIES
from study.data import DATA_DIR_ENV
from study.engine.command import Command, run_command
from study.engine.lock import StudyLock, UriStudyLock
from study.engine.plan import (
    DEFAULT_SAMPLERS,
    INCEPTION_CHOICES,
    INCEPTION_IMAGES,
    OBJECTIVES,
    PARETO_SAMPLER,
    SAMPLERS,
    SCHEDULERS,
    STOP_SIGNALS,
    SearchFlags,
    StudyPlan,
    resolve_plan,
)
from study.engine.preflight import DEFAULT_DASHBOARD_PORT, LOOPBACK_ENV, LOOPBACK_HOST, TRACKERS
from study.engine.spec import PRESETS, RaySettings, choose_preset, preset_text
from study.launcher import BOTH, both  # both imports no Ray itself; each study does, after the checks
from study.launcher.launch_plan import LaunchSpec, checked_plan
from study.repeat import REPEAT_THREADS


def build_parser() -> argparse.ArgumentParser:  # declarative: one add_argument per flag, over 60 lines
    p = argparse.ArgumentParser(
        prog="python -m study.launch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a distributed hyperparameter study of one model family (GAN or VAE) on "
        "MNIST with Ray Tune and Optuna. The seed studies' configurations run first; ASHA stops "
        "poor trials early on validation FID. Results: <storage-path>/<name>/trials.parquet "
        "(one row per trial), history.parquet (one row per trial-epoch), best_samples.png, and "
        "Ray's experiment (TensorBoard logs with sample grids, checkpoints).",
        epilog="presets (flags you give override them):\n" + "\n".join(
            f"  {name:<6} " + preset_text(name) for name in PRESETS
        ) + "\n\ncluster: start `ray start --head` on one machine and `ray start --address HEAD:6379` "
        "on the others, then run with --address HEAD:6379 and a --storage-path every node can "
        "reach (NFS path or s3://...).",
    )
    p.add_argument("--family", required=True, choices=(*FAMILIES, BOTH),
                   help="model family to study; both: a GAN and a VAE study with the same protocol, the "
                   "replicates of each one's top configurations and the report (study/launcher/both.py)")
    p.add_argument("--trials", type=int, help="number of trials, seed configurations included (default 16)")
    p.add_argument("--max-epochs", type=int, help="epochs of a trial that is never stopped (default 20)")
    p.add_argument("--grace-period", type=int,
                   help="epochs before ASHA/HyperBand may stop a trial (default 2)")
    p.add_argument("--reduction-factor", type=float, help="ASHA/HyperBand halving rate (default 3)")
    p.add_argument("--scheduler", choices=SCHEDULERS,
                   help="trial scheduler on validation FID: asha (default), hyperband (pauses and "
                   "resumes trials from per-epoch checkpoints) or none (every trial runs all epochs; "
                   "the default of --objective pareto, whose front needs the small models ASHA stops)")
    p.add_argument("--sampler", choices=SAMPLERS,
                   help="Optuna sampler (default: "
                   + ", ".join(f"{family} {name}" for family, name in DEFAULT_SAMPLERS.items())
                   + ": the 3-repetition benchmark did not separate TPE from random and TPE's guided "
                   "trials failed far less often; the search lab decides (docs/search.md); "
                   f"--objective pareto: {PARETO_SAMPLER}; "
                   "nsga2 also suits pareto)")
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
    p.add_argument("--suite-every", "--eval-every", type=int, metavar="N",
                   help="the whole validation suite (KID, PRDC besides FID, IS, class coverage) every N "
                   "epochs, e.g. 1 for TensorBoard curves of every metric (default: a trial's last epoch "
                   "only, and a stopped trial's stop epoch; the scheduler's FID: every epoch)")
    p.add_argument("--iw-images", type=int,
                   help="binarized test images behind a VAE's importance-weighted NLL, k=500 decoder passes "
                        "each (default: all 10,000; --quick 500)")
    p.add_argument("--checkpoint-every", type=int, default=10,
                   help="epochs between checkpoints; scheduler rungs and the last epoch always get one")
    p.add_argument("--data-dir",
                   help=f"directory holding MNIST/raw/ (default: ${DATA_DIR_ENV}, else a download cache)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0,
                   help=f"CPUs reserved per trial (a CPU trial runs on {REPEAT_THREADS} torch thread(s) "
                   "whatever this is: study/repeat.py)")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPUs per trial, fractional to share one (0.25 packs four trials on a GPU); "
                   "default 1 when the cluster has GPUs, else 0")
    p.add_argument("--expect-gpus", type=int,
                   help="an autoscaling cluster whose GPU workers start from zero: the GPUs it will have; "
                   "GPUs per trial and concurrent trials are sized for them instead of the nodes alive "
                   "at launch (default: the live nodes, a static cluster)")
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
    p.add_argument("--dashboard-host", default=LOOPBACK_HOST,
                   help="interface of the Ray dashboard of a local Ray (default 127.0.0.1; anything "
                   "else exposes it to the network, token-protected)")
    p.add_argument("--dashboard-port", type=int,
                   help=f"Ray dashboard port (default: {DEFAULT_DASHBOARD_PORT}, or the next free one when "
                   "another study's Ray has it; a port given here must be free)")
    p.add_argument("--verbose", action="store_true",
                   help="Ray's own console output (trial config boxes, status tables, logs) instead of the "
                   "study console (one line per running trial and a progress line)")
    p.add_argument("--tracker", choices=TRACKERS, action="append",
                   help="also log every trial to an experiment tracker (repeat for both): mlflow (a local "
                   "store in <study>/mlruns), wandb (Weights & Biases offline, <study>/wandb; `wandb sync` "
                   "uploads it); pip install -e '.[tracking]'")
    p.add_argument("--stop-signal", choices=tuple(STOP_SIGNALS),
                   help="what ASHA/HyperBand compare at a rung: raw, the epoch's validation FID, or best, "
                   "the trial's lowest so far (default: the preset's; benchmarks/bench_fidelity.py "
                   "measures both)")
    p.add_argument("--gan-ema", type=float, default=0.0, metavar="DECAY",
                   help="GAN only: sample and evaluate an exponential moving average of the generator's "
                   "weights with this decay, e.g. 0.99 (Yazici et al. 2019); 0 (default) is off")
    replicates = p.add_argument_group("replicates (python -m study.replicate), straight after the search")
    replicates.add_argument("--replicate-top", type=int,
                            help="then re-train the K best trials and the seed configurations with new seeds "
                            "(default: no replicates)")
    replicates.add_argument("--replicate-seeds", type=int,
                            help="new seeds per replicated configuration (default 5; --family both: 3, "
                            "smoke 2)")
    gpu = p.add_argument_group("GPU speed (they run on a CPU too)")
    gpu.add_argument("--amp", choices=AMP_MODES, default=AMP_NONE,
                     help="bf16: training steps under bfloat16 autocast (default none: fp32)")
    gpu.add_argument("--channels-last", action="store_true",
                     help="conv models' weights in channels-last memory format (faster on tensor cores)")
    gpu.add_argument("--deterministic", action="store_true",
                     help="deterministic algorithms and cuDNN/cuBLAS settings in every trial: a CUDA study "
                     "repeats exactly (slower; CPU trials always repeat)")
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


def search_flags(args: argparse.Namespace) -> SearchFlags:
    """The study flags, typed (the preset from --quick / --smoke-test)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SearchFlags) if f.name != "preset"}
    return SearchFlags(preset=choose_preset(args.quick, args.smoke_test), **given)


def spec_from_args(args: argparse.Namespace) -> LaunchSpec:
    """The launcher's one spec: the study flags, resume, replicates and the Ray settings."""
    ray = RaySettings(address=args.address, num_cpus=args.num_cpus, dashboard_host=args.dashboard_host,
                      dashboard_port=args.dashboard_port, trackers=tuple(args.tracker or ()),
                      verbose=args.verbose)
    return LaunchSpec(study=search_flags(args), resume=args.resume, replicate_top=args.replicate_top,
                      replicate_seeds=args.replicate_seeds, ray=ray)


def plan_from_args(args: argparse.Namespace) -> StudyPlan:
    """The plan of parsed flags of one family (ConfigError on anything invalid): what the tests check."""
    return resolve_plan(search_flags(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.address:
        os.environ.setdefault(*LOOPBACK_ENV)  # before anything imports Ray, see LOOPBACK_ENV
    spec = spec_from_args(args)
    if spec.study.family == BOTH:
        return both.launch_both(spec, launch_one, report)
    return launch_one(spec)


def launch_one(spec: LaunchSpec) -> int:
    """One family's study: every check first (launch_plan.checked_plan), then the pipeline on Ray
    (study/engine/command.py run_command)."""
    return run_command(lambda: checked_plan(spec), _study_command)


def _study_command(checked: tuple[LaunchSpec, StudyPlan, StudyLock | UriStudyLock]) -> Command:
    # imported only now: Ray reads LOOPBACK_ENV when it is imported, and bad input is refused before
    # without waiting for Ray and the metrics to load
    from study.launcher import pipeline

    return pipeline.study_command(*checked)


def report(argv: list[str]) -> int:
    """`python -m analysis.report ARGV` in this process: the report that ends `--family both` (commands
    may import analysis, which reads only the files a study wrote; the launcher's library may not)."""
    # imported only now: the report's tables and figures load only for --family both, after its studies
    from analysis import report as analysis_report

    return analysis_report.main(argv)


if __name__ == "__main__":
    sys.exit(main())
