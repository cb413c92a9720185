"""The search lab: judge the search with hundreds of paired simulated studies (issue 28).

    python benchmarks/lab.py --studies STUDY_DIR ... --out-dir benchmarks/results/lab [--resume]
    python benchmarks/lab.py --summarize --out-dir benchmarks/results/lab
    python benchmarks/lab.py --smoke-test

The table is a list of launcher study directories (study.json, trials.parquet, history.parquet), or
folders holding them: every epoch of every trial. It fits a surrogate per family
(benchmarks/lab_surrogate.py), prints its k-fold validation, and runs the protocol
(benchmarks/lab_protocol.py) on the simulator (benchmarks/lab_sim.py): studies of --trials trials
on --workers workers for every sampler and scheduler, --reps paired repetitions each, most
important arms first, within --cpu-minutes of CPU; `--resume` continues. It writes
<out>/lab_summary.csv, <out>/lab_anytime.png, <out>/lab_table.json and the repetitions under
<out>/reps/. A table that is not random draws run to the end at full size is PROVISIONAL, and every
output says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/lab.py` from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import lab_protocol as P  # noqa: E402
from benchmarks.lab_sim import LAB_SAMPLERS, SCHEDULER_VARIANTS  # noqa: E402
from benchmarks.lab_surrogate import clock_machine, cross_validate, gpu_names, load_table  # noqa: E402
from study import results as R  # noqa: E402

PROVISIONAL_STUDIES = ROOT / "benchmarks" / "results" / "bench-search" / "studies"
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--studies",
        nargs="+",
        type=Path,
        default=[PROVISIONAL_STUDIES],
        help="study directories, or folders of them (default: the 18 bench_search studies, a "
        "provisional table)",
    )
    p.add_argument("--families", nargs="+", choices=("gan", "vae"), default=["gan", "vae"])
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results" / "lab")
    p.add_argument("--reps", type=int, default=200, help="paired repetitions per arm (default 200)")
    p.add_argument("--trials", nargs="+", type=int, default=[16, 64])
    p.add_argument("--workers", nargs="+", type=int, default=[2, 8])
    p.add_argument(
        "--samplers",
        nargs="+",
        choices=LAB_SAMPLERS,
        default=["random", "qmc", "tpe", "tpe-default"],
        help="gp too where time allows (~2 s per ask at 16 trials)",
    )
    p.add_argument(
        "--schedulers", nargs="+", choices=tuple(SCHEDULER_VARIANTS), default=list(SCHEDULER_VARIANTS)
    )
    p.add_argument("--cpu-minutes", type=float, default=40.0, help="stop after this much CPU (default 40)")
    p.add_argument("--folds", type=int, default=5, help="k of the surrogate's k-fold validation")
    p.add_argument("--cv-repeats", type=int, default=3, help="repetitions of the k-fold split (default 3)")
    p.add_argument("--resume", action="store_true", help="add to the repetitions already in --out-dir")
    p.add_argument("--summarize", action="store_true", help="only redraw the summary and figure")
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help="2 repetitions of 8-trial studies, 4 arms, into a temporary directory",
    )
    return p


def study_dirs(paths: list[Path]) -> list[Path]:
    """The study directories among `paths` and their immediate subfolders."""
    found = []
    for path in paths:
        if (path / R.STUDY_JSON).is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(d for d in path.iterdir() if (d / R.STUDY_JSON).is_file())
    return found


def table_names(dirs: list[Path]) -> list[str]:
    """The table's studies as recorded in lab_table.json: relative to the repository when inside it."""
    names = []
    for d in dirs:
        resolved = d.resolve()
        names.append(str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved))
    return sorted(names)


def family_names(dirs: list[Path], family: str) -> list[str]:
    """table_names of the `family` studies among `dirs`."""
    return table_names([d for d in dirs if json.loads((d / R.STUDY_JSON).read_text())["family"] == family])


def table_mismatch(recorded: dict, names: dict[str, list[str]]) -> str | None:
    """Why the repetitions on file (lab_table.json's `recorded`) cannot be added to with the tables
    `names` (family -> its studies), or None. A family is checked against its own studies, so that the
    families of one directory can be run (and their tables finished) one after the other; a
    lab_table.json without them (written before) holds one list for all families."""
    for family, studies in sorted(names.items()):
        if family not in recorded.get("families", {}):
            continue  # not run into this directory yet
        info = recorded["families"][family]
        if "studies" in info:
            if info["studies"] != studies:
                return (f"its {family} repetitions were run on another {family} table "
                        f"({len(info['studies'])} studies, now {len(studies)})")
        elif recorded.get("studies") is not None and not set(studies) <= set(recorded["studies"]):
            return f"its repetitions were run on another table ({len(recorded['studies'])} studies)"
    return None


def table_clocks(table_json: dict) -> dict[str, str]:
    """Per family, whose seconds its table's clock counts: the GPU model, or "CPU", that ran most of
    its runs (lab_surrogate.clock_machine, as load_table decides), read from the studies'
    trials.parquet (relative to the repository); {} when unread."""
    clocks = {}
    for family, info in table_json.get("families", {}).items():
        names = []
        for study in info.get("studies", []):
            path = ROOT / study / R.TRIALS_FILE  # an absolute study path stays absolute
            if not path.exists():
                continue
            names.append(gpu_names(pd.read_parquet(path)))
        if names:
            clocks[family] = clock_machine(pd.concat(names, ignore_index=True))
    return clocks


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke_test:
        args.out_dir = Path(tempfile.mkdtemp(prefix="lab-smoke-"))
        args.reps, args.trials, args.workers = 2, [8], [2]
        args.samplers, args.schedulers, args.folds = ["random", "tpe"], ["none", "asha"], 3
        args.cv_repeats = 1
    if min(args.reps, *args.trials, *args.workers) < 1:
        return fail("--reps, --trials and --workers must be positive")
    if args.summarize:
        return summarize(args.out_dir)
    dirs = study_dirs(args.studies)
    if not dirs:
        return fail(f"no study directory (with {R.STUDY_JSON}) among {', '.join(map(str, args.studies))}")
    have = P.done_reps(args.out_dir) if args.out_dir.exists() else None
    if have is not None and not have.empty:
        if not args.resume:
            return fail(
                f"{args.out_dir} already holds {len(have)} repetitions: pass --resume to add to them, or "
                "another --out-dir"
            )
        recorded = json.loads((args.out_dir / P.TABLE_JSON).read_text())
        on_file = set(have["family"])
        mismatch = table_mismatch(recorded, {f: family_names(dirs, f) for f in args.families if f in on_file})
        if mismatch:
            return fail(f"{args.out_dir}: {mismatch}; use another --out-dir")
    try:
        tables = {f: load_table(dirs, f) for f in args.families}
    except (ValueError, KeyError, OSError) as error:
        return fail(f"the table: {error}")
    lines = {}
    for family, table in tables.items():
        print(table.describe())
        for note in sorted(set(table.notes))[:3]:
            print(f"  note: {note}")
        lines[family] = cross_validate(table, folds=args.folds, repeats=args.cv_repeats).line()
        print(f"  {lines[family]}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    P.write_table_json(args.out_dir, {f: family_names(dirs, f) for f in tables}, tables, lines)
    plan = P.tiers(args.trials, args.workers, args.samplers, args.schedulers)
    P.run_protocol(P.Lab.fit(tables), args.out_dir, args.families, plan, args.reps, args.cpu_minutes * 60)
    return summarize(args.out_dir)


def summarize(out_dir: Path) -> int:
    reps = P.done_reps(out_dir)
    if reps.empty:
        return fail(f"no repetitions under {out_dir / P.REPS_DIR}")
    table = json.loads((out_dir / P.TABLE_JSON).read_text())
    reasons = sorted({r for f in table["families"].values() for r in f["provisional"]})
    provisional = "PROVISIONAL: " + "; ".join(reasons) if reasons else ""
    summary = P.summarize(reps, provisional)
    summary.to_csv(out_dir / P.SUMMARY_CSV, index=False, float_format="%.4g")
    P.plot_anytime(reps, out_dir / P.FIGURE, provisional, clocks=table_clocks(table))
    if provisional:
        print(f"*** {provisional} ***")
    for family, info in table["families"].items():
        print(f"{family}: {info['validation']}")
    show = [
        "family",
        "trials",
        "workers",
        "sampler",
        "scheduler",
        "reps",
        "pick_fid_iqm",
        "pick_fid_lo",
        "pick_fid_hi",
        "p_improve",
        "p_improve_lo",
        "p_improve_hi",
        "compute_to_reach_median",
        "cpu_s_per_rep",
    ]
    print(
        summary[[c for c in show if c in summary]].to_string(index=False, float_format=lambda v: f"{v:.3g}")
    )
    print(f"wrote {out_dir / P.SUMMARY_CSV}, {out_dir / P.FIGURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
