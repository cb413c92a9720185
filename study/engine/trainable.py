"""The Ray Tune function trainable: a Tune trial config -> `study.loop.trial.run_trial`.

Per epoch the trial reports run_trial's record (losses, timings, the validation FID a scheduler reads
and what comes nearly free with it; the whole validation suite at its last epoch, and every
`suite_every` epochs when asked) plus its parameter counts and node through `tune.report`, with a
checkpoint every `checkpoint_every` epochs, at every scheduler rung (the epochs where ASHA may stop
it, so an early-stopped trial always has a checkpoint of the epoch it stopped at) and at the end.
It writes the artifact layout of study/results.py into its working directory, which Ray syncs into
the trial directory: samples/epoch_NNN.png, metrics.csv/json, summary.json, and a TensorBoard event file
with the sample grids (Ray's own TensorBoard logger already writes the scalars).

The last epoch's report is held back until the test metrics are in: a scheduler may stop a
trial at any report, and a trial that reached its last epoch must not lose its test metrics.
Diverged trials end at once (run_trial stops them) and report a NaN validation FID, which
Optuna records as a failed trial. Restarts (`FailureConfig(max_failures)`, `--resume`) continue
from `tune.get_checkpoint()`.

The data set and the evaluation assets (feature network, real statistics) reach the trial
through `tune.with_parameters`, i.e. the object store, not a disk reload per trial.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
import torch
from ray import tune

from models import build_model
from models.checkpoint import CheckpointError, load_checkpoint, load_model
from models.config import TrainConfig
from search_spaces import train_config
from study import results as R
from study.data import MNISTSplits
from study.devices import environment, pick_device
from study.engine import ALLOW_CPU_ON_GPU_ENV
from study.loop.run_dir import RunDirectory, checkpoint_file
from study.loop.summary import Evaluator, summary_row
from study.loop.trial import EpochArtifacts, release_memory, run_trial
from study.metrics.evaluator import EvaluationAssets

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

# the warning a trial prints when its latest checkpoint is unreadable and it resumes from an older one
CHECKPOINT_FALLBACK = "the latest checkpoint is unreadable; resuming from the previous one,"
OOM_RETRIES = 2  # restarts of a trial out of memory on a shared GPU before its 'oom' is final
OOM_RETRIES_FILE = "oom_retries.txt"  # in the trial's working directory: the restarts so far


class SharedGPUOutOfMemory(RuntimeError):
    """A trial ran out of memory on a GPU it shares (gpus_per_trial < 1). Co-tenants or memory a
    reused actor cached may be the cause, not the configuration, so the trial fails and Tune's
    FailureConfig restarts it from its last checkpoint (each restart counts against --max-failures)
    instead of Optuna learning that the configuration does not fit."""


def gpu_share() -> float:
    """The GPU fraction Ray assigned to this trial (0 outside Ray or without a GPU)."""
    if not ray.is_initialized():
        return 0.0
    return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))


def retry_out_of_memory(stop_reason: str, device: torch.device, share: float, trial_dir: Path) -> bool:
    """Whether a finished trial's 'oom' is retried: on a shared GPU (0 < share < 1), at most
    OOM_RETRIES times (counted in trial_dir); a whole GPU, or the CPU, makes it final."""
    if stop_reason != R.STOP_OOM or device.type != "cuda" or not 0 < share < 1:
        return False
    counter = trial_dir / OOM_RETRIES_FILE
    retries = int(counter.read_text()) if counter.exists() else 0
    if retries >= OOM_RETRIES:
        return False
    R.write_text_atomic(counter, str(retries + 1))
    return True


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study shares (the `tune.with_parameters` payload)."""

    data: MNISTSplits
    assets: EvaluationAssets | None  # feature network + real statistics; None: no metrics (no scheduler)
    checkpoint_epochs: frozenset[int] = frozenset()  # scheduler rungs, see module docstring
    threads: int = 1  # torch CPU threads per trial (= --cpus-per-trial)
    gpus_per_trial: float = 0.0  # the study's resolved GPUs per trial (recorded with the training time)
    # study.reproduce: validate only at these epochs (None: every epoch, as a scheduler needs), and
    # at these epochs before the last also test the model and write R.epoch_summary_name(epoch)
    validate_epochs: frozenset[int] | None = None
    test_epochs: frozenset[int] = frozenset()
    # the whole validation suite (KID, PRDC besides FID/IS/class coverage) every this many epochs besides
    # the last (0: the last only, and a stopped trial's stop epoch, scored after the search)
    suite_every: int = 0
    # a VAE's importance-weighted NLL inside the trial (False in a search: only the trials a report
    # picks get it, after the search, study/followups/picked_nll.py)
    test_nll: bool = True

    def suite_epochs(self, epochs: int) -> frozenset[int]:
        """The epochs of an `epochs`-epoch trial that get the whole validation suite besides its last:
        every `suite_every`-th, and those whose summary is written (test_epochs)."""
        every = {e for e in range(1, epochs + 1) if self.suite_every and e % self.suite_every == 0}
        return frozenset(every) | self.test_epochs


class CudaUnusableError(RuntimeError):
    """Ray gave this trial a GPU, but torch cannot use CUDA here."""


def trial_device() -> torch.device:
    """The GPU Ray assigned to this trial (it sets CUDA_VISIBLE_DEVICES), else the CPU; outside
    Ray (study.export), any GPU. A trial given a GPU whose CUDA torch cannot use is refused (it
    would train on the CPU for hours and mix into the analysis), unless ALLOW_CPU_ON_GPU_ENV is
    set, as the tests on logical GPUs do."""
    if not ray.is_initialized():
        return pick_device()
    if not ray.get_gpu_ids():
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get(ALLOW_CPU_ON_GPU_ENV):
        return torch.device("cpu")
    raise CudaUnusableError(
        f"Ray gave this trial GPU {ray.get_gpu_ids()} but torch {torch.__version__} (CUDA build "
        f"{torch.version.cuda}) cannot use CUDA on this node: install a torch build matching the "
        f"driver, or set {ALLOW_CPU_ON_GPU_ENV}=1 where the GPUs are logical (tests).")


def placement(device: torch.device, gpus_per_trial: float) -> dict[str, Any]:
    """What the trial's training seconds were measured on: the GPU model, GPUs per trial and how many
    trials shared the GPU at most (study/results.py GPU_NAME)."""
    on_gpu = device.type == "cuda" or bool(ray.is_initialized() and ray.get_gpu_ids())
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = "cpu"
    share = int(1 / gpus_per_trial + 1e-9) if 0 < gpus_per_trial < 1 else 1
    return {R.GPU_NAME: name, R.GPUS_PER_TRIAL: float(gpus_per_trial) if on_gpu else 0.0,
            R.TRIALS_PER_GPU: share if on_gpu else 0}


def load_tune_checkpoint(checkpoint) -> dict[str, Any]:
    """A `ray.tune.Checkpoint` (local or remote storage) -> run_trial's checkpoint dict."""
    with checkpoint.as_directory() as directory:
        return load_checkpoint(checkpoint_file(directory))


def earlier_checkpoints(checkpoint) -> list[tune.Checkpoint]:
    """The trial's other kept checkpoints older than `checkpoint`, newest first (Tune names them
    checkpoint_NNNNNN in the trial directory and keeps --keep-checkpoints of them)."""
    from pyarrow.fs import FileSelector, FileType

    fs, path = checkpoint.filesystem, checkpoint.path.rstrip("/")
    parent, name = posixpath.split(path)
    siblings = [info.path for info in fs.get_file_info(FileSelector(parent))
                if info.type == FileType.Directory and posixpath.basename(info.path).startswith("checkpoint_")
                and posixpath.basename(info.path) < name]
    return [tune.Checkpoint(p, filesystem=fs) for p in sorted(siblings, reverse=True)]


def resume_point(checkpoint) -> dict[str, Any]:
    """The latest readable checkpoint: `checkpoint`, or, when it is damaged (a crash or a full disk
    while it was written), the newest earlier one that loads."""
    try:
        return load_tune_checkpoint(checkpoint)
    except (CheckpointError, FileNotFoundError) as exc:
        for earlier in earlier_checkpoints(checkpoint):
            try:
                resume = load_tune_checkpoint(earlier)
            except (CheckpointError, FileNotFoundError):
                continue
            print(f"warning: {CHECKPOINT_FALLBACK} {earlier.path} (epoch {resume['epoch']}): {exc}",
                  file=sys.stderr, flush=True)
            return resume
        raise


def best_so_far(history: list[dict[str, Any]]) -> float:
    """The lowest finite validation FID of the epochs recorded so far (NaN before the first)."""
    finite = [float(r[R.VAL_FID]) for r in history if math.isfinite(float(r.get(R.VAL_FID, math.nan)))]
    return min(finite) if finite else math.nan


class TuneReporter(RunDirectory):
    """run_trial's reporter inside a Tune trial: artifact files + `tune.report`."""

    def __init__(self, out: Path, config: TrainConfig, extra: dict[str, Any], *,
                 history: list[dict[str, Any]] | None = None, evaluator: Evaluator | None = None,
                 device: torch.device | str = "cpu", test_epochs: frozenset[int] = frozenset()):
        super().__init__(out, history)
        if not any((out / R.CHECKPOINTS_DIR).iterdir()):
            (out / R.CHECKPOINTS_DIR).rmdir()  # checkpoints go through tune.report instead
        self.config = config
        self.extra = extra  # parameter counts and where the trial runs, added to every report
        self.evaluator = evaluator
        self.device = torch.device(device)
        self.test_epochs = test_epochs  # see TrialSetup.test_epochs
        self.held: tuple[dict[str, Any], dict[str, Any] | None] | None = None
        self._writer: SummaryWriter | None = None

    def __call__(self, record: dict[str, Any], artifacts: EpochArtifacts) -> None:
        super().__call__(record, replace(artifacts, checkpoint=None))  # grid + metrics files
        self._log_grid(record[R.EPOCH], artifacts.samples)
        if (record[R.EPOCH] in self.test_epochs and record[R.EPOCH] < self.config.epochs
                and artifacts.model is not None and R.STOP_REASON not in record):
            self._epoch_summary(record[R.EPOCH], artifacts.model)
        metrics = {R.VAL_FID: math.nan, **record, **self.extra}
        metrics[R.VAL_FID_BEST] = best_so_far(self.history)
        if record[R.EPOCH] == self.config.epochs or record.get(R.STOP_REASON) == R.STOP_DIVERGED:
            self.held = (metrics, artifacts.checkpoint)  # reported by `finish`, with test metrics
        else:
            self._report(metrics, artifacts.checkpoint)

    def finish(self, summary: dict[str, Any]) -> None:
        """The last report: the held-back last epoch (or, after a restart that had nothing left
        to train, the last recorded one) plus the test metrics."""
        if self.held is not None:
            metrics, checkpoint = self.held
        else:  # (no epoch at all: the model did not fit in memory)
            last = self.history[-1] if self.history else {R.EPOCH: 0}
            metrics, checkpoint = {R.VAL_FID: math.nan, **last, **self.extra}, None
        final = {k: summary[k] for k in (*R.TEST_METRICS, R.FEATURENET_SHA256, R.STOP_REASON, R.TRIAL_SECONDS)
                 if k in summary}
        self._report({**metrics, **final}, checkpoint)
        if self._writer is not None:
            self._writer.close()

    def _epoch_summary(self, epoch: int, model) -> None:
        """The summary row of the model at `epoch` as a run of `epoch` epochs (its history so far,
        test metrics of that model): the same experiment as training a fresh run for `epoch` epochs.
        `model` is the live one, which run_trial trains on only after this report returns."""
        config = self.config.replace(epochs=epoch)
        summary = summary_row(config, model, self.history[:epoch], R.STOP_COMPLETED, self.device,
                              self.evaluator)
        summary[R.RAY_NODE_ID] = self.extra.get(R.RAY_NODE_ID)
        text = json.dumps(summary, indent=1, default=str)
        R.write_text_atomic(self.out / R.epoch_summary_name(epoch), text)

    def _report(self, metrics: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
        if checkpoint is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(checkpoint, Path(tmp) / R.checkpoint_name(checkpoint["epoch"]))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))  # copied to storage

    def _log_grid(self, epoch: int, samples: torch.Tensor) -> None:
        from torchvision.utils import make_grid

        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.out))
        self._writer.add_image("samples", make_grid(samples, nrow=8, padding=2), global_step=epoch)
        self._writer.flush()


def train_trial(tune_config: dict[str, Any], setup: TrialSetup) -> None:
    """The function trainable (wrap with `tune.with_parameters(train_trial, setup=...)`)."""
    config = train_config(tune_config)
    device = trial_device()
    torch.set_num_threads(max(1, setup.threads))
    resume = None
    if (checkpoint := tune.get_checkpoint()) is not None:
        resume = resume_point(checkpoint)
    with torch.device("meta"):  # sizes only: no memory, no initialisation (run_trial builds the real one)
        counts = build_model(config.model).parameter_counts()
    extra: dict[str, Any] = R.params_columns(counts)
    extra.update(environment(device))  # node, device, torch version
    extra[R.RAY_NODE_ID] = ray.get_runtime_context().get_node_id()
    extra.update(placement(device, setup.gpus_per_trial))
    evaluator = setup.assets.evaluator(config, setup.data, device) if setup.assets is not None else None
    reporter = TuneReporter(Path.cwd(), config, extra,  # Ray runs each trial in its working dir
                            history=resume["history"] if resume is not None else None,
                            evaluator=evaluator, device=device, test_epochs=setup.test_epochs)
    result = run_trial(config, setup.data, reporter, evaluator=evaluator, device=device, resume=resume,
                       checkpoint_epochs=setup.checkpoint_epochs | setup.test_epochs,
                       validate_epochs=setup.validate_epochs, suite_epochs=setup.suite_epochs(config.epochs),
                       test_nll=setup.test_nll)
    summary = {**result.summary, **{k: extra[k] for k in R.PLACEMENT if k in extra}}
    del result  # the model: free its memory before the next trial of a reused actor
    release_memory(device)
    if retry_out_of_memory(summary[R.STOP_REASON], device, gpu_share(), reporter.out):
        raise SharedGPUOutOfMemory(f"out of memory on a GPU shared by trials (gpus_per_trial "
                                   f"{gpu_share():g}): restarting from the last checkpoint")
    R.write_text_atomic(reporter.out / R.SUMMARY_JSON, json.dumps(summary, indent=1, default=str))
    reporter.finish(summary)


def stopped_trial_summary(path: str | Path, data: MNISTSplits, assets: EvaluationAssets | None,
                          device: torch.device, nll: bool = True,
                          on_model: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Summary row of a trial the scheduler stopped, from its last checkpoint (the epoch it stopped
    at: the trainable checkpoints every rung): the trial's own summary (stop reason early-stopped)
    with the whole validation suite of that epoch, which the trial, stopped before it knew that epoch
    was its last, did not compute (the same numbers: the same model, samples and seeds), plus its
    test metrics (none without `assets`; `nll` False: a VAE's without the importance-weighted NLL).
    Its TRIAL_SECONDS add this scoring's seconds to the checkpoint's. `on_model(model)`: told the
    model once it is loaded (study/engine/scoring.py checks that nothing keeps it)."""
    started = time.perf_counter()
    config, model, state = load_model(path)
    model = model.to(device)
    if on_model is not None:
        on_model(model)
    evaluator = assets.evaluator(config, data, device) if assets is not None else None
    history = [dict(record) for record in state["history"]]
    if (evaluator is not None and history and history[-1].get(R.EPOCH) == state["epoch"]
            and R.STOP_REASON not in history[-1] and R.VAL_FID in history[-1]):
        suite_started = time.perf_counter()
        suite = evaluator.validation(model)
        history[-1].update(suite)
        history[-1][R.EVAL_SECONDS] = (history[-1].get(R.EVAL_SECONDS, 0.0)
                                       + time.perf_counter() - suite_started)
    row = summary_row(config, model, history, R.STOP_EARLY, device, evaluator, nll=nll)
    row[R.TRIAL_SECONDS] = (history[-1].get(R.TRIAL_SECONDS, math.nan) if history else 0.0) + (
        time.perf_counter() - started)
    del model
    release_memory(device)
    return row


def evaluate_stopped_trial(checkpoint: tune.Checkpoint, setup: TrialSetup,
                           on_model: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """`stopped_trial_summary` of a trial the scheduler stopped, from its last Tune checkpoint; runs
    in a scoring worker with a trial's resources (see study/engine/study_run.py)."""
    device = trial_device()
    torch.set_num_threads(max(1, setup.threads))
    with checkpoint.as_directory() as directory:
        return stopped_trial_summary(checkpoint_file(directory), setup.data, setup.assets, device,
                                     nll=setup.test_nll, on_model=on_model)


def with_setup(setup: TrialSetup):
    """The trainable with the shared setup put in the object store once."""
    return tune.with_parameters(train_trial, setup=setup)
