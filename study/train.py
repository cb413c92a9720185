"""`python -m study.train`: train one GAN or VAE configuration without Ray (progress bar, per-epoch
metrics as CSV + JSON, a sample grid per epoch, checkpoints, a final summary).

    python -m study.train --family gan --arch dcgan --epochs 20 --width-scale 0.5 --out runs/dcgan-half
    python -m study.train --family vae --smoke-test --out /tmp/smoke      # seconds

The loop itself is study/loop/trial.py (`run_trial`); this file is its parser and `main`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from models.checkpoint import load_checkpoint
from models.config import ARCHS, FAMILIES, ConfigError, TrainConfig, seed_model_config
from search_spaces import scale_widths
from study import results as R
from study import smoke as SMOKE
from study.data import TRAIN_SIZE, DataNotFoundError, load_splits
from study.devices import pick_device
from study.loop.run_dir import RunDirectory, latest_checkpoint
from study.loop.trial import check_resumable, run_trial
from study.metrics.evaluator import prepare_evaluation

# --- the single-trial runner -----------------------------------------------------------------

def _parse_set(items: list[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set latent_dim=32 or --set "
                              "g_widths=64,32")
        value: Any = text
        for cast in (int, float):
            try:
                value = cast(text)
                break
            except ValueError:
                pass
        if isinstance(value, str) and "," in text:  # a width list; TrainConfig names a non-integer
            value = [int(v) if v.strip().lstrip("-").isdigit() else v for v in text.split(",") if v]
        elif text.lower() in ("true", "false"):
            value = text.lower() == "true"
        changes[key.replace("-", "_")] = value
    return changes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study.train",
        description="Train one GAN or VAE configuration on MNIST (no Ray): progress bar, per-epoch "
        "metrics (CSV + JSON), a sample grid per epoch, checkpoints, and a final summary.",
    )
    p.add_argument("--family", required=True, choices=FAMILIES)
    p.add_argument("--arch", help="dcgan|mlp for gan, conv|mlp for vae (default: dcgan / conv)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--latent-dim", type=int, help="latent size (default: the seed study's)")
    p.add_argument("--width-scale", type=float, default=1.0, help="multiply every layer width, e.g. 0.25")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any model/loop config field, e.g. --set lr_g=1e-4 --set d_widths=32,64 (repeatable)")
    p.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints (default 10)")
    p.add_argument("--eval-samples", type=int, default=10_000,
                   help="generated images for the per-epoch validation FID/KID/IS (0 skips evaluation)")
    p.add_argument("--data-dir",
                   help="directory holding MNIST/raw/ (default: $STUDY_DATA_DIR, else a download cache)")
    p.add_argument("--train-subset", type=int, help="train on the first N images of the training split")
    p.add_argument("--out", default="runs/trial",
                   help="output directory (refused if it holds a run, unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms and cuDNN/cuBLAS settings: a CUDA run repeats exactly "
                   "(slower; a CPU run always repeats)")
    p.add_argument("--smoke-test", action="store_true",
                   help="a seconds-long run: 2 epochs on 512 images at 1/8 width, 256 evaluation samples")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if not args.width_scale > 0:
        raise ConfigError(f"--width-scale {args.width_scale}: must be > 0 (0.25 quarters every layer width)")
    arch = args.arch or ARCHS[args.family][0]
    config = TrainConfig(model=seed_model_config(args.family, arch), epochs=args.epochs, seed=args.seed,
                         batch_size=args.batch_size, checkpoint_every=args.checkpoint_every,
                         eval_samples=args.eval_samples, train_subset=args.train_subset,
                         deterministic=args.deterministic)
    if args.smoke_test:
        config = config.replace(epochs=SMOKE.EPOCHS, train_subset=SMOKE.TRAIN_IMAGES,
                                eval_samples=min(args.eval_samples, SMOKE.EVAL_SAMPLES),
                                batch_size=SMOKE.BATCH_SIZE)
    width_scale = args.width_scale * (SMOKE.WIDTH_SCALE if args.smoke_test else 1.0)
    if width_scale != 1.0:
        config = scale_widths(config, width_scale)
    if args.latent_dim is not None:
        config = config.replace(latent_dim=args.latent_dim)
    changes = _parse_set(args.set)
    return config.replace(**changes) if changes else config


def _checked_run(args: argparse.Namespace) -> tuple[TrainConfig, Path, dict[str, Any] | None]:
    """The config, output directory and checkpoint to resume from, each checked (ConfigError if not)."""
    config = config_from_args(args)
    out = Path(args.out)
    images = min(config.train_subset or TRAIN_SIZE, TRAIN_SIZE)
    if config.batch_size > images:
        raise ConfigError(f"--batch-size {config.batch_size}: larger than the {images} training images; "
                          "give a smaller --batch-size (or a larger --train-subset)")
    unwritable = R.unwritable_reason(out)
    if unwritable:
        raise ConfigError(f"--out {out}: {unwritable}; choose a directory you can write, "
                          "e.g. --out runs/trial")
    if not args.resume:
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"--out {out} already holds files; pass --resume to continue that run, "
                              "or choose a new --out directory (nothing was overwritten)")
        return config, out, None
    ckpt_path = latest_checkpoint(out)
    if ckpt_path is None:
        raise ConfigError(f"--resume: no checkpoint in {out / R.CHECKPOINTS_DIR}; run without "
                          "--resume first")
    resume = load_checkpoint(ckpt_path)
    check_resumable(config, resume)
    print(f"resuming from {ckpt_path} (epoch {resume['epoch']})")
    return config, out, resume


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config, out, resume = _checked_run(args)
        device = pick_device(args.device)
        data = load_splits(args.data_dir, train_subset=config.train_subset)
    except (ConfigError, DataNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return R.EXIT_BAD_INPUT

    evaluator = None
    if config.eval_samples > 0:  # the feature network loads only when evaluation is on
        evaluator = prepare_evaluation(data, device, splits=()).evaluator(config, data, device)
    run_dir = RunDirectory(out, history=resume["history"] if resume is not None else None)
    print(f"training {config.family}/{config.model.arch} for {config.epochs} epochs on {device}, "
          f"{len(data.train)} training images -> {out}")
    try:
        result = run_trial(config, data, run_dir, evaluator=evaluator, device=device, resume=resume,
                           progress=True)
        last = latest_checkpoint(out)
        if last is not None:  # the last epoch always checkpoints; final.pt is its stable name
            with R.atomic_path(out / R.CHECKPOINTS_DIR / R.FINAL_CHECKPOINT) as tmp:
                shutil.copyfile(last, tmp)
        R.write_text_atomic(out / R.SUMMARY_JSON, json.dumps(result.summary, indent=1, default=str))
    except OSError as exc:
        if exc.errno not in R.DISK_FULL_ERRNOS:
            raise
        # every write is atomic, so the latest checkpoint on disk is whole: say so and exit like bad input
        kept = latest_checkpoint(out)
        print(f"error: the disk is full ({exc.strerror}) while writing under --out {out}; "
              f"the last complete checkpoint is {kept or 'none'}. Free space (or copy {out} to a disk with "
              "room) and continue with --resume.", file=sys.stderr)
        return R.EXIT_BAD_INPUT
    print_summary(result.summary)
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    keys = [R.FAMILY, R.ARCH, R.STOP_REASON, R.EPOCHS_RUN, R.PARAMS_TOTAL, R.TRAIN_SECONDS, R.IMAGES_PER_S,
            R.BEST_VAL_FID, *R.TEST_METRICS]
    keys += [k for k in summary if k.startswith(R.PARAMS_PREFIX) and k != R.PARAMS_TOTAL]
    print("\nsummary")
    for key in keys:
        if key in summary:
            value = summary[key]
            print(f"  {key:<24} {value:.4g}" if isinstance(value, float) else f"  {key:<24} {value}")


if __name__ == "__main__":
    sys.exit(main())
