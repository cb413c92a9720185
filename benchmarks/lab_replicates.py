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

from study import results as R  # noqa: E402
from study.engine.cluster import ray_session  # noqa: E402
from study.engine.plan import StudyPlan  # noqa: E402
from study.engine.runner import FixedTrials, Rows, Run, run_trials  # noqa: E402
from study.engine.study_run import study_setup_options  # noqa: E402
from study.engine.trial_tables import trials_frame  # noqa: E402
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

    def export(run: Run, rows: Rows) -> int:
        out.write_table(trials_frame(rows.trials), R.TRIALS_FILE)
        out.write_table(pd.DataFrame(rows.history), R.HISTORY_FILE)
        out.write_text(R.STUDY_JSON, replace(plan, gpus_per_trial=run.gpus).to_json())
        picked.to_csv(Path(out.root) / "picked.csv", index=False)
        return len(rows.trials)

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
