"""Replicated configurations for the search lab's tables (issue 28, item 1): re-train the table's
best and some random configurations with new seeds, to the last epoch, so that the surrogate's seed
noise (benchmarks/lab_surrogate.py, `seed_noise`) is measured across the quality range and not on the
two seed configurations alone.

    python benchmarks/lab_replicates.py --tables benchmarks/results/lab/tables --family vae \
        --runs-dir ../lab-runs [--best 20] [--random 10] [--seeds 300 301] [--gpus-per-trial G]

Picks, on the table's final-epoch validation FID (mean over the runs of a configuration; the seed
configurations, already trained with one seed per chunk, left out): the `--best` lowest and `--random`
others drawn at random (seed 0), and trains each with every `--seeds` seed through the launcher's own
study setup and the one runner (study/engine/runner.py FixedTrials: FIFO, to the last epoch, resumable:
run the same command again after an interruption). Writes the tables' folder
`<tables>/<family>-replicates/` as one more launcher-like study (study.json, trials.parquet,
history.parquet), which `benchmarks/lab.py --studies <tables>` reads with the chunks: the lab's
table then holds those configurations with 1 + len(--seeds) seeds.

The table keeps what has ended even when the run does not: `--export-finished` (while the run goes on,
or after it was stopped) writes the runs that have ended so far into the tables' folder, merged with the
ones already there, so a session can commit them; a later run whose Ray experiment is gone (a new
machine, a lost runs folder) trains only the configuration-seed pairs the tables' folder lacks, and its
export keeps the ones committed before. A run that reached its last epoch or diverged has ended; one
that errored has not, and runs again.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search_spaces import train_config  # noqa: E402
from study import results as R  # noqa: E402
from study.engine.cluster import ray_session  # noqa: E402
from study.engine.plan import StudyPlan  # noqa: E402
from study.engine.runner import FixedTrials, Rows, Run, run_trials  # noqa: E402
from study.engine.study_run import study_setup_options  # noqa: E402
from study.engine.trial_tables import (  # noqa: E402
    experiment_trials,
    has_experiment_state,
    trial_rows,
    trials_frame,
)
from study.store import StudyStore  # noqa: E402

NAME = "{family}-replicates"
DEFAULT_SEEDS = (300, 301)  # the chunks use sampler seeds 100-107 (VAE) and 200-203 (GAN)
PICK_SEED = 0


def pick(trials: pd.DataFrame, best: int, random: int, seed: int = PICK_SEED) -> pd.DataFrame:
    """The configurations to replicate: one row each (config_json without the seed, its mean final
    validation FID), the `best` lowest first, then `random` others at random; seed configurations and
    runs without a finite final FID left out."""
    frame = trials[~trials[R.SEED_CONFIG].astype(bool)].copy()
    frame = frame[np.isfinite(frame[R.FINAL_VAL_FID].astype(float))]
    frame["key"] = [json.dumps({k: v for k, v in json.loads(c).items() if k != "seed"}, sort_keys=True)
                    for c in frame[R.CONFIG_JSON]]
    per_config = frame.groupby("key", sort=False)[R.FINAL_VAL_FID].mean().rename("mean_final_fid")
    per_config = per_config.reset_index().sort_values(["mean_final_fid", "key"]).reset_index(drop=True)
    top = per_config.iloc[:best]
    rest = per_config.iloc[best:]
    drawn = rest.sample(n=min(random, len(rest)), random_state=seed) if random else rest.iloc[:0]
    return pd.concat([top.assign(picked="best"), drawn.assign(picked="random")], ignore_index=True)


def ended(trials: pd.DataFrame) -> pd.DataFrame:
    """The runs of a replicates table that have ended: reached their last epoch or diverged."""
    if trials.empty:
        return trials
    return trials[trials[R.STOP_REASON].isin([R.STOP_COMPLETED, R.STOP_DIVERGED])]


def still_to_run(configs: list[dict], done: pd.DataFrame) -> list[dict]:
    """The configurations (with their seed) of `configs` that no ended run of `done` trained."""
    have = set(ended(done)[R.CONFIG_JSON]) if not done.empty else set()
    return [c for c in configs if train_config(c).to_json() not in have]


def merge_runs(before: tuple[pd.DataFrame, pd.DataFrame], now: tuple[pd.DataFrame, pd.DataFrame]
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, history) of the ended runs of both tables, one row per configuration and seed (the later
    table's where both have it), each run's history with it."""
    trials = pd.concat([ended(before[0]), ended(now[0])], ignore_index=True)
    if trials.empty:
        return trials_frame([]), pd.DataFrame()
    trials = trials.drop_duplicates(R.CONFIG_JSON, keep="last").reset_index(drop=True)
    runs = set(zip(trials[R.STUDY], trials[R.TRIAL_ID], strict=True))
    history = pd.concat([before[1], now[1]], ignore_index=True)
    if not history.empty:
        keep = [(s, t) in runs for s, t in zip(history[R.STUDY], history[R.TRIAL_ID], strict=True)]
        history = history[keep].drop_duplicates([R.STUDY, R.TRIAL_ID, R.EPOCH], keep="last")
    return trials_frame(trials.to_dict("records")), history.reset_index(drop=True)


def read_runs(store: StudyStore) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, history) of a replicates table written before (empty frames if none)."""
    if not store.has(R.TRIALS_FILE):
        return pd.DataFrame(), pd.DataFrame()
    return store.read_table(R.TRIALS_FILE), store.read_table(R.HISTORY_FILE)


def ended_in_experiment(runs: StudyStore, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, history) of the runs of the Ray experiment in `runs` that have written their summary."""
    trials = [t for t in experiment_trials(runs) if runs.exists(f"{t.path}/{R.SUMMARY_JSON}")]
    rows, history = trial_rows(runs, name, trials, errored=set())
    return trials_frame(rows), pd.DataFrame(history)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", required=True, help="folder of the family's chunk studies")
    parser.add_argument("--family", required=True, choices=("gan", "vae"))
    parser.add_argument("--runs-dir", required=True, help="where the Ray experiment is written (resumable)")
    parser.add_argument("--best", type=int, default=20)
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--gpus-per-trial", type=float, default=None)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--address", default=None)
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dry-run", action="store_true", help="print the picked configurations only")
    parser.add_argument("--export-finished", action="store_true",
                        help="train nothing: write the runs that have ended so far into the tables' folder")
    args = parser.parse_args(argv)

    tables = Path(args.tables)
    name = NAME.format(family=args.family)
    chunks = sorted(d for d in tables.glob(f"{args.family}-random-s*") if (d / R.TRIALS_FILE).exists())
    if not chunks:
        print(f"error: no {args.family}-random-s* study with {R.TRIALS_FILE} in {tables}; build the "
              "table first (benchmarks/lab_tables.sh)", file=sys.stderr)
        return 2
    if any(s in {json.loads((d / R.STUDY_JSON).read_text())["seed"] for d in chunks} for s in args.seeds):
        print("error: --seeds overlap the chunks' seeds; pick seeds no chunk used", file=sys.stderr)
        return 2
    trials = pd.concat([pd.read_parquet(d / R.TRIALS_FILE) for d in chunks], ignore_index=True)
    picked = pick(trials, args.best, args.random)
    print(f"{name}: {len(picked)} configurations of {len(chunks)} chunks "
          f"({(picked.picked == 'best').sum()} best, {(picked.picked == 'random').sum()} random; final "
          f"validation FID {picked.mean_final_fid.min():.1f}-{picked.mean_final_fid.max():.1f}) x seeds "
          f"{args.seeds} = {len(picked) * len(args.seeds)} runs", flush=True)
    if args.dry_run:
        return 0

    base = StudyPlan.from_json((chunks[0] / R.STUDY_JSON).read_text())
    runs_dir = str(Path(args.runs_dir).resolve())
    data_dir = args.data_dir or base.data_dir
    plan = replace(base, name=name, storage_path=runs_dir, data_dir=data_dir, seed=args.seeds[0],
                   gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial)
    configs = []
    for key in picked["key"]:
        for seed in args.seeds:
            configs.append({**json.loads(key), "seed": seed})

    out = StudyStore(tables / name)  # the tables' folder: one more launcher-like study
    runs = StudyStore(Path(runs_dir) / name)
    restoring = has_experiment_state(runs)

    def write(trials: pd.DataFrame, history: pd.DataFrame, gpus: float | None) -> int:
        out.write_table(trials, R.TRIALS_FILE)
        out.write_table(history, R.HISTORY_FILE)
        out.write_text(R.STUDY_JSON, replace(plan, gpus_per_trial=gpus).to_json())
        picked.to_csv(Path(out.root) / "picked.csv", index=False)
        return len(trials)

    if args.export_finished:
        if not restoring:
            print(f"error: {runs} holds no Ray experiment of {name}; check --runs-dir", file=sys.stderr)
            return 2
        before = read_runs(out)
        trials, history = merge_runs(before, ended_in_experiment(runs, name))
        if trials.empty:
            print(f"{name}: no run has ended yet; nothing written", flush=True)
            return 0
        written = write(trials, history, plan.gpus_per_trial)
        print(f"{name}: {written} of {len(configs)} runs in {out} ({len(ended(before[0]))} before, "
              f"{len(still_to_run(configs, trials))} still to run)", flush=True)
        return 0
    if not restoring:  # a new experiment: only what the tables' folder lacks
        configs = still_to_run(configs, read_runs(out)[0])
        if not configs:
            print(f"{name}: every run is in {out} already", flush=True)
            return 0
        print(f"{name}: {len(configs)} runs to train (the others are in {out})", flush=True)

    def export(run: Run, rows: Rows) -> int:
        trials, history = merge_runs(read_runs(out), (trials_frame(rows.trials), pd.DataFrame(rows.history)))
        return write(trials, history, run.gpus)

    with ray_session(args.address, args.num_cpus):
        # the launcher's study setup (checkpoints at the scheduler's rungs, no likelihood in the trials)
        written = run_trials(plan, FixedTrials(configs, "replicate"), export, expect_gpus=plan.expect_gpus,
                             setup_options=study_setup_options(plan))
    if written is None:
        print(f"{name}: interrupted; run the same command again to continue", file=sys.stderr)
        return 1
    print(f"{name}: {written} runs -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
