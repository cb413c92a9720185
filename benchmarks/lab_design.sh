#!/bin/bash
# The quick preset's design, checked on real studies (issue 28, item 7): today's quick search
# (8 trials, ASHA's one rung at epoch 4) against the lab's proposal (more trials, rungs at epochs
# 1, 2 and 4), paired by seed. benchmarks/lab_check.py --real benchmarks/results/lab/design then
# compares each study's pick and compute with the lab's range for its arm.
#   bash benchmarks/lab_design.sh FAMILY "SEEDS" PROPOSED_TRIALS [RUNS_DIR] [FACTOR]
#   e.g. nice -n 10 bash benchmarks/lab_design.sh vae "0 1 2 3 4" 16 ../lab-runs 3   # ~4 min a seed
# FACTOR: the proposal's reduction factor (default 2: rungs 1, 2, 4; 3: rungs 1, 3).
# Run it from a separate worktree at a fixed commit. Finished studies' tables are copied to
# benchmarks/results/lab/design/NAME/ (study.json, trials.parquet, history.parquet); an interrupted
# study resumes. LAUNCH_FLAGS: more launcher flags for a new study.
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILY=$1; SEEDS=$2; PROPOSED=$3; RUNS=${4:-../lab-runs}; FACTOR=${5:-2}
PY=${PYTHON:-python}
mkdir -p "$RUNS" benchmarks/results/lab/design
for SEED in $SEEDS; do
  # name, then the flags that differ from the quick preset
  for DESIGN in "today-8:--trials 8" "g1r$FACTOR-$PROPOSED:--trials $PROPOSED --grace-period 1 --reduction-factor $FACTOR"; do
    NAME=$FAMILY-design-${DESIGN%%:*}-s$SEED
    OUT=benchmarks/results/lab/design/$NAME
    if [ -f "$OUT/trials.parquet" ]; then echo "$NAME: done"; continue; fi
    if [ -d "$RUNS/$NAME" ]; then
      echo "$NAME: $(date -u +%H:%M:%S) resume"
      "$PY" -m study.launch --family "$FAMILY" --name "$NAME" --storage-path "$RUNS" --resume
    else
      echo "$NAME: $(date -u +%H:%M:%S) start"
      # shellcheck disable=SC2086
      "$PY" -m study.launch --family "$FAMILY" --quick --scheduler asha --sampler tpe ${DESIGN#*:} \
        --seed "$SEED" --name "$NAME" --storage-path "$RUNS" --inception none \
        ${DATA_DIR:+--data-dir "$DATA_DIR"} ${LAUNCH_FLAGS:-}
    fi
    mkdir -p "$OUT"
    cp "$RUNS/$NAME"/{study.json,trials.parquet,history.parquet} "$OUT/"
  done
done
