"""`python -m study.evaluate`: the metrics' reference floors, and the evaluation of a saved trial.

    python -m study.evaluate --reference --data-dir ../shared/data
    python -m study.evaluate --checkpoint runs/trial/checkpoints/final.pt [--inception] [--samples N]

A checkpoint's metrics are printed and written as JSON next to it (final.pt -> final.metrics.json)
or to --out; each record carries the trial's full config, the feature-network hash and the
environment. Bad input exits with status 2 and writes nothing.

The reference floors themselves are computed in study/metrics/floors.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import CheckpointError, load_model
from models.config import FAMILY_VAE, ConfigError
from study import results as R
from study import smoke as SMOKE
from study.data import DataNotFoundError, load_splits
from study.devices import environment, pick_device
from study.loop.summary import config_columns
from study.metrics.classifier import FeatureNetError, load_featurenet
from study.metrics.domain import KID_SUBSETS
from study.metrics.evaluator import TrialEvaluator
from study.metrics.floors import BLUR_SIGMAS, reference_floors
from study.metrics.inception import InceptionUnavailable, inception_weights_path, model_inception_fid
from study.metrics.likelihood import IW_IMAGES, IW_K
from study.metrics.robustness import format_report, inception_degradation, robustness_report
from study.repeat import pinned_threads

# --- the command line ---------------------------------------------------------------------------

class UsageError(ValueError):
    """Bad flags or paths; the message says what to change."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.evaluate",
                                description="Print the metrics' reference floors, or evaluate a saved "
                                            "trial's checkpoint.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--reference", action="store_true",
                      help="FID/KID of 10k training vs 10k test images, IS(test), FID of noise and blurred "
                           "training images, and what the feature network reads (accuracy under blur, noise)")
    mode.add_argument("--checkpoint", type=Path,
                      help="a trial checkpoint, e.g. runs/trial/checkpoints/final.pt")
    p.add_argument("--samples", type=int, default=10_000,
                   help="generated images per metric (--checkpoint) or real images per set (--reference); "
                        "default 10000")
    p.add_argument("--inception", action="store_true",
                   help="also the paper-comparable Inception FID (needs the 'inception' extra; slow without "
                        "a GPU); with --reference: of clean, blurred and pixel-shuffled real digits")
    p.add_argument("--inception-samples", type=int,
                   help="generated and test images for the Inception FID (default: --samples; the protocol "
                        "is 10000)")
    p.add_argument("--iw-k", type=int, default=IW_K,
                   help=f"importance samples per image for the VAE's binarized-test-set NLL (default {IW_K})")
    p.add_argument("--iw-images", type=int, default=IW_IMAGES,
                   help="first N binarized test images for the NLL (default: all 10,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated samples and the KID/IS subsets")
    p.add_argument("--out", type=Path,
                   help="JSON file to write (default: next to the checkpoint; --reference: none)")
    p.add_argument("--data-dir",
                   help="directory holding MNIST/raw/ (default: $STUDY_DATA_DIR, else a download cache)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--smoke-test", action="store_true",
                   help=f"seconds-long run: {SMOKE.EVAL_SAMPLES} samples ({SMOKE.REFERENCE_IMAGES} images "
                        f"for --reference), IW-NLL with k={SMOKE.IW_K} on {SMOKE.IW_IMAGES} images, "
                        f"{SMOKE.INCEPTION_SAMPLES} Inception images")
    return p


@dataclass(frozen=True)
class EvaluateSpec:
    """What `python -m study.evaluate` was asked, checked, with --smoke-test's caps applied."""

    reference: bool
    checkpoint: Path | None
    samples: int
    inception: bool
    inception_samples: int | None
    iw_k: int
    iw_images: int | None
    seed: int
    out: Path | None
    data_dir: str | None
    device: str | None
    smoke_test: bool


def checked_spec(args: argparse.Namespace) -> EvaluateSpec:
    """The spec of the parsed flags; UsageError on anything that cannot work."""
    samples, iw_k, iw_images = args.samples, args.iw_k, args.iw_images
    inception_samples = args.inception_samples
    if args.smoke_test:
        samples = min(samples, SMOKE.REFERENCE_IMAGES if args.reference else SMOKE.EVAL_SAMPLES)
        iw_k = min(iw_k, SMOKE.IW_K)
        iw_images = min(iw_images or SMOKE.IW_IMAGES, SMOKE.IW_IMAGES)
        inception_samples = min(inception_samples or SMOKE.INCEPTION_SAMPLES, SMOKE.INCEPTION_SAMPLES)
    if samples < 2:
        raise UsageError(f"--samples {samples}: FID/KID/IS need at least 2 images")
    if inception_samples is not None and inception_samples < 2:
        raise UsageError(f"--inception-samples {inception_samples}: FID needs at least 2 images")
    if iw_k < 1 or (iw_images is not None and iw_images < 1):
        raise UsageError("--iw-k and --iw-images must be at least 1")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UsageError(f"--checkpoint {args.checkpoint} is not a file: pass a checkpoint written by "
                         "`python -m study.train --out DIR` (DIR/checkpoints/final.pt) or by a Ray trial")
    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out {args.out} is a directory: pass a file name such as "
                         f"{args.out / 'metrics.json'}")
    if args.inception:
        inception_weights_path()  # fail before any slow work when the extra is missing
    return EvaluateSpec(reference=args.reference, checkpoint=args.checkpoint, samples=samples,
                        inception=args.inception, inception_samples=inception_samples, iw_k=iw_k,
                        iw_images=iw_images, seed=args.seed, out=args.out, data_dir=args.data_dir,
                        device=args.device, smoke_test=args.smoke_test)


def _print_table(title: str, values: dict[str, Any]) -> None:
    print(title)
    width = max(map(len, values), default=0)
    for key, value in values.items():
        print(f"  {key:<{width}} {value:.5g}" if isinstance(value, float) else f"  {key:<{width}} {value}")


def _write_json(path: Path, record: dict[str, Any]) -> None:
    R.write_text_atomic(path, json.dumps(record, indent=1, default=str))


def evaluate_checkpoint_file(path: Path, data, *, samples: int, seed: int, device: torch.device,
                             iw_k: int = IW_K, iw_images: int | None = IW_IMAGES,
                             inception_samples: int | None = None) -> dict[str, Any]:
    """Validation and test metrics of a saved trial (+ Inception FID when `inception_samples`): one record."""
    try:
        config, model, raw = load_model(path, map_location=device)
    except CheckpointError as exc:  # already names the file and what to pass
        raise UsageError(f"--checkpoint: {exc}") from None
    except Exception as exc:  # not a trial checkpoint: say so instead of a traceback
        raise UsageError(f"--checkpoint {path} is not a trial checkpoint ({type(exc).__name__}: {exc}); "
                         "pass a checkpoints/*.pt file written by `python -m study.train --out DIR` or a Ray "
                         "trial") from None
    model = model.to(device)
    evaluator = TrialEvaluator(data, num_samples=samples, device=device, seed=seed, iw_k=iw_k,
                               iw_images=iw_images)
    started = time.perf_counter()
    record: dict[str, Any] = {R.CHECKPOINT: str(path), R.EPOCH: raw.get("epoch")}
    with pinned_threads(device):  # as the trial computed its own metrics (study/repeat.py)
        record.update(evaluator.validation(model))
        record.update(evaluator.test(model))
        threads = torch.get_num_threads()
    record[R.EVAL_SECONDS] = time.perf_counter() - started
    if inception_samples:  # the same code as study.launch --inception (study/metrics/inception.py)
        record.update(model_inception_fid(model, seed, inception_samples, data.test.images, device=device,
                                          progress=True))
    record.update({R.FEATURENET_SHA256: evaluator.featurenet_sha256, R.NUM_SAMPLES: samples,
                   R.EVAL_SEED: seed,
                   R.IW_K: iw_k if config.family == FAMILY_VAE else None,
                   R.IW_IMAGES: record.get(R.IW_IMAGES)})
    record.update(config_columns(config))
    record.update(R.params_columns(model.parameter_counts()))
    record.update(environment(device))
    record[R.TORCH_THREADS] = threads  # of the metrics above (the Inception FID: the process's count)
    return record


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = checked_spec(args)
        device = pick_device(spec.device)
        data = load_splits(spec.data_dir)
        if spec.reference:
            net = load_featurenet(device=device)
            print(f"reference floors on {spec.samples} images per set, feature network {net.sha256[:12]}...")
            floors = reference_floors(data, net, num_images=spec.samples, seed=spec.seed, device=device,
                                      kid_subsets=SMOKE.KID_SUBSETS if spec.smoke_test else KID_SUBSETS)
            values = floors._asdict()
            blurred = values.pop("fid_blur_test")
            values.update({f"fid_blur{sigma:g}_test": fid for sigma, fid in zip(BLUR_SIGMAS, blurred,
                                                                                strict=True)})
            values["noise_over_floor"] = floors.fid_noise_test / floors.fid_train_test
            _print_table("reference floors", values)
            # what the feature network reads: accuracy under blur/noise, the FID-vs-blur curve
            print(format_report(robustness_report(net, data, num_images=spec.samples, seed=spec.seed,
                                                  device=device)))
            if spec.inception:  # what blur costs in the paper-comparable metric
                n = spec.inception_samples or spec.samples
                inception = inception_degradation(data, num_images=n, seed=spec.seed, device=device,
                                                  progress=True)
                print(f"Inception FID of {n} training digits vs {n} test digits (FID is biased upward "
                      "below 10,000 images)")
                for name, value in inception.items():
                    print(f"  {name:<16}{value:>10.2f}")
                values.update({f"inception_fid_{name.replace(' ', '')}_test": v
                               for name, v in inception.items()})
                values["inception_images"] = n
            if spec.out:
                _write_json(spec.out, {**values, **environment(device)})
            return 0
        checkpoint = spec.checkpoint
        assert checkpoint is not None  # --reference or --checkpoint: a required group
        inception_samples = (spec.inception_samples or spec.samples) if spec.inception else None
        record = evaluate_checkpoint_file(checkpoint, data, samples=spec.samples, seed=spec.seed,
                                          device=device,
                                     iw_k=spec.iw_k, iw_images=spec.iw_images,
                                     inception_samples=inception_samples)
    except (UsageError, ConfigError, DataNotFoundError, FeatureNetError, InceptionUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return R.EXIT_BAD_INPUT
    out = spec.out or checkpoint.with_suffix(".metrics.json")
    _write_json(out, record)
    metric_keys = [*R.VALIDATION_METRICS, *R.TEST_METRICS, R.EVAL_SECONDS]
    _print_table(f"{record[R.FAMILY]}/{record[R.ARCH]} epoch {record[R.EPOCH]}: {spec.samples} samples",
                 {k: record[k] for k in metric_keys if k in record and not _is_nan(record[k])})
    print(f"wrote {out}")
    return 0


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


if __name__ == "__main__":
    sys.exit(main())
