"""`python -m study.featurenet`: train the feature network, or check a weights file's hash, accuracy
and robustness (study.robustness's table).

The network itself is study/metrics/classifier.py; this file is its command.

    python -m study.featurenet train [--out PATH] [--seed 0] [--epochs 12] [--smoke-test]
    python -m study.featurenet evaluate [--weights PATH] [--fid-images 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from study import smoke as SMOKE
from study.data import DataNotFoundError, MNISTSplits, load_splits
from study.metrics.classifier import (
    ROBUSTNESS_FID_IMAGES,
    SHIPPED_SHA256,
    WEIGHTS_PATH,
    FeatureNet,
    FeatureNetError,
    TrainSettings,
    accuracy,
    load_featurenet,
    save_featurenet,
    train_featurenet,
)
from study.metrics.robustness import format_report, robustness_report
from study.results import EXIT_BAD_INPUT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.featurenet",
                                description="Train or check the MNIST feature network used by FID/KID/IS.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the feature network (seeded, CPU, a few minutes)")
    t.add_argument("--out", type=Path, default=Path("runs/featurenet/featurenet.pt"),
                   help="weights file to write (refused if it exists, unless --force)")
    t.add_argument("--force", action="store_true", help="overwrite --out")
    t.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    t.add_argument("--seed", type=int, default=TrainSettings.seed)
    t.add_argument("--smoke-test", action="store_true", help="1 epoch on 2,048 images: seconds, low accuracy")
    e = sub.add_parser("evaluate",
                       help="test accuracy and SHA-256 of a weights file (default: the shipped one)")
    e.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    e.add_argument("--fid-images", type=int, default=ROBUSTNESS_FID_IMAGES,
                   help="training (and test) images per domain FID of the robustness table "
                        "(default: %(default)s)")
    for q in (t, e):
        q.add_argument("--data-dir",
                       help="directory holding MNIST/raw/ (default: $STUDY_DATA_DIR, else a download cache)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train" and args.out.exists() and not args.force:
            raise FileExistsError(f"--out {args.out} already exists: pass --force to overwrite it, or "
                                  "another --out")
        if args.command == "train" and args.epochs < 1:
            raise ValueError(f"--epochs {args.epochs}: must be at least 1")
        if args.command == "evaluate" and not 2 <= args.fid_images <= ROBUSTNESS_FID_IMAGES:
            raise ValueError(f"--fid-images {args.fid_images}: FID needs between 2 and "
                             f"{ROBUSTNESS_FID_IMAGES} images (the test set's size); pass e.g. "
                             "--fid-images 2000 for a quicker table")
        data = load_splits(args.data_dir)
        net = load_featurenet(args.weights) if args.command == "evaluate" else None
    except (FileExistsError, ValueError, DataNotFoundError, FeatureNetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command == "evaluate":
        assert net is not None  # loaded above
        print(f"weights      {args.weights or WEIGHTS_PATH}\nsha256       {net.sha256}")
        started = time.perf_counter()
        test_acc = accuracy(net, data.test)
        seconds = time.perf_counter() - started
        print(f"test accuracy {test_acc:.4f}  (validation {accuracy(net, data.val):.4f}); "
              f"{len(data.test):,} test images classified in {seconds:.2f} s "
              f"on {torch.get_num_threads()} threads")
        _print_robustness(net, data, args.fid_images)
        return 0

    settings = TrainSettings(epochs=args.epochs, seed=args.seed)
    if args.smoke_test:
        settings = TrainSettings(epochs=1, batch_size=SMOKE.BATCH_SIZE, seed=args.seed,
                                 train_subset=4 * SMOKE.TRAIN_IMAGES)
    started = time.perf_counter()
    net = train_featurenet(data.train, settings)
    seconds = time.perf_counter() - started
    test_acc, val_acc = accuracy(net, data.test), accuracy(net, data.val)
    meta = {**{k: v for k, v in asdict(settings).items() if v is not None},
            "test_accuracy": test_acc, "val_accuracy": val_acc}
    sha = save_featurenet(net, args.out, meta)
    net.sha256 = sha  # the real-statistics cache of the robustness report is keyed by it
    print(f"trained in {seconds:.0f} s: test accuracy {test_acc:.4f}, validation accuracy {val_acc:.4f}")
    print(f"wrote {args.out}\nsha256 {sha}")
    if sha == SHIPPED_SHA256:
        print("identical to the shipped weights")
    elif not args.smoke_test:
        print(f"differs from the shipped weights ({SHIPPED_SHA256[:12]}...); to ship these, copy the file to "
              f"{WEIGHTS_PATH} and set SHIPPED_SHA256 in study/metrics/classifier.py")
    if not args.smoke_test:
        _print_robustness(net, data, ROBUSTNESS_FID_IMAGES)
    return 0


def _print_robustness(net: FeatureNet, data: MNISTSplits, fid_images: int) -> None:
    started = time.perf_counter()
    report = robustness_report(net, data, num_images=fid_images)
    print(format_report(report))
    print(f"(robustness report in {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
