"""`python -m study.reproduce --seed-study 1|2`: re-run a seed study's own experiment.

    python -m study.reproduce --seed-study 1                    # gan/dcgan + vae/conv at 10, 20, 50 epochs
    python -m study.reproduce --seed-study 2 --quick            # gan/mlp + vae/mlp, CPU-sized
    python -m study.reproduce --seed-study 2 --epochs 10,50 --seeds 5

The protocol, the presets and what is written: study/followups/reproduce_plan.py; the run:
study/followups/reproduce_run.py, through the one runner (study/engine/runner.py).
"""

from __future__ import annotations

import argparse
import sys

from study.engine.spec import PRESETS, RaySettings, choose_preset, reproduction_preset
from study.followups.followup_commands import reproduce_command
from study.followups.reproduce_plan import (
    DEFAULT_SEEDS,
    QUICK_EPOCH_DIVISOR,
    SEED_STUDY_ARCHS,
    ReproducePlan,
    plan_reproduction,
)
from study.repeat import REPEAT_THREADS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study.reproduce",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Re-run a seed study's own experiment: its two configurations at its printed epoch "
        "counts, with S seeds, through Ray Tune. Seed study 1: gan/dcgan + vae/conv at 10, 20, 50 epochs; "
        "seed study 2: gan/mlp + vae/mlp at 10, 50, 200. Each (configuration, seed) trains once to the "
        "largest count and is tested at every count. Writes <storage-path>/<name>/ (trials.parquet, "
        "history.parquet, study.json with reproduces_seed_study), which analysis.report shows as "
        "'reproduced' beside the published numbers. Interrupted? Run the same command again.",
        epilog="presets:\n" + "\n".join(
            f"  {name:<6} " + ", ".join(f"{k}={v}" for k, v in reproduction_preset(name).items())
            for name in PRESETS)
        + f"\n  quick also divides the printed epoch counts by {QUICK_EPOCH_DIVISOR} (rounded up).",
    )
    p.add_argument("--seed-study", type=int, required=True, choices=sorted(SEED_STUDY_ARCHS),
                   help="which seed study: 1 (TensorFlow DCGAN vs conv VAE) or 2 (PyTorch MLP GAN vs MLP "
                   "VAE)")
    p.add_argument("--epochs", help="epoch counts to record, comma-separated (default: the printed ones)")
    p.add_argument("--seeds", type=int, help=f"seeds per configuration, 0 ... S-1 (default {DEFAULT_SEEDS})")
    p.add_argument("--name", help="study name (default seed-study-N, with -quick / -smoke for those presets)")
    p.add_argument("--storage-path", default="results",
                   help="where the study directory goes: a local directory (default ./results) or a URI")
    p.add_argument("--data-dir", help="directory holding MNIST/raw/ (default: $STUDY_DATA_DIR, else a cache)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0,
                   help=f"CPUs reserved per run (a CPU run trains on {REPEAT_THREADS} torch thread(s) "
                   "whatever this is: study/repeat.py)")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per run (default 1 when the cluster has GPUs)")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a crashed run from its checkpoint")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. HEAD:6379 or 'auto')")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray started here (default: all)")
    p.add_argument("--verbose", action="store_true",
                   help="Ray's own console output (config boxes, status tables, logs) instead of one line "
                   "per running run and a progress line")
    presets = p.add_mutually_exclusive_group()
    presets.add_argument("--quick", action="store_true",
                         help="CPU-sized: minutes on a laptop, numbers not comparable (see presets)")
    presets.add_argument("--smoke-test", action="store_true", help="the seconds-long run the tests use")
    return p


def plan_from_args(args: argparse.Namespace) -> ReproducePlan:
    """The reproduction's one spec from the parsed flags (ConfigError on anything invalid)."""
    return plan_reproduction(seed_study=args.seed_study, preset=choose_preset(args.quick, args.smoke_test),
                             epochs=args.epochs, seeds=args.seeds, name=args.name,
                             storage_path=args.storage_path, data_dir=args.data_dir,
                             cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                             max_failures=args.max_failures)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ray = RaySettings(address=args.address, num_cpus=args.num_cpus, verbose=args.verbose)
    return reproduce_command(lambda: plan_from_args(args), ray)


if __name__ == "__main__":
    sys.exit(main())
