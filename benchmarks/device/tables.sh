#!/bin/bash
# One device call (carry .gpu/t: .gpu/a without fid.part1, no Inception FID here) for the search lab (issue 28) on one GPU:
#  1. the GAN learning-curve table: 4 chunks of 40 random quick-preset trials (seeds 200-203, no
#     scheduler), two launchers at a time, each with its own local Ray of 8 CPUs, 8 trials per GPU;
#  2. the GAN reality check, seed 0: 64-trial quick studies, TPE + ASHA and random + ASHA, side by side
#     (8 trials at a time each: the lab simulates them with W = 8);
#  3. the table's replicated configurations (20 best + 10 random, seeds 300 and 301, 16 per GPU);
#  4. the reality check's seed 1 pair;
# each step only when what is left of BUDGET_S (default 520) seconds covers its estimate from step 1.
# Back in $OUT: tables.tgz (benchmarks/results/lab/tables/gan-*), reality.tgz (the checks' study.json,
# trials.parquet, history.parquet), logs.tgz, util.txt (nvidia-smi every 2 s), stage.txt.
#   here, once: bash benchmarks/device/prepare.sh && mkdir -p .gpu/t && ln -f .gpu/a/* .gpu/t/ && rm .gpu/t/fid.part1
#   then the device tool: run(command="bash benchmarks/device/tables.sh", carry=[".gpu/t"], timeout_s=580)
# A rehearsal on a CPU (tiny sizes, no staging): SKIP_STAGE=1 OUT=/tmp/o PYTHON=.venv/bin/python
#   FAMILY=vae TABLE_TRIALS=2 CHECK_TRIALS=3 LANE="--num-cpus 1" REPL="--best 1 --random 1" bash ...
set -u
T0=$SECONDS; BUDGET_S=${BUDGET_S:-520}
FAMILY=${FAMILY:-gan}; TABLE_TRIALS=${TABLE_TRIALS:-40}; CHECK_TRIALS=${CHECK_TRIALS:-64}
LANE=${LANE:---gpus-per-trial 0.125 --num-cpus 8}
REPL=${REPL:---gpus-per-trial 0.0625 --num-cpus 16}
left() { echo $((BUDGET_S - (SECONDS - T0))); }
if [ -z "${SKIP_STAGE:-}" ]; then
  bash benchmarks/device/stage.sh .gpu/t > $OUT/stage.txt 2>&1; tail -4 $OUT/stage.txt
  export PYTHONPATH=/tmp/site DATA_DIR=/tmp/data PYTHON=python3
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 2 > $OUT/util.txt &
  SMI=$!
fi
export PYTHONUNBUFFERED=1 PYTHON=${PYTHON:-python3} DATA_DIR=${DATA_DIR:-../shared/data}
export STUDY_DATA_DIR=$DATA_DIR
L=/tmp/tables-logs; K=/tmp/tables-keep; rm -rf $L $K /tmp/tables-res /tmp/tables-runs; mkdir -p $L $K
study() {  # study LOG NAME FLAGS...: one launcher study; a finished one is kept for reality.tgz
  local log=$1 name=$2; shift 2
  timeout "$(left)" $PYTHON -m study.launch --name "$name" --storage-path /tmp/tables-res \
    --data-dir "$DATA_DIR" --inception none $LANE "$@" >> $L/$log.txt 2>&1
  local rc=$?; echo "$name exit $rc at $((SECONDS-T0)) s"
  if [ $rc -eq 0 ]; then
    mkdir -p $K/$name && cp /tmp/tables-res/$name/{study.json,trials.parquet,history.parquet} $K/$name/
  fi
}
chunks() {  # chunks LOG FIRST LAST: table chunks one after the other
  LAUNCH_FLAGS="$LANE" timeout "$(left)" bash benchmarks/lab_tables.sh $FAMILY $2 $3 $TABLE_TRIALS \
    /tmp/tables-runs > $L/$1.txt 2>&1
  echo "$1 exit $? at $((SECONDS-T0)) s"
}

# 1. the table
S1=$SECONDS
chunks tabA 200 201 & A=$!
chunks tabB 202 203 & B=$!
wait $A $B
TABLE_S=$((SECONDS-S1))
echo "table: $TABLE_S s, $(ls -d benchmarks/results/lab/tables/$FAMILY-random-s2* 2>/dev/null | wc -l) chunks"
tar czf $OUT/tables.tgz benchmarks/results/lab/tables/$FAMILY-random-s2* 2>/dev/null
CHECK_EST=$((TABLE_S * 3 / 4 + 30))  # 64 trials with ASHA against 2 x 40 without, and the scorings after
CHECK="--family $FAMILY --trials $CHECK_TRIALS --quick --scheduler asha"

# 2. reality check, seed 0
if [ "$(left)" -gt "$CHECK_EST" ]; then
  study realA $FAMILY-tpe-asha-s0 $CHECK --sampler tpe --seed 0 & A=$!
  study realB $FAMILY-random-asha-s0 $CHECK --sampler random --seed 0 & B=$!
  wait $A $B
  tar czf $OUT/reality.tgz -C $K . 2>/dev/null
fi

# 3. replicated configurations
if [ "$(left)" -gt $((TABLE_S / 2 + 20)) ]; then
  timeout "$(left)" $PYTHON benchmarks/lab_replicates.py --tables benchmarks/results/lab/tables \
    --family $FAMILY --runs-dir /tmp/tables-runs --data-dir "$DATA_DIR" $REPL > $L/repl.txt 2>&1
  echo "replicates exit $? at $((SECONDS-T0)) s"
  tar czf $OUT/tables.tgz benchmarks/results/lab/tables/$FAMILY-* 2>/dev/null
fi

# 4. reality check, seed 1
if [ "$(left)" -gt "$CHECK_EST" ]; then
  study realA $FAMILY-tpe-asha-s1 $CHECK --sampler tpe --seed 1 & A=$!
  study realB $FAMILY-random-asha-s1 $CHECK --sampler random --seed 1 & B=$!
  wait $A $B
  tar czf $OUT/reality.tgz -C $K . 2>/dev/null
fi
[ -n "${SMI:-}" ] && kill $SMI
tail -n 3 $L/*.txt
tar czf $OUT/logs.tgz -C $L .
echo "tables.sh done in $((SECONDS-T0)) s"
