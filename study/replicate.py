"""`python -m study.replicate STUDY_DIR --top K --seeds S [--epochs E]`: re-train a study's best
configurations and its seed configurations with new seeds, to their last epoch.

    python -m study.replicate results/gan-quick --top 3 --seeds 5
    python -m study.launch --family gan --quick --replicate-top 2 --replicate-seeds 3   # right after a search

What is replicated, with which seeds, and where the rows go: study/followups/replicate_run.py.
"""

from __future__ import annotations

import argparse
import sys

from study.engine.spec import RaySettings
from study.followups.followup_commands import replicate_command
from study.followups.replicate_plan import DEFAULT_SEEDS, DEFAULT_TOP


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study.replicate",
        description="Re-train a finished study's K best trials (lowest final validation FID) and its seed "
        "configurations with S new seeds each (study seed + 1 ... + S), to the last epoch, through Ray Tune "
        "with the study's resources. Writes STUDY_DIR/replicates.parquet (one row per configuration and "
        "seed). Interrupted? Run the same command again: it continues where it stopped.",
    )
    p.add_argument("study_dir", help="a finished study: results/<name> (or a URI such as s3://bucket/results/<name>)")
    p.add_argument("--top", type=int, default=DEFAULT_TOP,
                   help=f"best trials to replicate, by final validation FID (default {DEFAULT_TOP})")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                   help=f"new seeds per configuration (default {DEFAULT_SEEDS})")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the configurations' own, the study's "
                   "--max-epochs)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. HEAD:6379 or 'auto')")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray started here (default: all)")
    p.add_argument("--verbose", action="store_true",
                   help="Ray's own console output (config boxes, status tables, logs) instead of one line "
                   "per running run and a progress line")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ray = RaySettings(address=args.address, num_cpus=args.num_cpus, verbose=args.verbose)
    return replicate_command(args.study_dir, args.top, args.seeds, args.epochs, ray)


if __name__ == "__main__":
    sys.exit(main())
