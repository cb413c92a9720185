"""Does an early rung predict the end? Rank fidelity of ASHA's decision signal.

    python benchmarks/bench_fidelity.py --data-dir ../shared/data             # gan + vae, 16 trials, quick
    python benchmarks/bench_fidelity.py --data-dir D --gan-ema 0.99            # + a weight-averaged GAN study
    python benchmarks/bench_fidelity.py --from-study results/bench-search/studies/*-random-none-rep*
    python benchmarks/bench_fidelity.py --data-dir D --smoke-test              # 1 family, 4 trials, smoke

Per family it runs one `python -m study.launch --sampler random --scheduler none` study (every
trial trained to the end; with --gan-ema also a GAN study whose trials sample an exponential moving
average of the generator's weights, Yazici et al. 2019), or reads the history.parquet of finished
studies (--from-study, e.g. bench_search's random-none studies), and prints, per study and pooled
per family, for each candidate rung (epoch 1, 2, 4 below the last epoch) and decision signal:

- rho: Spearman's rank correlation, over the trials that reached the last epoch with a finite
  validation FID, between the signal at the rung and the final validation FID (the last epoch's,
  the selection rule's);
- top-quarter stopped: the share of the final top quarter (the ceil(n/4) lowest final FIDs) that
  ASHA at that rung would have stopped: a trial is stopped when its signal is worse than the
  1/reduction-factor quantile of every trial's signal at the rung (the cutoff asynchronous ASHA
  applies to the trial that reaches the rung last).

Signals: `raw`, the validation FID of the rung's epoch (--stop-signal raw); `best`, the lowest
validation FID up to the rung (--stop-signal best). In a study whose GAN trials average the
generator (ema_decay > 0 in their config) the same two are named `ema` and `ema-best`: their FIDs,
final ones included, are the average's. Lower is better for all.

The pooled table averages each (rung, signal) over the family's studies (min..max beside it), and
both tables are written to --out-dir as fidelity.csv (per study) and fidelity_pooled.csv, and
the last line names the choice by a stated rule: per signal and rung, the mean share of the top
quarter stopped over families (lower first), then the mean rho (higher first), then the rung
(earlier first, it saves more compute).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from launcher_study import EXIT_BAD_INPUT, free_port, launcher_failed  # noqa: E402

from models.config import FAMILIES  # noqa: E402
from study import results as R  # noqa: E402

RUNGS = (1, 2, 4)
SIGNALS = ("raw", "best")
EMA_SIGNALS = {"raw": "ema", "best": "ema-best"}  # the names in a study whose generators are averaged
PRESET_FLAGS = {"smoke": ["--smoke-test"], "quick": ["--quick"], "full": []}
# columns of the table
RUNG, SIGNAL, RHO, N, TOP_STOPPED = "rung", "signal", "rho", "n_trials", "top_quarter_stopped"
STUDY, FAMILY = "study", "family"
TABLE_CSV, POOLED_CSV = "fidelity.csv", "fidelity_pooled.csv"  # written to --out-dir


# ---------------------------------------------------------------- pure computation

def signals_at(history: pd.DataFrame, rung: int) -> pd.DataFrame:
    """Per trial (index TRIAL_ID): the `raw` and `best` signal at epoch `rung` (NaN when missing)."""
    frame = history.drop_duplicates([R.TRIAL_ID, R.EPOCH], keep="last")
    fid = frame[R.VAL_FID].where(np.isfinite(frame[R.VAL_FID]))
    frame = frame.assign(_fid=fid)
    upto = frame[frame[R.EPOCH] <= rung]
    raw = upto[upto[R.EPOCH] == rung].set_index(R.TRIAL_ID)["_fid"]
    best = upto.groupby(R.TRIAL_ID)["_fid"].min()
    return pd.DataFrame({"raw": raw, "best": best})


def final_fids(history: pd.DataFrame) -> pd.Series:
    """The last epoch's validation FID of every trial that reached the history's last epoch."""
    frame = history.drop_duplicates([R.TRIAL_ID, R.EPOCH], keep="last")
    last = int(frame[R.EPOCH].max())
    ended = frame[frame[R.EPOCH] == last].set_index(R.TRIAL_ID)[R.VAL_FID]
    return ended[np.isfinite(ended)]


def asha_stops(signal: pd.Series, reduction_factor: float) -> pd.Series:
    """True for the trials ASHA would stop at a rung where every trial recorded `signal`: worse
    than the 1/reduction_factor quantile (lower is better)."""
    cutoff = np.nanpercentile(signal.to_numpy(dtype=float), 100.0 / reduction_factor)
    return signal > cutoff


def averaged(study_dir: Path) -> bool:
    """Whether the study's trials sample an average of the generator's weights (ema_decay > 0 in
    trials.parquet's configs)."""
    path = study_dir / R.TRIALS_FILE
    if not path.is_file():
        return False
    column = pd.read_parquet(path).get(R.hp_column("ema_decay"))
    return column is not None and bool((column.fillna(0) > 0).any())


def fidelity_table(history: pd.DataFrame, rungs: Sequence[int] = RUNGS,
                   reduction_factor: float = 2.0, ema: bool = False) -> pd.DataFrame:
    """One row per (rung, signal) below the last epoch: RHO, N, TOP_STOPPED (see the module
    docstring); `ema`: a study of averaged generators, its signals named EMA_SIGNALS."""
    from scipy.stats import spearmanr

    final = final_fids(history)
    last = int(history[R.EPOCH].max())
    top = set(final.nsmallest(math.ceil(len(final) / 4)).index)
    rows = []
    for rung in (r for r in rungs if r < last):
        at = signals_at(history, rung).reindex(final.index)
        for signal in SIGNALS:
            values = at[signal].dropna()
            n = len(values)
            rho = float(spearmanr(values, final[values.index]).statistic) if n >= 3 else math.nan
            stopped = asha_stops(values, reduction_factor) if n else pd.Series(dtype=bool)
            top_stopped = sum(bool(stopped.get(t, False)) for t in top) / len(top) if top else math.nan
            name = EMA_SIGNALS[signal] if ema else signal
            rows.append({RUNG: rung, SIGNAL: name, RHO: rho, N: n, TOP_STOPPED: top_stopped})
    return pd.DataFrame(rows, columns=[RUNG, SIGNAL, RHO, N, TOP_STOPPED])


def pooled(tables: pd.DataFrame) -> pd.DataFrame:
    """Per (FAMILY, RUNG, SIGNAL) over the studies in `tables` (fidelity tables with FAMILY and
    STUDY columns): studies, mean/min/max rho, mean share of the top quarter stopped, trials."""
    grouped = tables.groupby([FAMILY, RUNG, SIGNAL], sort=True)
    out = grouped.agg(studies=(STUDY, "nunique"), rho_mean=(RHO, "mean"), rho_min=(RHO, "min"),
                      rho_max=(RHO, "max"), top_quarter_stopped_mean=(TOP_STOPPED, "mean"),
                      n_trials=(N, "sum"))
    return out.reset_index()


def choose(pooled_table: pd.DataFrame) -> tuple[str, int]:
    """(signal, rung) by the module docstring's rule, over the signals every family has."""
    shared = set.intersection(*(set(g[SIGNAL]) for _, g in pooled_table.groupby(FAMILY)))
    frame = pooled_table[pooled_table[SIGNAL].isin(shared)]
    score = frame.groupby([SIGNAL, RUNG]).agg(stopped=("top_quarter_stopped_mean", "mean"),
                                             rho=("rho_mean", "mean")).reset_index()
    best = score.sort_values(["stopped", "rho", RUNG], ascending=[True, False, True]).iloc[0]
    return str(best[SIGNAL]), int(best[RUNG])


# ---------------------------------------------------------------- running

def run_study(family: str, args: argparse.Namespace, extra: list[str], suffix: str = "") -> Path:
    """One random-sampler, no-scheduler study (skipped when its history exists); its directory."""
    study_dir = args.out_dir / f"fidelity-{family}{suffix}-seed{args.seed}"
    if (study_dir / R.HISTORY_FILE).exists():
        return study_dir
    command = [sys.executable, "-m", "study.launch", "--family", family, "--name", study_dir.name,
               "--sampler", "random", "--scheduler", "none", "--seed", str(args.seed),
               "--trials", str(args.trials), "--num-cpus", str(args.num_cpus),
               "--dashboard-port", str(free_port()), "--storage-path", str(study_dir.parent),
               *PRESET_FLAGS[args.preset], *(["--data-dir", args.data_dir] if args.data_dir else []), *extra]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL if args.quiet else None)
    return study_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="flags after -- go to python -m study.launch unchanged",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    p.add_argument("--from-study", nargs="+", type=Path, metavar="DIR",
                   help="read these finished studies' history.parquet instead of running any")
    p.add_argument("--trials", type=int, default=16, help="trials per study (default 16)")
    p.add_argument("--gan-ema", type=float, default=0.0, metavar="DECAY",
                   help="also run a GAN study whose trials average the generator's weights (e.g. 0.99)")
    p.add_argument("--seed", type=int, default=0, help="the studies' --seed")
    p.add_argument("--preset", choices=list(PRESET_FLAGS), default="quick", help="the launcher's preset")
    p.add_argument("--rungs", nargs="+", type=int, default=list(RUNGS), help="candidate rungs (epochs)")
    p.add_argument("--reduction-factor", type=float, default=2.0, help="ASHA's (the quick preset's: 2)")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of each study's local Ray")
    p.add_argument("--data-dir", help="directory holding MNIST/raw/ (passed to the launcher)")
    p.add_argument("--out-dir", type=Path, help="where the studies go (default results/bench-fidelity; "
                   "--smoke-test: a new temporary directory)")
    p.add_argument("--quiet", action="store_true", help="hide the launcher's output")
    p.add_argument("--smoke-test", action="store_true", help="tiny: 1 family (vae), 4 trials, smoke preset")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.smoke_test:
        args.families, args.trials, args.preset = ["vae"], 4, "smoke"
        args.out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="bench-fidelity-"))
    args.out_dir = (args.out_dir or ROOT / "results" / "bench-fidelity").resolve()
    if args.trials < 3 or args.reduction_factor <= 1 or min(args.rungs) < 1:
        print(f"error: --trials {args.trials}, --reduction-factor {args.reduction_factor:g}, --rungs "
              f"{args.rungs}: need at least 3 trials, a factor above 1 and rungs from 1.", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.from_study:
        missing = [d for d in args.from_study if not (d / R.HISTORY_FILE).is_file()]
        if missing:
            print(f"error: --from-study {missing[0]}: no {R.HISTORY_FILE} (not a finished study).",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        dirs = list(args.from_study)
    else:
        try:
            dirs = [run_study(family, args, extra) for family in args.families]
            if args.gan_ema and "gan" in args.families:
                dirs.append(run_study("gan", args, [*extra, "--gan-ema", str(args.gan_ema)], suffix="-ema"))
        except subprocess.CalledProcessError as exc:
            return launcher_failed(exc)
    tables = []
    for study_dir in dirs:
        history = pd.read_parquet(study_dir / R.HISTORY_FILE)
        family = ",".join(sorted(set(history[R.FAMILY]))) if R.FAMILY in history else "?"
        table = fidelity_table(history, args.rungs, args.reduction_factor, ema=averaged(study_dir))
        print(f"\n== {study_dir.name} ({family}): {len(final_fids(history))} trials trained to epoch "
              f"{int(history[R.EPOCH].max())}, ASHA reduction factor {args.reduction_factor:g}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        tables.append(table.assign(**{FAMILY: family, STUDY: study_dir.name}))
    per_study = pd.concat(tables, ignore_index=True)
    summary = pooled(per_study)
    print("\n== pooled per family (mean over studies; rho min..max)")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    columns = [STUDY, FAMILY, RUNG, SIGNAL, RHO, N, TOP_STOPPED]
    per_study[columns].to_csv(args.out_dir / TABLE_CSV, index=False)
    summary.to_csv(args.out_dir / POOLED_CSV, index=False)
    print(f"\ntables: {args.out_dir / TABLE_CSV}, {args.out_dir / POOLED_CSV}")
    if not summary.empty and summary[RHO + "_mean"].notna().any():
        signal, rung = choose(summary)
        print(f"\nchoice (least of the top quarter stopped, then highest rho, then earliest rung): "
              f"signal {signal}, first rung epoch {rung}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
