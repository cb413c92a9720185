#!/bin/bash
# Learning-curve tables for the search lab (issue 28, item 1): quick-preset trials drawn by the random
# sampler from the launcher's own spaces, each trained to the last epoch (no scheduler), in chunks: one
# launcher study per chunk and sampler seed, so that a finished chunk is a whole study a later session
# can commit and read (benchmarks/lab.py --studies), and an interrupted one resumes with --resume.
#   bash benchmarks/lab_tables.sh FAMILY FIRST_SEED LAST_SEED [TRIALS] [RUNS_DIR]
#   e.g. nice -n 19 bash benchmarks/lab_tables.sh vae 100 107 40 ../lab-runs     # 8 chunks of 40 VAE trials
# LAUNCH_FLAGS: more launcher flags for a new chunk (e.g. "--gpus-per-trial 0.125 --num-cpus 8" on a GPU
# machine: benchmarks/device/tables.sh); PYTHON, DATA_DIR: the interpreter and MNIST's folder.
# Run it from a separate worktree at a fixed commit (git worktree add ../wt-tables <commit>), so that
# edits elsewhere never change a running table. Finished chunks' tables are copied to
# benchmarks/results/lab/tables/FAMILY-random-sSEED/ (study.json, trials.parquet, history.parquet).
# Every chunk starts with the two seed configurations (the launcher's rule), trained with its seed: the lab
# reads them as one configuration each, trained with several seeds (lab_surrogate.LabTable).
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILY=$1; FIRST=$2; LAST=$3; TRIALS=${4:-40}; RUNS=${5:-../lab-runs}
PY=${PYTHON:-python}
mkdir -p "$RUNS" benchmarks/results/lab/tables
for SEED in $(seq "$FIRST" "$LAST"); do
  NAME=$FAMILY-random-s$SEED
  OUT=benchmarks/results/lab/tables/$NAME
  if [ -f "$OUT/trials.parquet" ]; then echo "$NAME: done"; continue; fi
  if [ -d "$RUNS/$NAME" ]; then  # the study's own settings (study.json) come back with --resume
    echo "$NAME: $(date -u +%H:%M:%S) resume"
    "$PY" -m study.launch --family "$FAMILY" --name "$NAME" --storage-path "$RUNS" --resume
  else
    echo "$NAME: $(date -u +%H:%M:%S) start"
    "$PY" -m study.launch --family "$FAMILY" --trials "$TRIALS" --quick --scheduler none --sampler random \
      --seed "$SEED" --name "$NAME" --storage-path "$RUNS" --inception none ${DATA_DIR:+--data-dir "$DATA_DIR"} ${LAUNCH_FLAGS:-}
  fi
  mkdir -p "$OUT"
  cp "$RUNS/$NAME"/{study.json,trials.parquet,history.parquet} "$OUT/"
done
