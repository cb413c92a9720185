"""Training throughput of the four seed architectures at their printed sizes.

    python benchmarks/bench_train.py --data-dir ../shared/data [--images 10000] [--device cuda]

Prints parameter counts and images/s of one training epoch (evaluation off) per architecture.
"""

from __future__ import annotations

import argparse

import torch

from models import TrainConfig, seed_model_config
from models.config import ARCHS
from study import results as R
from study.data import load_splits
from study.devices import pick_device
from study.loop.trial import run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=10_000, help="training images in the timed epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device")
    args = parser.parse_args()
    device = pick_device(args.device)
    data = load_splits(args.data_dir, train_subset=args.images)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"images/epoch={len(data.train)}")
    print(f"{'family/arch':<12} {'params':>10} {'epoch s':>8} {'images/s':>9}")
    for family, archs in ARCHS.items():
        for arch in archs:
            config = TrainConfig(model=seed_model_config(family, arch), epochs=1, batch_size=args.batch_size)
            row = run_trial(config, data, device=device).summary
            print(f"{family + '/' + arch:<12} {row[R.PARAMS_TOTAL]:>10,} {row[R.TRAIN_SECONDS]:>8.1f} "
                  f"{row[R.IMAGES_PER_S]:>9.0f}")


if __name__ == "__main__":
    main()
