"""What the search buys, measured on real studies: random search, with and without ASHA, against TPE,
with and without ASHA.

The judge of the search is the search lab now (benchmarks/lab.py: hundreds of paired simulated
studies on learning-curve tables of the product's own spaces; docs/search.md). This script stays as
its real-run mode, for machines where real studies are cheap (a GPU): it runs paired real studies,
and benchmarks/lab_check.py tells whether their picks and compute fall inside the lab's range for
the same arms (its studies are launcher study directories). Its own IQM and bootstrap over 3
repetitions describe those runs; they do not decide defaults.

    python benchmarks/bench_search.py --data-dir ../shared/data            # gan + vae, 3 reps, 16 trials
    python benchmarks/bench_search.py --data-dir D --families gan --first-rep 1 --reps 1   # one more rep
    python benchmarks/bench_search.py --data-dir D --arms random-none tpe-asha tpe-hyperband -- --max-epochs 6
    python benchmarks/bench_search.py --summarize --out-dir results/bench-search  # join and re-analyse
    python benchmarks/bench_search.py --data-dir D --smoke-test            # 1 family, 2 reps, 4 trials

For each family, arm (sampler + scheduler) and repetition it runs one `python -m study.launch`
study (one after another, each with the machine to itself; repetition r uses --seed r in every
arm, so the enqueued seed configurations train alike) and reads its history.parquet. Finished
studies are skipped, so separate invocations (other --first-rep, other --families) add
repetitions to the same --out-dir, and --summarize joins whatever is there.

random + ASHA is replayed, not run (unless --run-random-asha): the random sampler's proposals do not
depend on results, so repetition r of random + ASHA proposes exactly random-none rep r's trials, and
on a CPU every epoch of a trial trains bit for bit alike whether or not it is stopped later. The
replay (study.engine.search.replay_asha) feeds the launcher's ASHA the recorded results of random-none
rep r, one trial at a time in proposal order (the order the anytime curves assume), with the grace
period, reduction factor, max epochs and stop signal of the same repetition's TPE + ASHA study, and
keeps each trial's epochs up to the one ASHA stopped it at (tests/test_launch.py checks the replay
against the decisions of real one-trial-at-a-time ASHA studies).

The anytime curve of a study is its best validation FID so far (the lowest per-epoch val_fid of
any trial yet, the incumbent of HPO benchmarks) against its cumulative compute: the seconds its
trials spent (trial_seconds: training, validation, test scoring, checkpoints; a trial's scoring
after its last epoch, inside it or after the search, counts at that epoch). A committed study from
before trial_seconds existed is measured in training seconds, with a printed note. The replayed
random + ASHA arm charges a replayed trial's last kept epoch the scoring its random-none run paid
at its end (a stopped trial's scoring is the same work: the suite and the test metrics).
Trials are taken in the order the sampler proposed them (trials.parquet's
order), each trial's epochs in order: the curve of a one-at-a-time run of the same trials, since
the concurrent trials' wall-clock interleaving is not recorded.

Equal compute: every arm runs the same number of trials; the arms that stop trials spend less.
The table gives each arm's best at the common budget B (the smallest total compute seconds of
any run of the family, which every run reached) and at its own end, as the interquartile mean
(IQM) over repetitions with a 95% bootstrap interval (repetitions resampled with replacement,
paired by seed across arms, as syne-tune's benchmarking does), plus min..max. The figure of merit
is paired by repetition: the compute seconds TPE + ASHA needed to reach random search's final
best, as a fraction of random search's total (goal: 1/3 or less; "not reached" when it never did);
the same fraction is printed for every arm against random-none. With 3 repetitions the IQM is the
mean and the bootstrap interval is coarse: read it as a spread, not as a test.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from launcher_study import EXIT_BAD_INPUT, free_port, launcher_failed  # noqa: E402

from models.config import FAMILIES  # noqa: E402
from study import results as R  # noqa: E402
from study.engine.plan import StudyPlan  # noqa: E402
from study.engine.search import replay_asha  # noqa: E402

# arm name -> (--sampler, --scheduler) of the launcher
ARMS = {
    "random-none": ("random", "none"),
    "random-asha": ("random", "asha"),
    "tpe-asha": ("tpe", "asha"),
    "tpe-none": ("tpe", "none"),
    "tpe-hyperband": ("tpe", "hyperband"),
}
ARM_LABELS = {
    "random-none": "random, no stopping",
    "random-asha": "random + ASHA",
    "tpe-asha": "TPE + ASHA",
    "tpe-none": "TPE, no stopping",
    "tpe-hyperband": "TPE + HyperBand",
}
DEFAULT_ARMS = ("random-none", "random-asha", "tpe-asha", "tpe-none")
BASELINE, CHALLENGER = "random-none", "tpe-asha"
REPLAYED = "random-asha"  # derived from BASELINE's studies (the module docstring)
BOOTSTRAP_RESAMPLES = 2_000
CONFIDENCE = 0.95
PRESET_FLAGS = {"smoke": ["--smoke-test"], "quick": ["--quick"], "full": []}
GOAL_FRACTION = 1 / 3

# columns of this benchmark's own frames
COMPUTE_S = "compute_s"  # cumulative compute of the study at this epoch (trial_seconds, else training s)
BEST_SO_FAR = "best_val_fid_so_far"
ARM, REP = "arm", "rep"
FIGURE_NAME, TABLE_NAME = "bench_search.png", "bench_search.csv"
REPS_TABLE_NAME = "bench_search_reps.csv"  # one row per family, arm and repetition


# ---------------------------------------------------------------- pure computation

def compute_column(history: pd.DataFrame) -> str:
    """The history's cumulative compute: trial_seconds, else (a study from before it) train_seconds."""
    has_trial_seconds = R.TRIAL_SECONDS in history and history[R.TRIAL_SECONDS].notna().all()
    return R.TRIAL_SECONDS if has_trial_seconds and len(history) else R.TRAIN_SECONDS


def end_seconds(trials: pd.DataFrame, history: pd.DataFrame) -> dict[str, float]:
    """Per trial, the seconds it spent after its last recorded epoch (its test scoring, a stopped
    trial's suite): trials.parquet's search seconds (R.search_seconds: not the picked trials'
    likelihood, a step after the search) minus the history's."""
    if compute_column(history) != R.TRIAL_SECONDS or R.TRIAL_SECONDS not in trials:
        return {}
    last = history.groupby(R.TRIAL_ID)[R.TRIAL_SECONDS].max()
    total = R.search_seconds(trials).set_axis(trials[R.TRIAL_ID])
    return {str(t): max(0.0, float(total[t] - last[t])) for t in last.index if t in total.index}


def anytime_curve(history: pd.DataFrame, trial_order: Sequence[str] | None = None,
                  after_last: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per trial-epoch, in run order: COMPUTE_S (cumulative compute of the study, in
    `compute_column(history)`) and BEST_SO_FAR (lowest val_fid of any epoch so far; NaN before the
    first finite one).

    `trial_order`: the trials' order (trials.parquet's); default: first appearance in `history`.
    An epoch's seconds are the step in its trial's cumulative seconds, so an epoch re-run after a
    restore (a repeated (trial, epoch) row) counts once, as its last record. `after_last`: seconds
    per trial added at its last epoch (end_seconds).
    """
    seconds = compute_column(history)
    frame = history.drop_duplicates([R.TRIAL_ID, R.EPOCH], keep="last")
    order = list(dict.fromkeys(trial_order if trial_order is not None else frame[R.TRIAL_ID]))
    rank = {trial: i for i, trial in enumerate(order)}
    if missing := set(frame[R.TRIAL_ID]) - set(rank):
        raise ValueError(f"trials {sorted(missing)} are in the history but not in trial_order")
    frame = frame.assign(_rank=frame[R.TRIAL_ID].map(rank)).sort_values(["_rank", R.EPOCH])
    spent = frame.groupby(R.TRIAL_ID, sort=False)[seconds].diff()
    spent = spent.fillna(frame[seconds])  # a trial's first epoch: all its seconds so far
    if after_last:
        last = ~frame[R.TRIAL_ID].duplicated(keep="last")
        spent = spent + np.where(last, frame[R.TRIAL_ID].map(after_last).fillna(0.0), 0.0)
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


def iqm(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean along `axis`: the mean of the middle half (scipy's trim_mean(0.25); for
    fewer than 4 values nothing is trimmed, the mean)."""
    from scipy.stats import trim_mean

    return np.asarray(trim_mean(values, 0.25, axis=axis))


def bootstrap_iqm(values: np.ndarray, confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = 0, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the IQM over axis 0 (repetitions) of `values`. `indices`
    (resamples x repetitions): the resampled repetitions, shared across arms to pair them by seed."""
    values = np.asarray(values, dtype=float)
    if indices is None:
        indices = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    stats = np.stack([iqm(values[row]) for row in indices])
    tail = (1 - confidence) / 2 * 100
    with warnings.catch_warnings():  # grid points before every repetition's first evaluation: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(stats, tail, axis=0), np.nanpercentile(stats, 100 - tail, axis=0)


def on_grid(curves: Sequence[pd.DataFrame], grid: np.ndarray) -> np.ndarray:
    """(repetitions x grid) incumbents: each curve as a step function of compute, held at its
    final value after its own end (a finished study's best no longer changes)."""
    rows = []
    for curve in curves:
        index = np.searchsorted(curve[COMPUTE_S].to_numpy(), grid, side="right") - 1
        values = curve[BEST_SO_FAR].to_numpy()
        rows.append(np.where(index >= 0, values[np.clip(index, 0, None)], np.nan))
    return np.array(rows, dtype=float)


def summarize(curves: dict[str, list[pd.DataFrame]], seed: int = 0) -> tuple[pd.DataFrame, float]:
    """Per arm of one family (curves[arm][rep]): total compute, best at the common budget and at
    the end, as IQM with its 95% bootstrap interval (`_lo`, `_hi`; repetitions resampled alike in
    every arm), mean, min and max over repetitions. Returns (table, common budget seconds)."""
    budget = min(total_compute(c) for runs in curves.values() for c in runs)
    reps = max(len(runs) for runs in curves.values())
    indices = np.random.default_rng(seed).integers(0, reps, size=(BOOTSTRAP_RESAMPLES, reps))
    rows = []
    for arm, runs in curves.items():
        row: dict[str, object] = {ARM: arm, "reps": len(runs)}
        # the shared resampling, restricted to the repetitions this arm has
        own = indices if len(runs) == reps else np.random.default_rng(seed).integers(
            0, len(runs), size=(BOOTSTRAP_RESAMPLES, len(runs)))
        for label, values in (("compute_s", [total_compute(c) for c in runs]),
                              ("best_at_budget", [best_at(c, budget) for c in runs]),
                              ("final_best", [final_best(c) for c in runs])):
            array = np.array(values, dtype=float)
            low, high = bootstrap_iqm(array, indices=own)
            row |= {f"{label}_iqm": float(iqm(array)), f"{label}_lo": float(low), f"{label}_hi": float(high),
                    f"{label}_mean": float(np.mean(array)), f"{label}_min": float(np.min(array)),
                    f"{label}_max": float(np.max(array))}
        rows.append(row)
    return pd.DataFrame(rows), budget


def figure_of_merit(curves: dict[str, list[pd.DataFrame]], challenger: str = CHALLENGER) -> list[float]:
    """fraction_to_match(random-none rep r, challenger rep r) for every repetition both ran."""
    pairs = zip(curves.get(BASELINE, []), curves.get(challenger, []), strict=False)
    return [fraction_to_match(base, other) for base, other in pairs]


def per_rep_table(curves: dict[str, list[pd.DataFrame]], reps: Sequence[int]) -> pd.DataFrame:
    """One row per arm and repetition (seed) of one family: its compute seconds, its final best
    validation FID, and the share of random-none's compute it needs to reach random-none's final
    best (inf: never; random-none's own row: when it found that best, as a share of its total)."""
    rows = []
    for arm, runs in curves.items():
        fractions = figure_of_merit(curves, arm) if BASELINE in curves else [math.nan] * len(runs)
        for rep, curve, fraction in zip(reps, runs, fractions, strict=True):
            rows.append({ARM: arm, "rep": rep, "compute_s": total_compute(curve),
                         "final_best": final_best(curve), "fraction_of_random_compute": fraction})
    return pd.DataFrame(rows)


def describe_fractions(fractions: Sequence[float], challenger: str = CHALLENGER) -> str:
    if not fractions:
        return f"n/a (needs both {BASELINE} and {challenger})"
    reached = [f for f in fractions if math.isfinite(f)]
    text = ", ".join(f"{f:.2f}" if math.isfinite(f) else "not reached" for f in fractions)
    median = float(np.median(fractions))  # inf counts as the worst value
    summary = f"median {median:.2f}" if math.isfinite(median) else "median: not reached"
    return f"{text} ({summary}; reached in {len(reached)}/{len(fractions)}; goal <= {GOAL_FRACTION:.2f})"


# ---------------------------------------------------------------- running and plotting

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


def note_training_seconds(study_dir: Path, history: pd.DataFrame) -> None:
    if compute_column(history) != R.TRIAL_SECONDS:
        print(f"note: {study_dir.name} has no {R.TRIAL_SECONDS} (written before the column existed): its "
              f"compute is its {R.TRAIN_SECONDS} only", flush=True)


def load_curve(study_dir: Path) -> pd.DataFrame:
    trials = pd.read_parquet(study_dir / R.TRIALS_FILE)
    history = pd.read_parquet(study_dir / R.HISTORY_FILE)
    note_training_seconds(study_dir, history)
    return anytime_curve(history, list(trials[R.TRIAL_ID]), end_seconds(trials, history))


# the per-epoch numbers two studies' runs of one configuration and seed must share, bit for bit
REPEAT_COLUMNS = (R.LOSS_D, R.LOSS_G, R.D_REAL, R.D_FAKE, R.LOSS_NELBO, R.LOSS_RECON, R.LOSS_KL, R.VAL_FID)


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def unrepeated_trials(study_dirs: Sequence[Path]) -> str | None:
    """Where two of `study_dirs` trained one configuration (equal config_json, seed included)
    differently: the first such pair of trials, the epoch and the number that differ; None when
    every shared configuration trained alike at every epoch both studies ran (or none is shared).

    The arms are paired by seed so that their shared trials (the enqueued seed configurations, the
    samplers' equal start-up draws) cancel out; that holds only where they trained alike, which
    a CPU guarantees on one machine and torch build (docs/training.md)."""
    studies = []
    for study_dir in dict.fromkeys(study_dirs):
        trials = pd.read_parquet(study_dir / R.TRIALS_FILE)
        if R.CONFIG_JSON not in trials:
            continue
        history = pd.read_parquet(study_dir / R.HISTORY_FILE)
        history = history.drop_duplicates([R.TRIAL_ID, R.EPOCH], keep="last")  # an epoch re-run counts once
        configs = dict(zip(trials[R.CONFIG_JSON], trials[R.TRIAL_ID], strict=True))
        studies.append((study_dir.name, configs, history.set_index([R.TRIAL_ID, R.EPOCH])))
    for i, (name_a, configs_a, history_a) in enumerate(studies):
        for name_b, configs_b, history_b in studies[i + 1:]:
            for config in [c for c in configs_a if c in configs_b]:  # in study a's trial order
                trial_a, trial_b = configs_a[config], configs_b[config]
                rows_a, rows_b = history_a.loc[trial_a], history_b.loc[trial_b]
                columns = [c for c in REPEAT_COLUMNS if c in rows_a and c in rows_b]
                for epoch in sorted(set(rows_a.index) & set(rows_b.index)):
                    for column in columns:
                        a, b = rows_a.at[epoch, column], rows_b.at[epoch, column]
                        if not _same(a, b):
                            return (f"{name_a} trial {trial_a} and {name_b} trial {trial_b} ran the same "
                                    f"configuration and seed but differ at epoch {epoch}: {column} "
                                    f"{float(a)!r} vs {float(b)!r}")
    return None


def replayed_curve(baseline_dir: Path, scheduler_dir: Path | None = None) -> pd.DataFrame:
    """random + ASHA replayed on a random-none study (the module docstring), with the grace period,
    reduction factor, max epochs and stop signal of `scheduler_dir`'s study.json (the same
    repetition's TPE + ASHA study, so both arms stop alike), else the random-none study's own."""
    has_plan = scheduler_dir is not None and (scheduler_dir / R.STUDY_JSON).exists()
    source = scheduler_dir if has_plan and scheduler_dir is not None else baseline_dir
    plan = StudyPlan.from_json((source / R.STUDY_JSON).read_text())
    trials = pd.read_parquet(baseline_dir / R.TRIALS_FILE)
    order = list(trials[R.TRIAL_ID])
    recorded = pd.read_parquet(baseline_dir / R.HISTORY_FILE)
    note_training_seconds(baseline_dir, recorded)
    history = replay_asha(plan, recorded, order)
    return anytime_curve(history, order, end_seconds(trials, recorded))


def plot(curves: dict[str, dict[str, list[pd.DataFrame]]], budgets: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(max(6.0, 4.4 * len(curves)), 4.2), squeeze=False)
    for ax, (family, arms) in zip(axes[0], curves.items(), strict=True):
        reps = max(len(runs) for runs in arms.values())
        indices = np.random.default_rng(0).integers(0, reps, size=(BOOTSTRAP_RESAMPLES // 4, reps))
        for arm, runs in arms.items():
            grid = np.linspace(0.0, max(total_compute(c) for c in runs), 300)
            values = on_grid(runs, grid)  # NaN until every repetition has its first evaluation
            low, high = bootstrap_iqm(values, indices=indices if len(runs) == reps else None,
                                      resamples=BOOTSTRAP_RESAMPLES // 4)
            label = f"{ARM_LABELS[arm]}{' (replayed)' if arm == REPLAYED else ''}"
            color = f"C{list(ARMS).index(arm)}"  # an arm's color is the same in every panel
            line, = ax.step(grid, iqm(values), where="post", lw=1.6, label=label, color=color)
            ax.fill_between(grid, low, high, step="post", color=line.get_color(), alpha=0.15, lw=0)
        ax.axvline(budgets[family], color="0.4", ls=":", lw=1, label="common budget")
        plural = "" if reps == 1 else "s"
        ax.set(title=f"{family.upper()} ({reps} repetition{plural})", xlabel="cumulative compute seconds",
               ylabel="best validation FID so far")
        ax.grid(alpha=0.3, lw=0.5)
    legend: dict[str, object] = {}  # every panel's arms, once each, outside the axes: never over a curve
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels, handles = list(legend), list(legend.values())
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=7, frameon=False,
               title="IQM over repetitions, band: 95% bootstrap interval (paired by seed)", title_fontsize=7)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(path, dpi=200, bbox_inches="tight")  # a one-panel figure is narrower than the legend
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="flags after -- go to python -m study.launch unchanged",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(DEFAULT_ARMS))
    p.add_argument("--reps", type=int, default=3,
                   help="repetitions per arm (seeds first-rep .. first-rep+reps-1)")
    p.add_argument("--first-rep", type=int, default=0, help="the first repetition's seed (default 0); "
                   "--summarize reads every repetition under --out-dir")
    p.add_argument("--run-random-asha", action="store_true",
                   help="run random + ASHA as studies instead of replaying it on random-none's")
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
    if args.reps < 1 or args.trials < 1 or args.num_cpus < 1 or args.first_rep < 0:
        print(f"error: --reps {args.reps}, --trials {args.trials}, --num-cpus {args.num_cpus}, --first-rep "
              f"{args.first_rep}: each must be at least 1 (--first-rep at least 0), e.g. --reps 3 "
              "--trials 16 --num-cpus 2.", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.summarize and not (args.out_dir / "studies").is_dir():
        print(f"error: --summarize found no studies under {args.out_dir}/studies; point --out-dir at a "
              "directory a previous run of this benchmark wrote.", file=sys.stderr)
        return EXIT_BAD_INPUT
    replay = REPLAYED in args.arms and not args.run_random_asha
    if replay and BASELINE not in args.arms:
        args.arms = [BASELINE, *args.arms]  # the replay needs its studies

    started = time.perf_counter()
    if not args.summarize:
        for family in args.families:
            for rep in range(args.first_rep, args.first_rep + args.reps):
                for arm in args.arms:
                    if arm == REPLAYED and replay:
                        continue
                    try:
                        wall = run_study(family, arm, rep, args, extra)
                    except subprocess.CalledProcessError as exc:
                        return launcher_failed(exc)
                    print(f"{study_name(family, arm, rep)}: {wall:.1f} s wall", flush=True)

    curves: dict[str, dict[str, list[pd.DataFrame]]] = {}
    rep_seeds: dict[str, list[int]] = {}
    for family in args.families:
        arms = present_arms(args.out_dir / "studies", family, args.arms, replay)
        if missing := [arm for arm in args.arms if arm not in arms]:
            print(f"\n{family}: no finished study of {', '.join(missing)}: left out")
        reps = complete_reps(args.out_dir / "studies", family, arms, replay)
        if not reps:
            continue
        for rep in reps:  # before anything is written
            paired = [args.out_dir / "studies" / study_name(family, source_arm(arm, replay), rep)
                      for arm in arms]
            if unrepeated := unrepeated_trials(paired):
                print(f"error: {family} repetition {rep} cannot be paired: {unrepeated}; rerun its studies "
                      "on one machine and torch build, or move them out of --out-dir (docs/training.md: "
                      "what repeats)", file=sys.stderr)
                return EXIT_BAD_INPUT
        curves[family], rep_seeds[family] = {arm: [] for arm in arms}, reps
        for rep in reps:
            for arm in arms:
                study_dir = args.out_dir / "studies" / study_name(family, arm, rep)
                curves[family][arm].append(
                    replayed_curve(args.out_dir / "studies" / study_name(family, BASELINE, rep),
                                   args.out_dir / "studies" / study_name(family, CHALLENGER, rep))
                    if arm == REPLAYED and replay else load_curve(study_dir))
        print(f"\n{family}: repetitions (seeds) {reps} have every arm")
    if not curves:
        print(f"error: no repetition under {args.out_dir}/studies has a finished study for every arm of "
              f"{', '.join(args.arms)}.", file=sys.stderr)
        return EXIT_BAD_INPUT

    tables, rep_tables, budgets = [], [], {}
    for family, arms in curves.items():
        rep_tables.append(per_rep_table(arms, rep_seeds[family]).assign(family=family))
        table, budgets[family] = summarize(arms)
        tables.append(table.assign(family=family, common_budget_s=budgets[family]))
        reps = len(next(iter(arms.values())))
        print(f"\n== {family}: {args.trials} trials per study, {reps} repetitions, "
              f"common budget {budgets[family]:.1f} training s")
        shown = [ARM, "reps", *(f"{m}_{k}" for m in ("compute_s", "best_at_budget", "final_best")
                                for k in ("iqm", "lo", "hi", "min", "max"))]
        print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        for arm in arms:
            if arm != BASELINE:
                print(f"fraction of {BASELINE}'s compute {arm} needs to reach its final best, per rep: "
                      f"{describe_fractions(figure_of_merit(arms, arm), arm)}")
    pd.concat(tables).to_csv(args.out_dir / TABLE_NAME, index=False)
    pd.concat(rep_tables).to_csv(args.out_dir / REPS_TABLE_NAME, index=False)
    plot(curves, budgets, args.out_dir / FIGURE_NAME)
    print(f"\ntables: {args.out_dir / TABLE_NAME}, {args.out_dir / REPS_TABLE_NAME}\n"
          f"figure: {args.out_dir / FIGURE_NAME}")
    print(f"benchmark wall time: {time.perf_counter() - started:.1f} s")
    return 0


def source_arm(arm: str, replay: bool) -> str:
    """The arm whose studies an arm's curves come from: the baseline's for the replayed arm."""
    return BASELINE if arm == REPLAYED and replay else arm


def present_arms(studies: Path, family: str, arms: Sequence[str], replay: bool) -> list[str]:
    """The arms with at least one finished study of the family (the replayed arm: the baseline's)."""
    def has_any(arm: str) -> bool:
        source = source_arm(arm, replay)
        return any((path / R.HISTORY_FILE).exists() for path in studies.glob(f"{family}-{source}-rep*"))

    return [arm for arm in arms if has_any(arm)]


def complete_reps(studies: Path, family: str, arms: Sequence[str], replay: bool) -> list[int]:
    """The repetitions (seeds) with a finished study of every arm (the replayed arm needs the
    baseline's), in order; only these are compared, so every comparison is paired by seed."""
    needed = [source_arm(arm, replay) for arm in arms]
    seeds = set()
    for path in studies.glob(f"{family}-*-rep*"):
        tail = path.name.rsplit("-rep", 1)[-1]
        if tail.isdigit():
            seeds.add(int(tail))
    def finished(arm: str, rep: int) -> bool:
        return (studies / study_name(family, arm, rep) / R.HISTORY_FILE).exists()

    return sorted(rep for rep in seeds if all(finished(arm, rep) for arm in needed))


if __name__ == "__main__":
    sys.exit(main())
