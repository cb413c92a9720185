"""`python -m study.launch --family both`: the whole comparison in one command.

    python -m study.launch --family both --quick --name cmp --data-dir ../shared/data
    python -m study.launch --family both --name cmp --resume        # after an interruption

Runs, one after the other and with the same flags (the same protocol: preset, epochs, subsets, eval
samples, seed), the GAN study `<name>-gan` and the VAE study `<name>-vae`, each followed by the
replicates of its top configurations (`--replicate-top`, default 1, and its seed configurations, with
`--replicate-seeds` new seeds, default 3; smoke 2), then the report (`python -m analysis.report`,
run as a subprocess: commands and followups do not import analysis) into `<name>-report/`, and ends
with the verdict lines and the path of report.html.

`--resume` resumes the whole: a study whose tables and replicates are written is skipped, a study whose
search finished goes on with its replicates (`python -m study.replicate` continues them), an
interrupted study is resumed (`--resume` of its own), a study not yet begun starts; the report is
rebuilt. Each part stays usable on its own: the study directories are ordinary studies, and the
report is the ordinary command over them.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
from pathlib import Path

from models.config import FAMILY_GAN as GAN
from models.config import FAMILY_VAE as VAE
from models.config import ConfigError
from study import results as R
from study.store import StudyStore, is_uri
from study.tune.plan import check_storage

BOTH_TOP = 1
BOTH_SEEDS = 3
SMOKE_SEEDS = 2
REPORT_SUFFIX = "report"
FAMILIES_IN_ORDER = (GAN, VAE)


def study_names(base: str) -> dict[str, str]:
    return {family: f"{base}-{family}" for family in FAMILIES_IN_ORDER}


def family_args(args: argparse.Namespace, family: str, name: str) -> argparse.Namespace:
    """The flags of one family's study: the shared ones, its family and name, replicates on."""
    one = copy.copy(args)
    one.family, one.name = family, name
    if family != "gan":
        one.gan_ema = 0.0  # --gan-ema is the GAN study's
    one.replicate_top = args.replicate_top if args.replicate_top is not None else BOTH_TOP
    if args.replicate_seeds is None:
        one.replicate_seeds = SMOKE_SEEDS if args.smoke_test else BOTH_SEEDS
    return one


def _state(study_dir: str) -> str:
    """done (tables and replicates), searched (tables only), interrupted, new."""
    store = StudyStore(study_dir)
    if store.exists(store.path(R.TRIALS_FILE)):
        return "done" if store.exists(store.path(R.REPLICATES_FILE)) else "searched"
    from ray import tune  # only here: the refusals of launch_both come before Ray loads

    if tune.Tuner.can_restore(store.uri):
        return "interrupted"
    return "new"


def _replicates(one: argparse.Namespace, study_dir: str) -> int:
    """Continue a finished search's replicates (the ordinary command, which resumes them)."""
    command = [sys.executable, "-m", "study.replicate", study_dir, "--top", str(one.replicate_top),
               "--seeds", str(one.replicate_seeds)]
    return subprocess.call(command)


def _report(args: argparse.Namespace, dirs: list[str], out: str) -> int:
    command = [sys.executable, "-m", "analysis.report", *dirs, "--out", out, "--overwrite"]
    if args.smoke_test:
        command.append("--smoke-test")
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    return subprocess.call(command)


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return R.EXIT_BAD_INPUT


def launch_both(args: argparse.Namespace, launch_one) -> int:
    """Both studies, their replicates and the report; `launch_one(args)` runs one study (study.launch's
    checks, then pipeline.launch)."""
    if args.resume and not args.name:
        return _refuse("--family both --resume needs the --name the comparison was started with.")
    try:
        check_storage(args.storage_path)
    except ConfigError as exc:
        return _refuse(str(exc))
    if is_uri(args.storage_path):
        return _refuse("--family both writes its report locally: use a local --storage-path.")
    base = args.name or f"both-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = str(Path(args.storage_path).resolve())
    names = study_names(base)
    dirs = {family: f"{storage}/{name}" for family, name in names.items()}
    if not args.resume:
        taken = [d for d in dirs.values() if StudyStore(d).is_nonempty_dir()]
        if taken:
            return _refuse(f"--name {base}: {', '.join(taken)} already exist(s); pass --resume to continue "
                           "that comparison, or choose another --name (nothing was changed).")
    report_dir = f"{storage}/{base}-{REPORT_SUFFIX}"
    resume_hint = (f"  python -m study.launch --family both --name {base} --storage-path {args.storage_path} "
                   "--resume")
    print(f"comparison {base}: studies {names[GAN]} and {names[VAE]} (same flags), their replicates, "
          f"then the report in {report_dir}", flush=True)
    for family in FAMILIES_IN_ORDER:
        one = family_args(args, family, names[family])
        state = _state(dirs[family]) if args.resume else "new"
        print(f"\n== {family.upper()} study {names[family]} ({state}) ==", flush=True)
        if state == "done":
            continue
        if state == "searched":
            rc = _replicates(one, dirs[family])
        else:
            one.resume = state == "interrupted"
            rc = launch_one(one)
        if rc != 0:
            if rc != R.EXIT_BAD_INPUT:
                print(f"the comparison stopped at the {family.upper()} study; continue it with\n"
                      f"{resume_hint}", file=sys.stderr)
            return rc
    print("\n== report ==", flush=True)
    rc = _report(args, [dirs[f] for f in FAMILIES_IN_ORDER], report_dir)
    if rc != 0:
        print(f"the report failed; rebuild it with\n  python -m analysis.report {dirs[GAN]} {dirs[VAE]} "
              f"--out {report_dir} --overwrite", file=sys.stderr)
        return rc
    print(f"\nreport: {report_dir}/report.html", flush=True)
    return 0
