"""`python -m study.launch --family both`: the whole comparison in one command.

    python -m study.launch --family both --quick --name cmp --data-dir ../shared/data
    python -m study.launch --family both --name cmp --resume        # after an interruption

Runs, one after the other and with the same flags (the same protocol: preset, epochs, subsets, eval
samples, seed), the GAN study `<name>-gan` and the VAE study `<name>-vae`, each followed by the
replicates of its top configurations (`--replicate-top`, default 1, and its seed configurations, with
`--replicate-seeds` new seeds, default 3; smoke 2), then the report (`python -m analysis.report`'s
main, which study/launch.py hands in: the launcher's library does not import analysis) into
`<name>-report/`, and ends with the verdict lines and the path of report.html. Every stage runs in
this process, one after the other, each on a Ray of its own (study/engine/command.py).

`--resume` resumes the whole: a study whose tables and replicates are written is skipped, a study whose
search finished goes on with its replicates (as `python -m study.replicate` continues them), an
interrupted study is resumed (`--resume` of its own), a study not yet begun starts; the report is
rebuilt. Each part stays usable on its own: the study directories are ordinary studies, and the
report is the ordinary command over them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from models.config import FAMILY_GAN as GAN
from models.config import FAMILY_VAE as VAE
from models.config import ConfigError
from study import results as R
from study.engine.plan import check_storage
from study.engine.spec import SMOKE_PRESET
from study.followups.followup_commands import replicate_command
from study.launcher.launch_plan import LaunchSpec
from study.store import StudyStore, is_uri

BOTH_TOP = 1
BOTH_SEEDS = 3
SMOKE_SEEDS = 2
REPORT_SUFFIX = "report"
FAMILIES_IN_ORDER = (GAN, VAE)


def study_names(base: str) -> dict[str, str]:
    return {family: f"{base}-{family}" for family in FAMILIES_IN_ORDER}


def family_spec(spec: LaunchSpec, family: str, name: str) -> LaunchSpec:
    """The spec of one family's study: the shared flags, its family and name, replicates on."""
    study = replace(spec.study, family=family, name=name,
                    gan_ema=spec.study.gan_ema if family == GAN else 0.0)  # --gan-ema is the GAN study's
    seeds = spec.replicate_seeds
    if seeds is None:
        seeds = SMOKE_SEEDS if spec.study.preset == SMOKE_PRESET else BOTH_SEEDS
    return replace(spec, study=study, replicate_seeds=seeds,
                   replicate_top=spec.replicate_top if spec.replicate_top is not None else BOTH_TOP)


def _state(store: StudyStore) -> str:
    """done (tables and replicates), searched (tables only), interrupted, new."""
    if store.has(R.TRIALS_FILE):
        return "done" if store.has(R.REPLICATES_FILE) else "searched"
    from ray import tune  # only here: the refusals of launch_both come before Ray loads

    if tune.Tuner.can_restore(store.uri):
        return "interrupted"
    return "new"


def _replicates(one: LaunchSpec, study: StudyStore) -> int:
    """Continue a finished search's replicates in this process, on the comparison's Ray settings (what
    `python -m study.replicate` does, which resumes them)."""
    assert one.replicate_top is not None and one.replicate_seeds is not None  # family_spec sets both
    return replicate_command(study, one.replicate_top, one.replicate_seeds, None, one.ray)


def report_argv(spec: LaunchSpec, dirs: list[StudyStore], out: str) -> list[str]:
    """The report's arguments (`python -m analysis.report ARGV`): both studies, into `out`."""
    argv = [*(str(d) for d in dirs), "--out", out, "--overwrite"]
    if spec.study.preset == SMOKE_PRESET:
        argv.append("--smoke-test")
    if spec.study.data_dir:
        argv += ["--data-dir", spec.study.data_dir]
    return argv


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return R.EXIT_BAD_INPUT


def launch_both(spec: LaunchSpec, launch_one: Callable[[LaunchSpec], int],
                report: Callable[[list[str]], int]) -> int:
    """Both studies, their replicates and the report, in this process; `launch_one(spec)` runs one study
    (study.launch's checks, then the pipeline), `report(argv)` the report (analysis.report's main): the
    command hands both in, since the launcher imports no command and no analysis."""
    flags = spec.study
    if spec.resume and not flags.name:
        return _refuse("--family both --resume needs the --name the comparison was started with.")
    try:
        check_storage(flags.storage_path)
    except ConfigError as exc:
        return _refuse(str(exc))
    if is_uri(flags.storage_path):
        return _refuse("--family both writes its report locally: use a local --storage-path.")
    base = flags.name or f"both-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = str(Path(flags.storage_path).resolve())
    names = study_names(base)
    dirs = {family: StudyStore(f"{storage}/{name}") for family, name in names.items()}
    if not spec.resume:
        taken = [str(d) for d in dirs.values() if d.is_nonempty_dir()]
        if taken:
            return _refuse(f"--name {base}: {', '.join(taken)} already exist(s); pass --resume to continue "
                           "that comparison, or choose another --name (nothing was changed).")
    report_dir = f"{storage}/{base}-{REPORT_SUFFIX}"
    resume_hint = (f"  python -m study.launch --family both --name {base} "
                   f"--storage-path {flags.storage_path} --resume")
    print(f"comparison {base}: studies {names[GAN]} and {names[VAE]} (same flags), their replicates, "
          f"then the report in {report_dir}", flush=True)
    for family in FAMILIES_IN_ORDER:
        one = family_spec(spec, family, names[family])
        state = _state(dirs[family]) if spec.resume else "new"
        print(f"\n== {family.upper()} study {names[family]} ({state}) ==", flush=True)
        if state == "done":
            continue
        if state == "searched":
            rc = _replicates(one, dirs[family])
        else:
            rc = launch_one(replace(one, resume=state == "interrupted"))
        if rc != 0:
            if rc != R.EXIT_BAD_INPUT:
                print(f"the comparison stopped at the {family.upper()} study; continue it with\n"
                      f"{resume_hint}", file=sys.stderr)
            return rc
    print("\n== report ==", flush=True)
    rc = report(report_argv(spec, [dirs[f] for f in FAMILIES_IN_ORDER], report_dir))
    if rc != 0:
        print(f"the report failed; rebuild it with\n  python -m analysis.report {dirs[GAN]} {dirs[VAE]} "
              f"--out {report_dir} --overwrite", file=sys.stderr)
        return rc
    print(f"\nreport: {report_dir}/report.html", flush=True)
    return 0
