"""Wall time and outcome of whole studies: the figures issue 4 asks for.

    python benchmarks/bench_study.py --data-dir ../shared/data                # 8-trial --quick GAN and VAE
    python benchmarks/bench_study.py --data-dir D --trials 64 --families gan -- --gpus-per-trial 0.25
    python benchmarks/bench_study.py --summarize results/gan-quick results/vae-quick
    python benchmarks/bench_study.py --data-dir D --smoke-test                # seconds-long studies

Runs `python -m study.launch` once per family (one after another, so each has the machine to
itself) and prints per family: wall time of the launcher, trials by stop reason, the best
validation FID and that trial's test FID, and the best test FID of any trial.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from study import results as R  # noqa: E402


class StudyFigures(NamedTuple):
    study: str
    family: str
    trials: int
    early_stopped: int
    completed: int
    diverged: int
    errors: int
    best_val_fid: float  # the model-selection number: the selected trial's final validation FID
    best_trial_test_fid: float  # test FID of that trial
    best_test_fid: float  # lowest test FID of any trial


def study_figures(trials: pd.DataFrame) -> StudyFigures:
    counts = trials[R.STOP_REASON].value_counts()
    best = R.best_trial(trials)
    return StudyFigures(
        study=str(trials[R.STUDY].iloc[0]), family=str(trials[R.FAMILY].iloc[0]), trials=len(trials),
        early_stopped=int(counts.get(R.STOP_EARLY, 0)), completed=int(counts.get(R.STOP_COMPLETED, 0)),
        diverged=int(counts.get(R.STOP_DIVERGED, 0)), errors=int(counts.get(R.STOP_ERROR, 0)),
        best_val_fid=float(best[R.SELECTION_METRIC]) if best is not None else math.nan,
        best_trial_test_fid=float(best[R.TEST_FID]) if best is not None else math.nan,
        best_test_fid=float(trials[R.TEST_FID].min()),
    )


def run_study(family: str, args: argparse.Namespace, extra: list[str]) -> tuple[float, Path]:
    preset = "smoke" if args.smoke_test else "quick" if args.quick else "full"
    name = f"{family}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = [sys.executable, "-m", "study.launch", "--family", family, "--name", name,
               "--storage-path", args.storage_path, *(["--data-dir", args.data_dir] if args.data_dir else []),
               *(["--trials", str(args.trials)] if args.trials else []),
               *(["--smoke-test"] if args.smoke_test else ["--quick"] if args.quick else []), *extra]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    return time.perf_counter() - started, Path(args.storage_path) / name


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="flags after -- go to python -m study.launch unchanged")
    p.add_argument("--families", nargs="+", default=["gan", "vae"])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--data-dir")
    p.add_argument("--storage-path", default=str(ROOT / "results"))
    p.add_argument("--full", dest="quick", action="store_false", help="the full preset instead of --quick")
    p.add_argument("--smoke-test", action="store_true",
                   help="the launcher's smoke preset (4 trials, seconds each)")
    p.add_argument("--summarize", nargs="+", metavar="STUDY_DIR",
                   help="only print the figures of finished studies")
    args = p.parse_args(argv)
    if args.smoke_test:
        args.trials = None
    if args.summarize:
        runs = [(math.nan, Path(d)) for d in args.summarize]
    else:
        runs = [run_study(family, args, extra) for family in args.families]
    rows = []
    for wall, study_dir in runs:
        figures = study_figures(pd.read_parquet(study_dir / R.TRIALS_FILE))
        rows.append({"wall_s": round(wall, 1), **figures._asdict()})
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
