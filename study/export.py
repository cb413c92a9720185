"""`python -m study.export results/<name>`: rebuild trials.parquet, history.parquet and
best_samples.png of a finished study directory (e.g. after the launcher died while exporting);
early-stopped trials are test-evaluated in this process, and so are the picked VAE trials' likelihood
when the launcher did not get to it. The export itself is study/engine/trial_tables.py.
"""

from __future__ import annotations

import argparse
import sys

from search_spaces import seed_configs
from study import results as R
from study.engine.plan import StudyPlan
from study.engine.trial_tables import export_study, has_experiment_state, in_process_evaluator, summary_table
from study.followups.picked_nll import score_in_process
from study.store import StudyStore


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m study.export",
        description="Rebuild trials.parquet / history.parquet / best_samples.png of a finished study "
        "directory written by python -m study.launch (early-stopped trials are test-evaluated here, "
        "in this process).",
    )
    p.add_argument("study_dir", help="results/<name>, or a URI such as s3://bucket/results/<name>")
    p.add_argument("--data-dir", help="MNIST directory (default: the one the study used)")
    args = p.parse_args(argv)
    store = StudyStore(args.study_dir)  # the study directory, wrapped once
    if not store.has(R.STUDY_JSON):
        print(f"error: {args.study_dir} holds no {R.STUDY_JSON}; pass a directory written by "
              "python -m study.launch", file=sys.stderr)
        return R.EXIT_BAD_INPUT
    try:
        plan = StudyPlan.from_json(store.read_text(R.STUDY_JSON))
    except (ValueError, TypeError, KeyError) as exc:  # not JSON, or not the launcher's settings
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        print(f"error: {store.study_json} is not a {R.STUDY_JSON} written by python -m study.launch "
              f"({why}); pass the directory of a study the launcher wrote", file=sys.stderr)
        return R.EXIT_BAD_INPUT
    if not has_experiment_state(store):
        print(f"error: {args.study_dir} holds {R.STUDY_JSON} but no Ray experiment state "
              "(experiment_state-*.json): the study never started its trials, so there is nothing to export; "
              "run it again with python -m study.launch", file=sys.stderr)
        return R.EXIT_BAD_INPUT
    exported = export_study(store, plan.name, seed_configs(plan.family, plan.space()),
                            in_process_evaluator(plan, args.data_dir or plan.data_dir))
    # the picked VAE trials' likelihood, when the launcher did not get to it (a re-export keeps it)
    scored = score_in_process(plan, store, args.data_dir)
    print(summary_table(exported.trials if scored is None else scored))
    return 0


if __name__ == "__main__":
    sys.exit(main())
