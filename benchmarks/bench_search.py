"""What the search buys: random search against random + ASHA and TPE + ASHA, at equal compute.

    python benchmarks/bench_search.py --data-dir ../shared/data            # gan + vae, 3 reps, 16 trials
    python benchmarks/bench_search.py --data-dir D --arms random-none tpe-asha tpe-hyperband -- --max-epochs 6
    python benchmarks/bench_search.py --summarize --out-dir results/bench-search  # re-analyse
    python benchmarks/bench_search.py --data-dir D --smoke-test            # 1 family, 2 reps, 4 trials

For each family, arm (sampler + scheduler) and repetition it runs one `python -m study.launch`
study (one after another, each with the machine to itself; repetition r uses --seed r in every
arm, so the enqueued seed configurations train alike) and reads its history.parquet.

The anytime curve of a study is its best validation FID so far (the lowest per-epoch val_fid of
any trial yet, the incumbent of HPO benchmarks) against its cumulative training seconds
(evaluation excluded). Trials are taken in the order the sampler proposed them (trials.parquet's
order), each trial's epochs in order: the curve of a one-at-a-time run of the same trials, since
the concurrent trials' wall-clock interleaving is not recorded.

Equal compute: every arm runs the same number of trials; the arms that stop trials spend less.
The table gives each arm's best at the common budget B (the smallest total training seconds of
any run of the family, which every run reached) and at its own end. The figure of merit is paired
by repetition: the training seconds TPE + ASHA needed to reach random search's final best, as a
fraction of random search's total (goal: 1/3 or less; "not reached" when it never did).
Spreads are min..max over repetitions.
"""

from __future__ import annotations

import argparse
import math
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.config import FAMILIES  # noqa: E402
from study import results as R  # noqa: E402

EXIT_BAD_INPUT = 2
# arm name -> (--sampler, --scheduler) of the launcher
ARMS = {
    "random-none": ("random", "none"),
    "random-asha": ("random", "asha"),
    "tpe-asha": ("tpe", "asha"),
    "tpe-hyperband": ("tpe", "hyperband"),
}
ARM_LABELS = {
    "random-none": "random, no stopping",
    "random-asha": "random + ASHA",
    "tpe-asha": "TPE + ASHA",
    "tpe-hyperband": "TPE + HyperBand",
}
DEFAULT_ARMS = ("random-none", "random-asha", "tpe-asha")
BASELINE, CHALLENGER = "random-none", "tpe-asha"
PRESET_FLAGS = {"smoke": ["--smoke-test"], "quick": ["--quick"], "full": []}
GOAL_FRACTION = 1 / 3

# columns of this benchmark's own frames
COMPUTE_S = "compute_s"  # cumulative training seconds of the study at this epoch
BEST_SO_FAR = "best_val_fid_so_far"
ARM, REP = "arm", "rep"
FIGURE_NAME, TABLE_NAME = "bench_search.png", "bench_search.csv"


# ---------------------------------------------------------------- pure computation

def anytime_curve(history: pd.DataFrame, trial_order: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per trial-epoch, in run order: COMPUTE_S (cumulative training seconds of the
    study) and BEST_SO_FAR (lowest val_fid of any epoch so far; NaN before the first finite one).

    `trial_order`: the trials' order (trials.parquet's); default: first appearance in `history`.
    An epoch's training seconds are the step in its trial's cumulative train_seconds, so an epoch
    re-run after a restore (a repeated (trial, epoch) row) counts once, as its last record.
    """
    frame = history.drop_duplicates([R.TRIAL_ID, R.EPOCH], keep="last")
    order = list(dict.fromkeys(trial_order if trial_order is not None else frame[R.TRIAL_ID]))
    rank = {trial: i for i, trial in enumerate(order)}
    if missing := set(frame[R.TRIAL_ID]) - set(rank):
        raise ValueError(f"trials {sorted(missing)} are in the history but not in trial_order")
    frame = frame.assign(_rank=frame[R.TRIAL_ID].map(rank)).sort_values(["_rank", R.EPOCH])
    spent = frame.groupby(R.TRIAL_ID, sort=False)[R.TRAIN_SECONDS].diff()
    spent = spent.fillna(frame[R.TRAIN_SECONDS])  # a trial's first epoch: all its seconds so far
    fid = frame[R.VAL_FID].where(np.isfinite(frame[R.VAL_FID]))
    return pd.DataFrame({
        R.TRIAL_ID: frame[R.TRIAL_ID].to_numpy(),
        R.EPOCH: frame[R.EPOCH].to_numpy(),
        COMPUTE_S: spent.cumsum().to_numpy(),
        BEST_SO_FAR: fid.cummin().ffill().to_numpy(),  # a diverged epoch (NaN) keeps the incumbent
    })


def total_compute(curve: pd.DataFrame) -> float:
    return float(curve[COMPUTE_S].iloc[-1]) if len(curve) else 0.0


def final_best(curve: pd.DataFrame) -> float:
    return float(curve[BEST_SO_FAR].min()) if curve[BEST_SO_FAR].notna().any() else math.nan


def best_at(curve: pd.DataFrame, seconds: float) -> float:
    """The incumbent once `seconds` of training are spent (NaN if nothing was evaluated by then)."""
    reached = curve[curve[COMPUTE_S] <= seconds + 1e-9]
    return final_best(reached) if len(reached) else math.nan


def seconds_to_reach(curve: pd.DataFrame, target: float) -> float:
    """Training seconds until the incumbent is <= target; inf if it never is."""
    hits = curve.loc[curve[BEST_SO_FAR] <= target, COMPUTE_S]
    return float(hits.iloc[0]) if len(hits) else math.inf


def fraction_to_match(baseline: pd.DataFrame, challenger: pd.DataFrame) -> float:
    """Share of the baseline's total compute the challenger needs to reach the baseline's final
    best (inf: never reached)."""
    return seconds_to_reach(challenger, final_best(baseline)) / total_compute(baseline)


def on_grid(curves: Sequence[pd.DataFrame], grid: np.ndarray) -> np.ndarray:
    """(repetitions x grid) incumbents: each curve as a step function of compute, held at its
    final value after its own end (a finished study's best no longer changes)."""
    rows = []
    for curve in curves:
        index = np.searchsorted(curve[COMPUTE_S].to_numpy(), grid, side="right") - 1
        values = curve[BEST_SO_FAR].to_numpy()
        rows.append(np.where(index >= 0, values[np.clip(index, 0, None)], np.nan))
    return np.array(rows, dtype=float)


def summarize(curves: dict[str, list[pd.DataFrame]]) -> tuple[pd.DataFrame, float]:
    """Per arm of one family (curves[arm][rep]): total compute, best at the common budget and at
    the end, as mean, min and max over repetitions. Returns (table, common budget seconds)."""
    budget = min(total_compute(c) for runs in curves.values() for c in runs)
    rows = []
    for arm, runs in curves.items():
        row: dict[str, object] = {ARM: arm, "reps": len(runs)}
        for label, values in (("compute_s", [total_compute(c) for c in runs]),
                              ("best_at_budget", [best_at(c, budget) for c in runs]),
                              ("final_best", [final_best(c) for c in runs])):
            row |= {f"{label}_mean": float(np.mean(values)), f"{label}_min": float(np.min(values)),
                    f"{label}_max": float(np.max(values))}
        rows.append(row)
    return pd.DataFrame(rows), budget


def figure_of_merit(curves: dict[str, list[pd.DataFrame]]) -> list[float]:
    """fraction_to_match(random-none rep r, tpe-asha rep r) for every repetition both ran."""
    pairs = zip(curves.get(BASELINE, []), curves.get(CHALLENGER, []), strict=False)
    return [fraction_to_match(base, challenger) for base, challenger in pairs]


def describe_fractions(fractions: Sequence[float]) -> str:
    if not fractions:
        return f"n/a (needs both {BASELINE} and {CHALLENGER})"
    reached = [f for f in fractions if math.isfinite(f)]
    text = ", ".join(f"{f:.2f}" if math.isfinite(f) else "not reached" for f in fractions)
    median = float(np.median(fractions))  # inf counts as the worst value
    summary = f"median {median:.2f}" if math.isfinite(median) else "median: not reached"
    return f"{text} ({summary}; reached in {len(reached)}/{len(fractions)}; goal <= {GOAL_FRACTION:.2f})"


# ---------------------------------------------------------------- running and plotting

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def study_name(family: str, arm: str, rep: int) -> str:
    return f"{family}-{arm}-rep{rep}"


def run_study(family: str, arm: str, rep: int, args: argparse.Namespace, extra: list[str]) -> float:
    """Run one launcher study (skipped when its tables exist); return its wall seconds."""
    study_dir = args.out_dir / "studies" / study_name(family, arm, rep)
    if (study_dir / R.HISTORY_FILE).exists():
        return math.nan
    sampler, scheduler = ARMS[arm]
    command = [sys.executable, "-m", "study.launch", "--family", family, "--name", study_dir.name,
               "--sampler", sampler, "--scheduler", scheduler, "--seed", str(rep),
               "--trials", str(args.trials),
               "--num-cpus", str(args.num_cpus), "--dashboard-port", str(free_port()),
               "--storage-path", str(study_dir.parent), *PRESET_FLAGS[args.preset],
               *(["--data-dir", args.data_dir] if args.data_dir else []), *extra]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL if args.quiet else None)
    return time.perf_counter() - started


def load_curve(study_dir: Path) -> pd.DataFrame:
    trials = pd.read_parquet(study_dir / R.TRIALS_FILE)
    return anytime_curve(pd.read_parquet(study_dir / R.HISTORY_FILE), list(trials[R.TRIAL_ID]))


def plot(curves: dict[str, dict[str, list[pd.DataFrame]]], budgets: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(max(6.0, 4.2 * len(curves)), 4.0), squeeze=False)
    for ax, (family, arms) in zip(axes[0], curves.items(), strict=True):
        for arm, runs in arms.items():
            grid = np.linspace(0.0, max(total_compute(c) for c in runs), 400)
            values = on_grid(runs, grid)  # NaN until every repetition has its first evaluation
            label = f"{ARM_LABELS[arm]} (n={len(runs)})"
            line, = ax.step(grid, values.mean(axis=0), where="post", lw=1.6, label=label)
            ax.fill_between(grid, values.min(axis=0), values.max(axis=0), step="post",
                            color=line.get_color(), alpha=0.18, lw=0)
        ax.axvline(budgets[family], color="0.4", ls=":", lw=1, label="common budget")
        ax.set(title=family.upper(), xlabel="cumulative training seconds",
               ylabel="best validation FID so far")
        ax.grid(alpha=0.3, lw=0.5)
    handles, labels = axes[0][0].get_legend_handles_labels()  # outside the axes: never over a curve
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False,
               title="mean over repetitions, band min..max", title_fontsize=7)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=200)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="flags after -- go to python -m study.launch unchanged",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(DEFAULT_ARMS))
    p.add_argument("--reps", type=int, default=3, help="repetitions per arm (seeds 0..reps-1)")
    p.add_argument("--trials", type=int, default=16, help="trials per study, the same for every arm")
    p.add_argument("--preset", choices=list(PRESET_FLAGS), default="quick", help="the launcher's preset")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of each study's local Ray")
    p.add_argument("--data-dir", help="directory holding MNIST/raw/ (passed to the launcher)")
    p.add_argument("--out-dir", type=Path, help="studies, table and figure (default results/bench-search; "
                   "--smoke-test: a new temporary directory)")
    p.add_argument("--summarize", action="store_true", help="only analyse the studies already in --out-dir")
    p.add_argument("--quiet", action="store_true", help="hide the launcher's output")
    p.add_argument("--smoke-test", action="store_true",
                   help="tiny: 1 family (vae), 2 reps, 4 trials, the smoke preset")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    args = build_parser().parse_args(argv)
    if args.smoke_test:
        args.families, args.reps, args.trials, args.preset = ["vae"], 2, 4, "smoke"
        args.out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="bench-search-"))
    args.out_dir = (args.out_dir or ROOT / "results" / "bench-search").resolve()
    if args.reps < 1 or args.trials < 1 or args.num_cpus < 1:
        print(f"error: --reps {args.reps}, --trials {args.trials}, --num-cpus {args.num_cpus}: each must be "
              "at least 1 (e.g. --reps 3 --trials 16 --num-cpus 2).", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.summarize and not (args.out_dir / "studies").is_dir():
        print(f"error: --summarize found no studies under {args.out_dir}/studies; point --out-dir at a "
              "directory a previous run of this benchmark wrote.", file=sys.stderr)
        return EXIT_BAD_INPUT

    started = time.perf_counter()
    curves: dict[str, dict[str, list[pd.DataFrame]]] = {}
    for family in args.families:
        curves[family] = {}
        for arm in args.arms:
            runs = []
            for rep in range(args.reps):
                if not args.summarize:
                    wall = run_study(family, arm, rep, args, extra)
                    print(f"{study_name(family, arm, rep)}: {wall:.1f} s wall", flush=True)
                study_dir = args.out_dir / "studies" / study_name(family, arm, rep)
                if (study_dir / R.HISTORY_FILE).exists():
                    runs.append(load_curve(study_dir))
            if runs:
                curves[family][arm] = runs
    curves = {family: arms for family, arms in curves.items() if arms}
    if not curves:
        print(f"error: no finished study under {args.out_dir}/studies.", file=sys.stderr)
        return EXIT_BAD_INPUT

    tables, budgets = [], {}
    for family, arms in curves.items():
        table, budgets[family] = summarize(arms)
        tables.append(table.assign(family=family, common_budget_s=budgets[family]))
        print(f"\n== {family}: {args.trials} trials per study, "
              f"common budget {budgets[family]:.1f} training s")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"fraction of {BASELINE}'s compute {CHALLENGER} needs to reach its final best, per rep: "
              f"{describe_fractions(figure_of_merit(arms))}")
    pd.concat(tables).to_csv(args.out_dir / TABLE_NAME, index=False)
    plot(curves, budgets, args.out_dir / FIGURE_NAME)
    print(f"\ntable: {args.out_dir / TABLE_NAME}\nfigure: {args.out_dir / FIGURE_NAME}")
    print(f"benchmark wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
