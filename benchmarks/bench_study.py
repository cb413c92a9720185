"""Wall time and outcome of whole studies: the figures issue 4 asks for.

    python benchmarks/bench_study.py --data-dir ../shared/data                # 8-trial --quick GAN and VAE
    python benchmarks/bench_study.py --data-dir D --trials 64 --families gan -- --gpus-per-trial 0.25
    python benchmarks/bench_study.py --summarize results/gan-quick results/vae-quick
    python benchmarks/bench_study.py --data-dir D --smoke-test                # seconds-long studies

Runs `python -m study.launch` once per family (one after another, so each has the machine to
itself) and prints per family: wall time of the launcher, trials by stop reason, the best
validation FID and that trial's test FID, and the best test FID of any trial.

It also prints the fixed cost per trial (issue 12): overhead_s = (study_wall_s x concurrency -
training seconds - per-epoch validation seconds - end-of-trial test evaluation seconds) / trials,
where study_wall_s is the launcher's own "finished in" time (Tune's run, stopped-trial evaluation
and export; not Ray's start-up or the real statistics), concurrency the trials that run at once
(min(trials, Ray CPUs // CPUs per trial)), and the seconds come from trials.parquet /
history.parquet (test_eval_s is printed on its own). What is left is process and actor start-up,
shipping data and assets, checkpoint, PNG and TensorBoard writes, and Tune's bookkeeping.

And the training share (issue 26): sum(train_seconds) / sum(trial_seconds), the part of what the
trials spent in the search that went into training (trial_seconds: training, validation, test
scoring, checkpoints). Beside it the share of everything the study spent on its trials, the
likelihood of the trials the report describes included (computed after the search: R.LIKELIHOOD_SECONDS,
study/results.py says why it is not in trial_seconds). A study from before trial_seconds existed gets
train / (train + validation + test scoring seconds), its recorded parts, with a printed note.

    python benchmarks/bench_study.py --data-dir D --families vae -- --scheduler none   # 8 quick trials
    python benchmarks/bench_study.py --summarize benchmarks/results/bench-search/studies/vae-random-none-rep0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from study import results as R  # noqa: E402
from study.engine.spec import choose_preset  # noqa: E402


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


class Share(NamedTuple):
    trial_s: float  # every second the trials spent in the search, summed (R.search_seconds)
    train_share: float  # sum(train_seconds) / trial_s
    exact: bool  # False: a study without trial_seconds (trial_s: its recorded training + scoring)
    likelihood_s: float  # the picked trials' likelihood after the search, summed
    study_share: float  # sum(train_seconds) / (trial_s + likelihood_s)


def training_share(trials: pd.DataFrame, history: pd.DataFrame) -> Share:
    train = float(trials[R.TRAIN_SECONDS].fillna(0).sum())
    after = float(R.after_search_seconds(trials).sum())
    exact = R.TRIAL_SECONDS in trials and bool(trials[R.TRIAL_SECONDS].notna().all())
    if exact:
        total = float(R.search_seconds(trials).sum())
    else:
        evaluation = float(history[R.EVAL_SECONDS].fillna(0).sum()) if R.EVAL_SECONDS in history else 0.0
        test = float(trials.get(R.TEST_EVAL_SECONDS, pd.Series(0.0, index=trials.index)).fillna(0).sum())
        total = train + evaluation + test
    return Share(round(total, 2), round(train / total, 3) if total else math.nan, exact, round(after, 2),
                 round(train / (total + after), 3) if total + after else math.nan)


class Overhead(NamedTuple):
    concurrency: int
    train_s: float  # training seconds of every trial, summed
    eval_s: float  # per-epoch validation seconds of every trial, summed
    test_eval_s: float  # end-of-trial test evaluation seconds of every trial, summed
    overhead_s: float  # per trial: wall x concurrency - train - eval - test eval, over trials
    in_trial_s: float  # of which inside the trainable (Tune's time_total_s): test evaluation, writes
    between_trials_s: float  # the rest: actor start-up, Tune's scheduling, the end of the study


def overhead_per_trial(study_wall_s: float, concurrency: int, trials: pd.DataFrame,
                       history: pd.DataFrame, trainable_s: float = math.nan) -> Overhead:
    """`trainable_s`: the trials' time inside the trainable, summed (Tune's time_total_s)."""
    n = len(trials)
    train = float(trials[R.TRAIN_SECONDS].fillna(0).sum())
    evaluation = float(history[R.EVAL_SECONDS].fillna(0).sum()) if R.EVAL_SECONDS in history else 0.0
    test = trials.get(R.TEST_EVAL_SECONDS, pd.Series(0.0, index=trials.index)).fillna(0)
    test_eval = float(test.sum())
    # a stopped trial's test evaluation runs after the search (a Ray task), not inside the trainable
    test_in_trainable = float(test[trials[R.STOP_REASON] != R.STOP_EARLY].sum())
    overhead = (study_wall_s * concurrency - train - evaluation - test_eval) / n
    in_trial = (trainable_s - train - evaluation - test_in_trainable) / n
    return Overhead(concurrency, round(train, 2), round(evaluation, 2), round(test_eval, 2),
                    round(overhead, 2), round(in_trial, 2), round(overhead - in_trial, 2))


def trainable_seconds(study_dir: Path, trials: pd.DataFrame) -> float:
    """Tune's time_total_s of each trial's last result (Ray's result.json), summed."""
    total = 0.0
    for trial_dir in trials[R.TRIAL_DIR]:
        if not (study_dir / trial_dir / "result.json").is_file():  # a committed study keeps its tables only
            return math.nan
        lines = (study_dir / trial_dir / "result.json").read_text().splitlines()
        total += float(json.loads(lines[-1])["time_total_s"]) if lines else math.nan
    return total


def concurrency_of(study_dir: Path, num_cpus: int) -> int:
    """Trials at once: Ray's CPUs over each trial's CPUs (GPU studies: pass --num-cpus to match)."""
    plan = json.loads((study_dir / R.STUDY_JSON).read_text())
    return max(1, min(int(plan["trials"]), int(num_cpus // float(plan["cpus_per_trial"]))))


FINISHED = re.compile(r"study \S+ finished in (\d+(?:\.\d+)?) s")


def run_study(family: str, args: argparse.Namespace, extra: list[str]) -> tuple[float, Path, float]:
    preset = choose_preset(args.quick, args.smoke_test)
    name = f"{family}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = [sys.executable, "-m", "study.launch", "--family", family, "--name", name,
               "--storage-path", args.storage_path, *(["--data-dir", args.data_dir] if args.data_dir else []),
               *(["--trials", str(args.trials)] if args.trials else []),
               *(["--smoke-test"] if args.smoke_test else ["--quick"] if args.quick else []), *extra]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    study_wall = math.nan
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:  # passed through; the launcher's own timing of the study is kept
            print(line, end="", flush=True)
            if found := FINISHED.search(line):
                study_wall = float(found.group(1))
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return time.perf_counter() - started, Path(args.storage_path) / name, study_wall


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
    p.add_argument("--study-wall", type=float,
                   help="with --summarize: the launcher's 'finished in' seconds, for the overhead figure")
    args = p.parse_args(argv)
    if args.smoke_test and "--trials" not in argv:
        args.trials = None
    if args.summarize:
        runs = [(math.nan, Path(d), args.study_wall or math.nan) for d in args.summarize]
    else:
        runs = [run_study(family, args, extra) for family in args.families]
    num_cpus = int(extra[extra.index("--num-cpus") + 1]) if "--num-cpus" in extra else os.cpu_count() or 1
    rows = []
    for wall, study_dir, study_wall in runs:
        trials = pd.read_parquet(study_dir / R.TRIALS_FILE)
        history = pd.read_parquet(study_dir / R.HISTORY_FILE)
        figures = study_figures(trials)
        overhead = overhead_per_trial(study_wall, concurrency_of(study_dir, num_cpus), trials, history,
                                      trainable_seconds(study_dir, trials))
        share = training_share(trials, history)
        if not share.exact:
            print(f"note: {study_dir.name} has no {R.TRIAL_SECONDS} (written before the column existed): "
                  "its trial_s is its training + validation + test scoring seconds", flush=True)
        rows.append({"wall_s": round(wall, 1), "study_wall_s": study_wall, **figures._asdict(),
                     **overhead._asdict(), **share._asdict()})
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for row in rows:
        print(f"training share of {row['study']}: {row['train_s']:.0f} s training of {row['trial_s']:.0f} s "
              f"the trials spent in the search = {row['train_share']:.2f}; with the likelihood of the "
              f"trials the report describes ({row['likelihood_s']:.0f} s after the search) "
              f"{row['study_share']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
