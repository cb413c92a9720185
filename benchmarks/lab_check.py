"""The search lab's reality check (issue 28, item 6): do real studies land inside the simulator's range
for their arm?

    python benchmarks/lab_check.py --lab-dir benchmarks/results/lab --tables benchmarks/results/lab/tables \
        --real benchmarks/results/lab/reality --workers 2 [--out benchmarks/results/lab/reality_check.csv]

For each real study (made by benchmarks/lab_reality.sh: family, sampler, scheduler, trials and seed
read from its study.json) it takes the trial the product picks (`study.results.best_trial`: lowest
final validation FID, a stopped trial at the epoch it stopped) and compares, with the lab's repetitions
of the same arm at `--workers` workers:
- the pick's observed final validation FID with the 5-95 % range of the simulated picks' observed FID;
- the surrogate's noise-free FID of the real pick's configuration at its last epoch with the range of
  the simulated picks' noise-free FID (the lab's `pick_fid`);
- the study's compute (its search seconds: sum of `trial_seconds`, `study.results.search_seconds`) with
  the range of the simulated compute.
It prints one row per real study, a line per seed pairing TPE's pick with random's, and writes --out.
A real study's seconds come from its own machine: they compare with the table's only when both ran
on the same kind of machine at a similar load (say so in the note).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.lab import study_dirs  # noqa: E402
from benchmarks.lab_protocol import done_reps  # noqa: E402
from benchmarks.lab_sim import scheduler_arm  # noqa: E402
from benchmarks.lab_surrogate import Surrogate, load_table  # noqa: E402
from search_spaces.encode import encode  # noqa: E402
from study import results as R  # noqa: E402

RANGE = (0.05, 0.95)
OUT = "reality_check.csv"


def inside(value: float, low: float, high: float) -> bool:
    return bool(low <= value <= high)


def check_rows(reps: pd.DataFrame, real_dirs: list[Path], surrogates: dict[str, tuple], workers: int
               ) -> pd.DataFrame:
    """One row per real study: its pick and compute against the lab's range for its arm."""
    rows = []
    for directory in real_dirs:
        plan = json.loads((directory / R.STUDY_JSON).read_text())
        trials = pd.read_parquet(directory / R.TRIALS_FILE)
        family, scheduler = plan["family"], scheduler_arm(plan)
        arm = reps[(reps.family == family) & (reps.trials == plan["trials"]) & (reps.workers == workers)
                   & (reps.sampler == plan["sampler"]) & (reps.scheduler == scheduler)]
        pick = R.best_trial(trials)
        row = dict(study=plan["name"], family=family, sampler=plan["sampler"], scheduler=scheduler,
                   trials=plan["trials"], workers=workers, seed=plan["seed"], lab_reps=len(arm),
                   real_trials=len(trials), real_stopped=int((trials[R.STOP_REASON] == R.STOP_EARLY).sum()))
        if pick is None or arm.empty:
            rows.append(row)
            continue
        surrogate, features = surrogates[family]
        config = {k: v for k, v in json.loads(pick[R.CONFIG_JSON]).items() if k != "seed"}
        epochs = int(pick[R.EPOCHS_RUN])
        predicted = float(np.exp(surrogate.curves(encode(features, config))[0][epochs - 1]))
        compute = float(R.search_seconds(trials).sum()) if R.TRIAL_SECONDS in trials else float("nan")
        for name, value, column in (("observed", float(pick[R.FINAL_VAL_FID]), "pick_observed"),
                                    ("true", predicted, "pick_true"),
                                    ("compute", compute, "compute_s")):
            low, high = arm[column].quantile(list(RANGE))
            row |= {f"real_{name}": value, f"lab_{name}_lo": float(low), f"lab_{name}_hi": float(high),
                    f"lab_{name}_median": float(arm[column].median()),
                    f"{name}_inside": inside(value, low, high)}
        row["real_pick_epochs"] = epochs
        row["real_test"] = float(pick[R.TEST_FID])  # what describes the pick (the lab has no test FID)
        rows.append(row)
    return pd.DataFrame(rows)


def pair_lines(frame: pd.DataFrame, reps: pd.DataFrame) -> list[str]:
    """Per family and seed: TPE's real pick against random's, beside the lab's P(TPE's pick beats
    random's) on the same arms; studies of one sampler at several trial counts or schedules (the quick
    preset's design, benchmarks/lab_design.sh) get design_lines instead."""
    lines = []
    for (family, seed), group in frame.groupby(["family", "seed"]):
        by = group.set_index("sampler")
        if by.index.has_duplicates:
            continue
        if not {"tpe", "random"} <= set(by.index) or "real_observed" not in by:
            continue
        tpe, rnd = by.loc["tpe"], by.loc["random"]
        arm = reps[(reps.family == family) & (reps.trials == tpe.trials) & (reps.workers == tpe.workers)
                   & (reps.scheduler == tpe.scheduler)]
        wide = arm.pivot_table(index="rep", columns="sampler", values="pick_true")
        p = float((wide["tpe"] < wide["random"]).mean()) if {"tpe", "random"} <= set(wide) else float("nan")
        lines.append(
            f"{family} seed {seed}: real picks TPE {tpe.real_observed:.1f} vs random {rnd.real_observed:.1f} "
            f"(observed final val FID; surrogate's noise-free {tpe.real_true:.1f} vs {rnd.real_true:.1f}): "
            f"{'TPE' if tpe.real_observed < rnd.real_observed else 'random'} better; the lab's "
            f"P(TPE's pick beats random's) = {p:.2f} over {len(wide)} paired repetitions")
    return lines


def design_lines(frame: pd.DataFrame) -> list[str]:
    """Per family, the real studies of one sampler grouped by arm (trials, scheduler): each arm's
    picks over the seeds (observed final validation FID, the surrogate's noise-free FID, the study's
    search seconds) against the lab's median for the arm, and each other arm's paired difference from
    the arm with the fewest trials (the former preset), seed by seed: in the pick's test FID (the real
    description of what validation chose) and in the surrogate's noise-free FID of the pick."""
    lines = []
    for family, group in frame.groupby("family"):
        arms = group.groupby(["trials", "scheduler"])
        if arms.ngroups < 2 or group.sampler.nunique() != 1 or "real_observed" not in group:
            continue
        for (trials, scheduler), arm in arms:
            lines.append(
                f"{family} {trials} trials, {scheduler}: {len(arm)} seeds, observed pick "
                f"{arm.real_observed.mean():.1f} (lab median {arm.lab_observed_median.mean():.1f}), "
                f"noise-free {arm.real_true.mean():.1f} (lab {arm.lab_true_median.mean():.1f}), "
                f"{arm.real_compute.mean():.0f} s (lab {arm.lab_compute_median.mean():.0f} s); inside the "
                f"lab's 90 % range: observed {int(arm.observed_inside.sum())}/{len(arm)}, noise-free "
                f"{int(arm.true_inside.sum())}/{len(arm)}, "
                f"seconds {int(arm.compute_inside.sum())}/{len(arm)}")
        for value, what in (("real_test", "test FID of the pick"),
                            ("real_true", "noise-free FID of the pick"), ("real_compute", "search seconds")):
            wide = group.pivot_table(index="seed", columns=["trials", "scheduler"], values=value)
            # each proposal against the baseline: the arm with the fewest trials (the former preset)
            a = min(wide.columns)
            for b in (column for column in wide.columns if column != a):
                diff = (wide[b] - wide[a]).dropna()
                same = int((diff.abs() < 0.05).sum())
                lines.append(f"{family} paired by seed, {what}, {b[0]} {b[1]} minus {a[0]} {a[1]}: mean "
                             f"{diff.mean():+.1f} over {len(diff)} seeds ({int((diff < -0.05).sum())} "
                             f"lower, {same} equal, {int((diff > 0.05).sum())} higher; per seed "
                             + ", ".join(f"{d:+.1f}" for d in diff) + ")")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lab-dir", type=Path, required=True, help="a lab run's --out-dir (its reps/)")
    p.add_argument("--tables", type=Path, nargs="+", required=True, help="the table the lab ran on")
    p.add_argument("--real", type=Path, nargs="+", required=True, help="real studies, or folders of them")
    p.add_argument("--workers", type=int, required=True, help="trials the real studies ran at once")
    p.add_argument("--out", type=Path, default=None, help=f"CSV (default <lab-dir>/{OUT}; rows replaced "
                   "by study)")
    args = p.parse_args(argv)
    reps = done_reps(args.lab_dir)
    real = study_dirs(args.real)
    if reps.empty or not real:
        print(f"error: no lab repetitions in {args.lab_dir} or no study in {args.real}", file=sys.stderr)
        return 2
    families = sorted({json.loads((d / R.STUDY_JSON).read_text())["family"] for d in real})
    tables = study_dirs(args.tables)
    surrogates = {}
    for family in families:
        table = load_table(tables, family)
        surrogates[family] = (Surrogate.fit(table), table.features)
    frame = check_rows(reps, real, surrogates, args.workers)
    out = args.out or args.lab_dir / OUT
    if out.exists():  # other studies' rows (the other family, another machine) stay
        old = pd.read_csv(out)
        frame = pd.concat([old[~old.study.isin(frame.study)], frame], ignore_index=True)
    frame.to_csv(out, index=False, float_format="%.4g")
    show = ["study", "lab_reps", "real_observed", "lab_observed_lo", "lab_observed_hi", "observed_inside",
            "real_true", "lab_true_lo", "lab_true_hi", "true_inside", "real_compute", "lab_compute_lo",
            "lab_compute_hi", "compute_inside"]
    print(frame[[c for c in show if c in frame]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for line in pair_lines(frame, reps) + design_lines(frame):
        print(line)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
