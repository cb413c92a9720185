"""The one training loop for both families: `run_trial(config, data, report, evaluator=...)`.

It trains one configuration and calls `report(record, artifacts)` once per epoch. It never imports
Ray: the same loop runs under `python -m study.train`, under Ray Tune (study/engine/trainable.py) and
in the tests. Families plug in through the small interface of `models.build_model` (train_step,
decode_to_unit, ...), so there is no per-family loop; metrics come in through the `Evaluator`
protocol (study/loop/summary.py), so the loop knows nothing of how they are computed.
"""

from __future__ import annotations

import copy
import functools
import gc
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import torch

from models import build_model
from models.checkpoint import CONFIG_KEY, MODEL_KEY
from models.config import AMP_BF16, AMP_NONE, ConfigError, TrainConfig
from models.layers import GenerativeModel
from study import results as R
from study.data import BatchIterator, MNISTSplits
from study.devices import deterministic_algorithms, pick_device
from study.loop.summary import Evaluator, summarize, summary_row
from study.repeat import pinned_threads

SAMPLE_GRID_SIZE = 64  # 8x8 grid from fixed noise, the same images every epoch
DIVERGENCE_CHECK_EVERY = 50  # steps between finite-loss checks (each check syncs the device)


@dataclass
class EpochArtifacts:
    samples: torch.Tensor  # [64, 1, 28, 28] in [0, 1], from fixed noise
    checkpoint: dict[str, Any] | None  # set on checkpoint epochs and the last epoch
    model: GenerativeModel | None = None  # the live model at this epoch (the reporter must not train it)


Reporter = Callable[[dict[str, Any], EpochArtifacts], None]


@dataclass
class TrialResult:
    summary: dict[str, Any]  # one tidy row: config, parameter counts, timings, metrics, environment
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    model: torch.nn.Module | None = None


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
    trial_seconds: float = 0.0  # all the trial's wall time so far (R.TRIAL_SECONDS)
    first_epoch: int = 1

    def checkpoint(self, config: TrainConfig, epoch: int) -> dict[str, Any]:
        """A self-contained snapshot in host memory: copies of every tensor on the CPU (none left on
        the GPU), so training on does not change a reported checkpoint."""
        state = {
            CONFIG_KEY: config.to_json(),
            MODEL_KEY: self.model.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "epoch": epoch,
            "history": self.history,
            "train_seconds": self.train_seconds,
            R.TRIAL_SECONDS: self.trial_seconds,
            "torch_rng": torch.get_rng_state(),
            "batch_rng": self.batches.state(),
        }
        device = self.fixed_noise.device
        if device.type == "cuda":  # the GAN's latents and dropout masks are drawn on the GPU
            state[CUDA_RNG_KEY] = torch.cuda.get_rng_state(device)
        return cpu_copy(state)


CUDA_RNG_KEY = "cuda_rng"  # the trial's GPU generator state (checkpoints of CUDA trials only)


def cpu_copy(value: Any) -> Any:
    """A deep copy with every tensor copied to the CPU (state dicts, lists, plain values)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: cpu_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(cpu_copy(item) for item in value)
    return copy.deepcopy(value)


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
        if device.type == "cuda" and CUDA_RNG_KEY in resume:  # (a CPU run's checkpoint has none)
            torch.cuda.set_rng_state(resume[CUDA_RNG_KEY], device)
        trial.batches.set_state(resume["batch_rng"])
        trial.history = list(resume["history"])
        trial.train_seconds = float(resume["train_seconds"])
        # (a checkpoint written before the column: from its last epoch's training seconds on)
        trial.trial_seconds = float(resume.get(R.TRIAL_SECONDS, trial.train_seconds))
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
    # a factory, not one context around the step: the model opens a fresh context per update (see
    # GenerativeModel.train_step), so the GAN's generator step sees the updated discriminator
    autocast = functools.partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16,
                                 enabled=amp == AMP_BF16)
    for step, x in enumerate(trial.batches, start=1):
        losses = trial.model.train_step(x, trial.optimizers, autocast)
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
            device: torch.device, test_nll: bool) -> TrialResult:
    """The summary row, with the test metrics of a trial that did not diverge; its TRIAL_SECONDS
    are all the trial's seconds (the last epoch's reported writes and the test scoring included)."""
    summary = summary_row(config, trial.model, trial.history, stop_reason, device, evaluator, nll=test_nll)
    summary[R.TRIAL_SECONDS] = trial.trial_seconds + summary.get(R.TEST_EVAL_SECONDS, 0.0)
    return TrialResult(summary=summary, history=trial.history, model=trial.model)


def _epoch_record(trial: _Trial, config: TrainConfig, epoch: int, losses: dict[str, float], steps: int,
                  seconds: float, evaluator: Evaluator | None, validate: bool, suite: bool) -> dict[str, Any]:
    """The epoch's row of the history: losses, timings, validation metrics (or the divergence):
    the whole suite when `suite`, else what a scheduler reads (TrialEvaluator.validation)."""
    trial.train_seconds += seconds
    record: dict[str, Any] = {**losses, R.EPOCH: epoch, R.EPOCH_SECONDS: seconds,
                              R.TRAIN_SECONDS: trial.train_seconds,
                              R.IMAGES_PER_S: steps * config.batch_size / seconds}
    if not all(math.isfinite(v) for v in losses.values()):
        record[R.STOP_REASON] = R.STOP_DIVERGED
    elif evaluator is not None and validate:
        eval_started = time.perf_counter()
        record.update(evaluator.validation(trial.model, suite=suite))
        record[R.EVAL_SECONDS] = time.perf_counter() - eval_started
    trial.history.append(record)
    return record


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
    suite_epochs: Collection[int] | None = None,
    test_nll: bool = True,
) -> TrialResult:
    """Train one configuration; report each epoch; return the summary row and history.

    NaN/inf losses end the run with stop reason 'diverged' (recorded, never raised).
    `resume` is a checkpoint dict from an earlier report; training continues bit-for-bit on CPU.
    `checkpoint_epochs`: extra epochs that get a checkpoint besides every `checkpoint_every`-th
    and the last (the Ray trainable passes the scheduler's rungs, where trials can be stopped).
    `validate_epochs`: the only epochs that get validation metrics besides the last (None: every
    epoch, which a scheduler needs; study.reproduce validates at the printed epoch counts only).
    `suite_epochs`: the validated epochs that get the whole validation suite besides the last (None:
    every one); the others get the FID a scheduler reads and what comes nearly free with it
    (R.LEAN_VALIDATION_METRICS). A trial the scheduler stops gets its suite from its checkpoint after
    the search (study/engine/trainable.py stopped_trial_summary).
    `test_nll` False: a VAE's test metrics without the importance-weighted NLL (computed later for
    the trials a report describes, study/followups/picked_nll.py).
    Every record and checkpoint carries R.TRIAL_SECONDS, the trial's wall time so far; the summary's
    adds the last writes and the test scoring.
    `config.deterministic`: the whole trial under study.devices.deterministic_algorithms.
    On a CPU the whole trial runs on study.repeat.REPEAT_THREADS threads, whatever the process's
    count, so a configuration and seed train bit for bit in any process on one machine.
    """
    started = time.perf_counter()
    run_device = pick_device(str(device) if device else None)
    with deterministic_algorithms(config.deterministic), pinned_threads(run_device):
        return _run(config, data, report, evaluator, run_device, resume, progress, checkpoint_epochs,
                    validate_epochs, suite_epochs, test_nll, started)


def _run(config: TrainConfig, data: MNISTSplits, report: Reporter | None, evaluator: Evaluator | None,
         device: torch.device, resume: dict[str, Any] | None, progress: bool,
         checkpoint_epochs: Collection[int], validate_epochs: Collection[int] | None,
         suite_epochs: Collection[int] | None, test_nll: bool, started: float) -> TrialResult:
    """run_trial's body."""
    try:
        trial: _Trial | None = _restore(config, data, device, resume)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        trial = None
    if trial is None:  # outside the handler: its traceback no longer holds the tensors
        return _out_of_memory(config, list(resume["history"]) if resume else [], device)
    trial.trial_seconds += time.perf_counter() - started  # building (or restoring) the model
    bar = _progress_bar((config.epochs - trial.first_epoch + 1) * len(trial.batches)) if progress else None
    stop_reason: str | None = R.STOP_COMPLETED
    result: TrialResult | None = None
    for epoch in range(trial.first_epoch, config.epochs + 1):
        try:
            stop_reason = _run_epoch(trial, config, epoch, device, bar, report, evaluator,
                                     checkpoint_epochs, validate_epochs, suite_epochs)
        except Exception as exc:  # the epoch (training or its evaluation) is lost; the reported ones stand
            if not is_out_of_memory(exc):
                raise
            stop_reason = None
        if stop_reason != R.STOP_COMPLETED:
            break
    if bar is not None:
        bar.close()
    if stop_reason is not None:
        try:  # the test metrics
            result = _finish(config, trial, stop_reason, evaluator, device, test_nll)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
    if result is None:  # out of memory; here, outside the handler, the traceback's tensors are gone
        history = trial.history
        del trial
        return _out_of_memory(config, history, device)
    return result


def _run_epoch(trial: _Trial, config: TrainConfig, epoch: int, device: torch.device, bar,
               report: Reporter | None, evaluator: Evaluator | None, checkpoint_epochs: Collection[int],
               validate_epochs: Collection[int] | None, suite_epochs: Collection[int] | None) -> str:
    """Train, validate, checkpoint and report one epoch: completed, or diverged."""
    started = time.perf_counter()
    losses, steps, seconds = _train_epoch(trial, device, bar, config.amp)
    trial.model.eval()
    samples = trial.model.decode_to_unit(trial.fixed_noise).cpu()
    validate = validate_epochs is None or epoch in validate_epochs or epoch == config.epochs
    suite = suite_epochs is None or epoch in suite_epochs or epoch == config.epochs
    record = _epoch_record(trial, config, epoch, losses, steps, seconds, evaluator, validate, suite)
    diverged = R.STOP_REASON in record
    checkpoint = None
    if (diverged or epoch == config.epochs or epoch % config.checkpoint_every == 0
            or epoch in checkpoint_epochs):
        trial.trial_seconds += time.perf_counter() - started
        started = time.perf_counter()
        record[R.TRIAL_SECONDS] = trial.trial_seconds  # before the snapshot: its history holds it
        checkpoint = trial.checkpoint(config, epoch)
    else:
        record[R.TRIAL_SECONDS] = trial.trial_seconds + time.perf_counter() - started
    if bar is not None:
        bar.set_postfix({k: f"{record[k]:.4g}" for k in (*losses, *R.VALIDATION_METRICS) if k in record})
    if report is not None:
        report(record, EpochArtifacts(samples=samples, checkpoint=checkpoint, model=trial.model))
    trial.trial_seconds += time.perf_counter() - started  # (the report's writes and checkpoint upload)
    return R.STOP_DIVERGED if diverged else R.STOP_COMPLETED


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
    release_memory(device)
    with torch.device("meta"):  # parameter counts without allocating the model again
        sized = build_model(config.model)
    return TrialResult(summary=summarize(config, sized, history, R.STOP_OOM, device), history=history)


def release_memory(device: torch.device) -> None:
    """Free what a failed or finished trial left: unreachable tensors, then the CUDA caching
    allocator's cached blocks (for co-tenants on a shared GPU and the next trial of a reused
    actor). Call it outside any `except` block: a live traceback still references the tensors."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _progress_bar(total_steps: int):
    from tqdm.auto import tqdm

    return tqdm(total=total_steps, unit="step", dynamic_ncols=True)
