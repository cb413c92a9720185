"""The library half of `python -m study.replicate` and `python -m study.reproduce` (and of `--family both`,
which continues a finished search's replicates in-process): each command's checks, then its run on Ray,
through the one command wrapper (study/engine/command.py run_command) and the one runner
(study/engine/runner.py)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from study import results as R
from study.engine.command import Command, run_command
from study.engine.plan import check_data
from study.engine.spec import RaySettings
from study.followups.replicate_plan import ReplicatePlan, prepare, summary_table
from study.followups.reproduce_plan import ReproducePlan, check_study_dir
from study.followups.reproduce_plan import summary_table as reproduction_table
from study.store import StudyStore


def _run_modules():
    """(replicate_run, reproduce_run): the modules that run the trials, which import Ray and the metrics,
    loaded only once a command's checks passed."""
    # Ray and the metrics load only now: bad input is refused before without waiting for them
    from study.followups import replicate_run, reproduce_run

    return replicate_run, reproduce_run


def replicate_command(study: StudyStore | str, top: int, seeds: int, epochs: int | None,
                      ray: RaySettings) -> int:
    """`python -m study.replicate` as a library call (study/engine/command.py run_command): the checks,
    then the replicates on Ray, in this process; the exit status. `--family both` continues a finished
    search's replicates with it."""

    def checks() -> ReplicatePlan:
        plan, _, _ = prepare(study, top, seeds, epochs)
        check_data(plan.data_dir)
        return plan

    def start(plan: ReplicatePlan) -> Command[pd.DataFrame]:
        replicate_run, _ = _run_modules()

        def finished(rows: pd.DataFrame) -> int:
            print(f"\n{len(rows)} replicate runs -> {study}/{R.REPLICATES_FILE}")
            print(summary_table(rows))
            return 0

        return Command(ray=ray, run=lambda: replicate_run.run_replicates(plan), finished=finished,
                       interrupted=(f"\nthe replicates of {plan.study} were interrupted; continue them "
                                    f"with the same command:\n  python -m study.replicate {study} "
                                    f"--top {top} --seeds {seeds}"
                                    + (f" --epochs {epochs}" if epochs else "")))

    return run_command(checks, start)


def reproduce_command(resolve: Callable[[], ReproducePlan], ray: RaySettings) -> int:
    """`python -m study.reproduce` as a library call (study/engine/command.py run_command): the plan
    (`resolve()`: ConfigError on bad flags) and its checks, then the reproduction on Ray; the exit status."""

    def checks() -> ReproducePlan:
        plan = resolve()
        check_study_dir(plan)
        check_data(plan.data_dir)
        return plan

    def start(plan: ReproducePlan) -> Command[tuple[pd.DataFrame, pd.DataFrame]]:
        _, reproduce_run = _run_modules()

        def finished(written: tuple[pd.DataFrame, pd.DataFrame]) -> int:
            trials, _ = written
            print(f"\n{len(trials)} rows -> {plan.store}/{R.TRIALS_FILE}\n{reproduction_table(trials)}")
            print(f"compare with the published numbers: python -m analysis.report <studies...> {plan.store}")
            return 0

        return Command(ray=ray, run=lambda: reproduce_run.run_reproduction(plan), finished=finished,
                       interrupted=f"\nthe reproduction {plan.name} was interrupted; continue it with the "
                       "same command.")

    return run_command(checks, start)
