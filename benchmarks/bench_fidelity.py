"""Does an early rung predict the end? Rank fidelity of ASHA's decision signal (issue 17, item 3).

    python benchmarks/bench_fidelity.py --data-dir ../shared/data             # gan + vae, 8 trials, quick
    python benchmarks/bench_fidelity.py --from-study results/gan-random-none   # an existing study
    python benchmarks/bench_fidelity.py --data-dir D --smoke-test              # 1 family, 4 trials, smoke

Per family it runs one `python -m study.launch --sampler random --scheduler none` study (every
trial trained to the end), or reads the history.parquet of finished studies (--from-study, e.g.
bench_search's random-none studies), and prints, for each candidate rung (epoch 1, 2, 4 below the
last epoch) and decision signal:

- rho: Spearman's rank correlation, over the trials that reached the last epoch with a finite
  validation FID, between the signal at the rung and the final validation FID (the last epoch's,
  the selection rule's);
- top-quarter stopped: the share of the final top quarter (the ceil(n/4) lowest final FIDs) that
  ASHA at that rung would have stopped: a trial is stopped when its signal is worse than the
  1/reduction-factor quantile of every trial's signal at the rung (the cutoff asynchronous ASHA
  applies to the trial that reaches the rung last).

Signals: `raw`, the validation FID of the rung's epoch (what ASHA reads today); `best`, the lowest
validation FID up to the rung (best so far). Lower is better for both.
"""

from __future__ import annotations

import argparse
import math
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.config import FAMILIES  # noqa: E402
from study import results as R  # noqa: E402

EXIT_BAD_INPUT = 2
RUNGS = (1, 2, 4)
SIGNALS = ("raw", "best")
PRESET_FLAGS = {"smoke": ["--smoke-test"], "quick": ["--quick"], "full": []}
# columns of the table
RUNG, SIGNAL, RHO, N, TOP_STOPPED = "rung", "signal", "rho", "n_trials", "top_quarter_stopped"


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


def fidelity_table(history: pd.DataFrame, rungs: Sequence[int] = RUNGS,
                   reduction_factor: float = 2.0) -> pd.DataFrame:
    """One row per (rung, signal) below the last epoch: RHO, N, TOP_STOPPED (see the module
    docstring)."""
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
            rows.append({RUNG: rung, SIGNAL: signal, RHO: rho, N: n, TOP_STOPPED: top_stopped})
    return pd.DataFrame(rows, columns=[RUNG, SIGNAL, RHO, N, TOP_STOPPED])


# ---------------------------------------------------------------- running

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_study(family: str, args: argparse.Namespace, extra: list[str]) -> Path:
    """One random-sampler, no-scheduler study (skipped when its history exists); its directory."""
    study_dir = args.out_dir / f"fidelity-{family}-seed{args.seed}"
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
    p.add_argument("--trials", type=int, default=8, help="trials per study (default 8)")
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
    dirs = args.from_study or [run_study(family, args, extra) for family in args.families]
    for study_dir in dirs:
        path = study_dir / R.HISTORY_FILE
        if not path.is_file():
            print(f"error: --from-study {study_dir}: no {R.HISTORY_FILE} (not a finished study).",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        history = pd.read_parquet(path)
        family = ",".join(sorted(set(history[R.FAMILY]))) if R.FAMILY in history else "?"
        table = fidelity_table(history, args.rungs, args.reduction_factor)
        print(f"\n== {study_dir.name} ({family}): {len(final_fids(history))} trials trained to epoch "
              f"{int(history[R.EPOCH].max())}, ASHA reduction factor {args.reduction_factor:g}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
