"""The one training loop for both families, and `python -m study.train`, the single-trial runner.

`run_trial(config, data, report)` trains one configuration and calls `report(record, artifacts)`
once per epoch. It never imports Ray: the same loop runs here, under Ray Tune
(study/trainable.py) and in the tests. Families plug in through the small interface of
`models.build_model` (train_step, decode_to_unit, ...), so there is no per-family loop.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from models import build_model
from models.checkpoint import CONFIG_KEY, MODEL_KEY, load_checkpoint
from models.config import AMP_BF16, AMP_NONE, ARCHS, FAMILIES, ConfigError, TrainConfig, seed_model_config
from models.layers import GenerativeModel
from study import results as R
from study.data import TRAIN_SIZE, BatchIterator, DataNotFoundError, MNISTSplits, load_splits

SAMPLE_GRID_SIZE = 64  # 8x8 grid from fixed noise, the same images every epoch
DIVERGENCE_CHECK_EVERY = 50  # steps between finite-loss checks (each check syncs the device)


class Evaluator(Protocol):
    """Quality metrics for a model (study/metrics.py provides the real one)."""

    featurenet_sha256: str

    def validation(self, model) -> dict[str, float]: ...

    def test(self, model) -> dict[str, float]: ...


@dataclass
class EpochArtifacts:
    samples: torch.Tensor  # [64, 1, 28, 28] in [0, 1], from fixed noise
    checkpoint: dict[str, Any] | None  # set on checkpoint epochs and the last epoch


Reporter = Callable[[dict[str, Any], EpochArtifacts], None]


@dataclass
class TrialResult:
    summary: dict[str, Any]  # one tidy row: config, parameter counts, timings, metrics, environment
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    model: torch.nn.Module | None = None


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ConfigError(f"--device {requested!r}: not a torch device; "
                              "use cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {requested}: CUDA is not available on this machine; "
                              "use --device cpu")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def environment(device: torch.device) -> dict[str, Any]:
    return {R.NODE: platform.node(), R.DEVICE: str(device), R.TORCH_VERSION: torch.__version__}


def config_columns(config: TrainConfig) -> dict[str, Any]:
    """Flat hp_* columns (tuples as 'a-b-c' strings so pandas can group on them) + the exact JSON."""
    flat = config.to_dict()
    row = {R.FAMILY: flat.pop("family"), R.ARCH: flat.pop("arch"), R.SEED: flat.pop("seed")}
    for key, value in flat.items():
        row[R.hp_column(key)] = "-".join(map(str, value)) if isinstance(value, list) else value
    row[R.CONFIG_JSON] = config.to_json()
    return row


# may differ on resume: extend a run, checkpoint more often
RESUMABLE_CHANGES = ("epochs", "checkpoint_every")


def check_resumable(config: TrainConfig, checkpoint: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint into a different trial (anything but epochs/checkpointing changed)."""
    saved = TrainConfig.from_json(checkpoint[CONFIG_KEY]).to_dict()
    wanted = config.to_dict()
    differing = sorted(k for k in wanted if k not in RESUMABLE_CHANGES and wanted[k] != saved.get(k))
    if differing:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {wanted[k]!r}" for k in differing)
        raise ConfigError("cannot resume: the checkpoint was written by a different configuration "
                          f"({details}); "
                          "resume with the flags of the original run (only --epochs and --checkpoint-every "
                          "may change)")
    if checkpoint["epoch"] > config.epochs:
        raise ConfigError(f"cannot resume: the checkpoint is at epoch {checkpoint['epoch']}, beyond "
                          f"--epochs {config.epochs}")


@dataclass
class _Trial:
    """Everything that evolves while a trial trains (and what a checkpoint snapshots)."""

    model: GenerativeModel
    optimizers: dict[str, torch.optim.Optimizer]
    batches: BatchIterator
    fixed_noise: torch.Tensor  # [64, latent...] on the device: the same sample grid every epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    first_epoch: int = 1

    def checkpoint(self, config: TrainConfig, epoch: int) -> dict[str, Any]:
        """A self-contained snapshot: deep copies, so training on does not change a reported checkpoint."""
        return copy.deepcopy({
            CONFIG_KEY: config.to_json(),
            MODEL_KEY: self.model.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "epoch": epoch,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "torch_rng": torch.get_rng_state(),
            "batch_rng": self.batches.state(),
        })


def _restore(config: TrainConfig, data: MNISTSplits, device: torch.device,
             resume: dict[str, Any] | None) -> _Trial:
    """A fresh trial, or the one `resume` (a checkpoint dict) snapshotted."""
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    if config.channels_last:  # 4-D (conv) weights only; an MLP's 2-D weights are unaffected
        model = model.to(memory_format=torch.channels_last)
    optimizers = model.make_optimizers()
    train_images = data.train.images[: config.train_subset] if config.train_subset else data.train.images
    batches = BatchIterator(train_images, config.batch_size, seed=config.seed, device=device)
    noise = model.sample_latent(SAMPLE_GRID_SIZE, generator=torch.Generator().manual_seed(config.seed + 1))
    trial = _Trial(model, optimizers, batches, noise.to(device))
    if resume is not None:
        check_resumable(config, resume)
        model.load_state_dict(resume[MODEL_KEY])
        for name, opt in trial.optimizers.items():
            opt.load_state_dict(resume["optimizers"][name])
        torch.set_rng_state(resume["torch_rng"])
        trial.batches.set_state(resume["batch_rng"])
        trial.history = list(resume["history"])
        trial.train_seconds = float(resume["train_seconds"])
        trial.first_epoch = int(resume["epoch"]) + 1
    return trial


def _train_epoch(trial: _Trial, device: torch.device, bar,
                 amp: str = AMP_NONE) -> tuple[dict[str, float], int, float]:
    """One pass over the training images: (mean loss per name, steps, seconds). Stops early when
    a periodic check finds a NaN/inf running loss (the caller sees it in the means). amp "bf16":
    each step under bfloat16 autocast (on CUDA or CPU); bf16 keeps fp32's exponent range, so no
    gradient scaling is needed; parameters and optimiser state stay fp32."""
    trial.model.train()
    started = time.perf_counter()
    sums: dict[str, torch.Tensor] = {}
    step = 0
    for step, x in enumerate(trial.batches, start=1):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp == AMP_BF16):
            losses = trial.model.train_step(x, trial.optimizers)
        losses = {key: value.float() for key, value in losses.items()}
        for key, value in losses.items():
            sums[key] = sums[key] + value if key in sums else value.clone()
        if step % DIVERGENCE_CHECK_EVERY == 0 and not all(torch.isfinite(v) for v in sums.values()):
            break
        if bar is not None:
            bar.update(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return {key: float(total) / step for key, total in sums.items()}, step, seconds


def _finish(config: TrainConfig, trial: _Trial, stop_reason: str, evaluator: Evaluator | None,
            device: torch.device) -> TrialResult:
    """The summary row, with the test metrics of a trial that did not diverge."""
    summary = summarize(config, trial.model, trial.history, stop_reason, device)
    if evaluator is not None:
        summary[R.FEATURENET_SHA256] = evaluator.featurenet_sha256
        if stop_reason != R.STOP_DIVERGED:
            started = time.perf_counter()
            summary.update(evaluator.test(trial.model))
            summary[R.TEST_EVAL_SECONDS] = time.perf_counter() - started
    return TrialResult(summary=summary, history=trial.history, model=trial.model)


def run_trial(
    config: TrainConfig,
    data: MNISTSplits,
    report: Reporter | None = None,
    *,
    evaluator: Evaluator | None = None,
    device: torch.device | str | None = None,
    resume: dict[str, Any] | None = None,
    progress: bool = False,
    checkpoint_epochs: Collection[int] = (),
    validate_epochs: Collection[int] | None = None,
) -> TrialResult:
    """Train one configuration; report each epoch; return the summary row and history.

    NaN/inf losses end the run with stop reason 'diverged' (recorded, never raised).
    `resume` is a checkpoint dict from an earlier report; training continues bit-for-bit on CPU.
    `checkpoint_epochs`: extra epochs that get a checkpoint besides every `checkpoint_every`-th
    and the last (the Ray trainable passes the scheduler's rungs, where trials can be stopped).
    `validate_epochs`: the only epochs that get validation metrics besides the last (None: every
    epoch, which a scheduler needs; study.reproduce validates at the printed epoch counts only).
    """
    device = pick_device(str(device) if device else None)
    try:
        trial = _restore(config, data, device, resume)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        return _out_of_memory(config, list(resume["history"]) if resume else [], device)
    bar = _progress_bar((config.epochs - trial.first_epoch + 1) * len(trial.batches)) if progress else None
    stop_reason = R.STOP_COMPLETED
    for epoch in range(trial.first_epoch, config.epochs + 1):
        try:
            losses, steps, seconds = _train_epoch(trial, device, bar, config.amp)
        except Exception as exc:  # the epoch is lost; the reported ones stand
            if not is_out_of_memory(exc):
                raise
            if bar is not None:
                bar.close()
            history = trial.history
            del trial
            return _out_of_memory(config, history, device)
        trial.train_seconds += seconds
        record: dict[str, Any] = {**losses, R.EPOCH: epoch, R.EPOCH_SECONDS: seconds,
                                  R.TRAIN_SECONDS: trial.train_seconds,
                                  R.IMAGES_PER_S: steps * config.batch_size / seconds}
        diverged = not all(math.isfinite(v) for v in losses.values())
        trial.model.eval()
        samples = trial.model.decode_to_unit(trial.fixed_noise).cpu()
        if diverged:
            stop_reason = record[R.STOP_REASON] = R.STOP_DIVERGED
        elif evaluator is not None and (validate_epochs is None or epoch in validate_epochs
                                        or epoch == config.epochs):
            eval_started = time.perf_counter()
            record.update(evaluator.validation(trial.model))
            record[R.EVAL_SECONDS] = time.perf_counter() - eval_started
        trial.history.append(record)
        checkpoint = None
        last = diverged or epoch == config.epochs
        if last or epoch % config.checkpoint_every == 0 or epoch in checkpoint_epochs:
            checkpoint = trial.checkpoint(config, epoch)
        if bar is not None:
            bar.set_postfix({k: f"{record[k]:.4g}" for k in (*losses, *R.VALIDATION_METRICS) if k in record})
        if report is not None:
            report(record, EpochArtifacts(samples=samples, checkpoint=checkpoint))
        if diverged:
            break
    if bar is not None:
        bar.close()
    return _finish(config, trial, stop_reason, evaluator, device)


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation: CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's
    RuntimeError ("DefaultCPUAllocator: not enough memory" / "can't allocate memory")."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("out of memory", "not enough memory", "can't allocate memory"))


def _out_of_memory(config: TrainConfig, history: list[dict[str, Any]], device: torch.device) -> TrialResult:
    """The result of a trial that did not fit: stop reason 'oom', sized on the meta device."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with torch.device("meta"):  # parameter counts without allocating the model again
        sized = build_model(config.model)
    return TrialResult(summary=summarize(config, sized, history, R.STOP_OOM, device), history=history)


def _progress_bar(total_steps: int):
    from tqdm.auto import tqdm

    return tqdm(total=total_steps, unit="step", dynamic_ncols=True)


def summarize(config: TrainConfig, model, history: list[dict], stop_reason: str, device) -> dict[str, Any]:
    """The trial's tidy summary row: full config, sizes, timings, best/final validation FID."""
    row = config_columns(config)
    row.update(R.params_columns(model.parameter_counts()))
    row[R.EPOCHS_RUN] = len(history)
    row[R.STOP_REASON] = stop_reason
    row[R.TRAIN_SECONDS] = history[-1][R.TRAIN_SECONDS] if history else 0.0
    speeds = [h[R.IMAGES_PER_S] for h in history]
    row[R.IMAGES_PER_S] = sum(speeds) / len(speeds) if speeds else float("nan")
    fids = [(h[R.VAL_FID], h[R.EPOCH]) for h in history if math.isfinite(h.get(R.VAL_FID, math.nan))]
    if fids:
        row[R.BEST_VAL_FID], row[R.BEST_EPOCH] = min(fids)
        row[R.FINAL_VAL_FID] = history[-1].get(R.VAL_FID, math.nan)
    if history:  # the final model's other validation metrics (fidelity, diversity), under their own names
        row.update({k: history[-1][k] for k in R.VALIDATION_METRICS if k != R.VAL_FID and k in history[-1]})
    row.update(environment(torch.device(device)))
    return row


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


def scale_widths(config: TrainConfig, factor: float) -> TrainConfig:
    """Every width/channel tuple of the model multiplied by `factor` (at least 1 unit each)."""
    flat = config.to_dict()
    width_keys = [k for k in flat if k.endswith(("_widths", "_channels"))]
    return config.replace(**{k: [max(1, round(w * factor)) for w in flat[k]] for k in width_keys})


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
    p.add_argument("--smoke-test", action="store_true",
                   help="a seconds-long run: 2 epochs on 512 images at 1/8 width, 256 evaluation samples")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if not args.width_scale > 0:
        raise ConfigError(f"--width-scale {args.width_scale}: must be > 0 (0.25 quarters every layer width)")
    arch = args.arch or ARCHS[args.family][0]
    config = TrainConfig(model=seed_model_config(args.family, arch), epochs=args.epochs, seed=args.seed,
                         batch_size=args.batch_size, checkpoint_every=args.checkpoint_every,
                         eval_samples=args.eval_samples, train_subset=args.train_subset)
    if args.smoke_test:
        config = config.replace(epochs=2, train_subset=512, eval_samples=min(args.eval_samples, 256),
                                batch_size=64)
        args.width_scale = args.width_scale * 0.125
    if args.width_scale != 1.0:
        config = scale_widths(config, args.width_scale)
    if args.latent_dim is not None:
        config = config.replace(latent_dim=args.latent_dim)
    changes = _parse_set(args.set)
    return config.replace(**changes) if changes else config


class RunDirectory:
    """Writes one trial's artifacts in the layout of study/results.py (shared with Ray trials)."""

    def __init__(self, out: Path):
        self.out = out
        (out / R.SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
        (out / R.CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
        self.history: list[dict[str, Any]] = []

    def __call__(self, record: dict[str, Any], artifacts: EpochArtifacts) -> None:
        import pandas as pd
        from torchvision.utils import save_image

        epoch = record[R.EPOCH]
        self.history.append(record)
        save_image(artifacts.samples, self.out / R.SAMPLES_DIR / R.sample_grid_name(epoch), nrow=8, padding=2)
        R.write_text_atomic(self.out / R.METRICS_JSON, json.dumps(self.history, indent=1))
        R.write_text_atomic(self.out / R.METRICS_CSV, pd.DataFrame(self.history).to_csv(index=False))
        if artifacts.checkpoint is not None:
            self.save_checkpoint(artifacts.checkpoint, R.checkpoint_name(epoch))

    def save_checkpoint(self, checkpoint: dict[str, Any], name: str) -> Path:
        path = self.out / R.CHECKPOINTS_DIR / name
        # serialised first: a full disk then raises OSError (ENOSPC), not torch's RuntimeError
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with R.atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getbuffer())
        return path


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / R.CHECKPOINTS_DIR).glob(R.CHECKPOINT_GLOB))
    return found[-1] if found else None


def checkpoint_file(directory: str | Path) -> Path:
    """The single epoch_NNN.pt inside a Tune checkpoint directory."""
    found = sorted(Path(directory).glob(R.CHECKPOINT_GLOB))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one {R.CHECKPOINT_GLOB} in checkpoint directory {directory}, "
                                f"found {found}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
        resume = None
        if args.resume:
            ckpt_path = latest_checkpoint(out)
            if ckpt_path is None:
                raise ConfigError(f"--resume: no checkpoint in {out / R.CHECKPOINTS_DIR}; run without "
                                  "--resume first")
            resume = load_checkpoint(ckpt_path)
            check_resumable(config, resume)
            print(f"resuming from {ckpt_path} (epoch {resume['epoch']})")
        elif out.exists() and any(out.iterdir()):
            raise ConfigError(
                f"--out {out} already holds files; pass --resume to continue that run, "
                "or choose a new --out directory (nothing was overwritten)"
            )
        device = pick_device(args.device)
        data = load_splits(args.data_dir, train_subset=config.train_subset)
    except (ConfigError, DataNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return R.EXIT_BAD_INPUT

    evaluator = None
    if config.eval_samples > 0:  # torchmetrics and the feature network load only when evaluation is on
        from study.metrics import prepare_evaluation

        evaluator = prepare_evaluation(data, device, splits=()).evaluator(config, data, device)
    run_dir = RunDirectory(out)
    if resume is not None:
        run_dir.history = list(resume["history"])
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
