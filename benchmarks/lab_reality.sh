#!/bin/bash
# The search lab's reality check (issue 28, item 6): real quick-preset 64-trial studies, TPE + ASHA and
# random + ASHA, paired by seed, whose picks benchmarks/lab_check.py compares with the simulator's
# range for the same arms. One launcher study per sampler and seed; an interrupted one resumes.
#   bash benchmarks/lab_reality.sh FAMILY "SEEDS" [RUNS_DIR] [TRIALS]
#   e.g. nice -n 10 bash benchmarks/lab_reality.sh vae "0 1" ../lab-runs      # 4 studies, ~15 min each
# Run it from a separate worktree at a fixed commit. Finished studies' tables are copied to
# benchmarks/results/lab/reality/NAME/ (study.json, trials.parquet, history.parquet).
# LAUNCH_FLAGS: more launcher flags for a new study (e.g. "--gpus-per-trial 0.125 --num-cpus 8").
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILY=$1; SEEDS=$2; RUNS=${3:-../lab-runs}; TRIALS=${4:-64}
PY=${PYTHON:-python}
mkdir -p "$RUNS" benchmarks/results/lab/reality
for SEED in $SEEDS; do
  for SAMPLER in tpe random; do
    NAME=$FAMILY-$SAMPLER-asha-s$SEED
    OUT=benchmarks/results/lab/reality/$NAME
    if [ -f "$OUT/trials.parquet" ]; then echo "$NAME: done"; continue; fi
    if [ -d "$RUNS/$NAME" ]; then
      echo "$NAME: $(date -u +%H:%M:%S) resume"
      "$PY" -m study.launch --family "$FAMILY" --name "$NAME" --storage-path "$RUNS" --resume
    else
      echo "$NAME: $(date -u +%H:%M:%S) start"
      "$PY" -m study.launch --family "$FAMILY" --trials "$TRIALS" --quick --scheduler asha --sampler "$SAMPLER" \
        --seed "$SEED" --name "$NAME" --storage-path "$RUNS" --inception none \
        ${DATA_DIR:+--data-dir "$DATA_DIR"} ${LAUNCH_FLAGS:-}
    fi
    mkdir -p "$OUT"
    cp "$RUNS/$NAME"/{study.json,trials.parquet,history.parquet} "$OUT/"
  done
done
