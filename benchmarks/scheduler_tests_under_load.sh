#!/usr/bin/env bash
# The tests that assert a scheduler decision, N runs in a row (default 3), beside a CPU-bound busy
# loop on every core: their decisions must not depend on timing.
#
#   bash benchmarks/scheduler_tests_under_load.sh [RUNS] [NICE]
#
# NICE (default 15) is the busy loops' niceness. Ray starts its workers at niceness 15, so loops at
# 0 leave each trial a few percent of a core (measured with a GAN study beside them: 4 %, and a run
# took 31 min against 6.5 at 15); at 15 the loops and the trials share the cores evenly. Prints each run's pytest summary and exit
# status; exits non-zero when any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
NICE=${2:-15}
PYTHON=${PYTHON:-.venv/bin/python}
TESTS=(
  "tests/test_launch.py::test_a_four_trial_gan_study_runs_with_the_dashboard_and_exports_its_tables"
  "tests/test_launch.py::test_a_four_trial_vae_pareto_study_on_uri_storage_records_the_vae_metrics"
  "tests/test_launch.py::test_an_interrupted_study_resumes_without_rerunning_finished_trials"
  "tests/test_faults.py::test_a_restored_asha_judges_resumed_trials_against_the_rungs_recorded_before"
  "tests/test_faults.py::test_a_killed_launcher_resumes_at_once_and_leaves_no_process_behind"
  "tests/test_search.py"
)
loops=()
for _ in $(seq "$(nproc)"); do
  nice -n "$NICE" python3 -c "while True: pass" &
  loops+=($!)
done
trap 'kill "${loops[@]}" 2>/dev/null' EXIT
echo "$(nproc) busy loops at niceness $NICE; $RUNS runs of ${#TESTS[@]} test targets"
failed=0
for i in $(seq "$RUNS"); do
  echo "== run $i $(date +%T)"
  "$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}" 2>&1 | tail -3
  rc=${PIPESTATUS[0]}
  echo "rc $rc $(date +%T)"
  [ "$rc" -eq 0 ] || failed=1
done
exit "$failed"
