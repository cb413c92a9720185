"""The Ray Tune function trainable: a Tune trial config -> `study.train.run_trial`.

Per epoch the trial reports run_trial's record (losses, timings, validation FID/KID/IS) plus
its parameter counts and node through `tune.report`, with a checkpoint every `checkpoint_every`
epochs, at every scheduler rung (the epochs where ASHA may stop it, so an early-stopped trial
always has a checkpoint of the epoch it stopped at) and at the end. It writes the artifact
layout of study/results.py into its working directory, which Ray syncs into the trial
directory: samples/epoch_NNN.png, metrics.csv/json, summary.json, and a TensorBoard event file
with the sample grids (Ray's own TensorBoard logger already writes the scalars).

The last epoch's report is held back until the test metrics are in: a scheduler may stop a
trial at any report, and a trial that reached its last epoch must not lose its test metrics.
Diverged trials end at once (run_trial stops them) and report a NaN validation FID, which
Optuna records as a failed trial. Restarts (`FailureConfig(max_failures)`, `--resume`) continue
from `tune.get_checkpoint()`.

The data set and the evaluator factory (feature network, real statistics) reach the trial
through `tune.with_parameters`, i.e. the object store, not a disk reload per trial.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from models import build_model
from models.checkpoint import load_checkpoint
from models.config import TrainConfig
from search_spaces import train_config
from study import results as R
from study.data import MNISTSplits
from study.train import (
    EpochArtifacts,
    Evaluator,
    RunDirectory,
    environment,
    pick_device,
    run_trial,
)

CHECKPOINT_GLOB = "epoch_*.pt"
# what a finished trial adds to its last report (and early-stopped trials get in the export)
TEST_METRICS = (R.TEST_FID, R.TEST_KID, R.TEST_IS, R.TEST_INCEPTION_FID, R.TEST_RECON_MSE, R.TEST_NELBO,
                R.TEST_IW_NLL, R.FEATURENET_SHA256)


class EvaluatorFactory(Protocol):
    """Builds a trial's evaluator on the trial's device; shipped once through the object store."""

    featurenet_sha256: str

    def __call__(self, config: TrainConfig, data: MNISTSplits, device: torch.device) -> Evaluator: ...


@dataclass(frozen=True)
class MetricsFactory:
    """study.metrics' TrialEvaluator with the feature network and the real-image statistics
    computed once by the driver (`build`), instead of once per trial."""

    assets: Any  # study.metrics.EvaluationAssets: (featurenet on CPU, real_stats per split)
    iw_images: int | None = None  # test images behind the VAE's IW-NLL (None: all; it costs k passes each)

    @classmethod
    def build(cls, data: MNISTSplits, device: torch.device | str = "cpu", iw_images: int | None = None) -> MetricsFactory:
        from study.metrics import prepare_evaluation

        return cls(prepare_evaluation(data, device), iw_images)

    @property
    def featurenet_sha256(self) -> str:
        return self.assets.featurenet.sha256

    def __call__(self, config: TrainConfig, data: MNISTSplits, device: torch.device) -> Evaluator:
        from study.metrics import TrialEvaluator

        return TrialEvaluator(data, num_samples=config.eval_samples, device=device, seed=config.seed,
                              featurenet=self.assets.featurenet, real_stats=self.assets.real_stats,
                              iw_images=self.iw_images)


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study shares (the `tune.with_parameters` payload)."""

    data: MNISTSplits
    evaluators: EvaluatorFactory | None  # MetricsFactory; None: no metrics (only without a scheduler)
    checkpoint_epochs: frozenset[int] = frozenset()  # scheduler rungs, see module docstring
    threads: int = 1  # torch CPU threads per trial (= --cpus-per-trial)


def trial_device() -> torch.device:
    """The GPU Ray assigned to this trial (it sets CUDA_VISIBLE_DEVICES), else the CPU; outside
    Ray (study.export), any GPU."""
    import ray

    if not ray.is_initialized():
        return pick_device()
    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def checkpoint_file(directory: str | Path) -> Path:
    """The single epoch_NNN.pt inside a Tune checkpoint directory."""
    found = sorted(Path(directory).glob(CHECKPOINT_GLOB))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one {CHECKPOINT_GLOB} in checkpoint directory {directory}, found {found}")
    return found[0]


def load_tune_checkpoint(checkpoint) -> dict[str, Any]:
    """A `ray.tune.Checkpoint` (local or remote storage) -> run_trial's checkpoint dict."""
    with checkpoint.as_directory() as directory:
        return load_checkpoint(checkpoint_file(directory))


class TuneReporter(RunDirectory):
    """run_trial's reporter inside a Tune trial: artifact files + `tune.report`."""

    def __init__(self, out: Path, config: TrainConfig, extra: dict[str, Any]):
        super().__init__(out)
        if not any((out / R.CHECKPOINTS_DIR).iterdir()):
            (out / R.CHECKPOINTS_DIR).rmdir()  # checkpoints go through tune.report instead
        self.config = config
        self.extra = extra  # parameter counts and where the trial runs, added to every report
        self.held: tuple[dict[str, Any], dict[str, Any] | None] | None = None
        self._writer = None

    def __call__(self, record: dict[str, Any], artifacts: EpochArtifacts) -> None:
        super().__call__(record, replace(artifacts, checkpoint=None))  # grid + metrics files
        self._log_grid(record[R.EPOCH], artifacts.samples)
        metrics = {R.VAL_FID: math.nan, **record, **self.extra}
        if record[R.EPOCH] == self.config.epochs or record.get(R.STOP_REASON) == R.STOP_DIVERGED:
            self.held = (metrics, artifacts.checkpoint)  # reported by `finish`, with test metrics
        else:
            self._report(metrics, artifacts.checkpoint)

    def finish(self, summary: dict[str, Any]) -> None:
        """The last report: the held-back last epoch (or, after a restart that had nothing left
        to train, the last recorded one) plus the test metrics."""
        if self.held is not None:
            metrics, checkpoint = self.held
        else:
            metrics, checkpoint = {R.VAL_FID: math.nan, **self.history[-1], **self.extra}, None
        final = {k: summary[k] for k in TEST_METRICS if k in summary}
        self._report({**metrics, **final}, checkpoint)
        if self._writer is not None:
            self._writer.close()

    def _report(self, metrics: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
        from ray import tune

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
    import ray
    from ray import tune

    config = train_config(tune_config)
    device = trial_device()
    torch.set_num_threads(max(1, setup.threads))
    resume = None
    if (checkpoint := tune.get_checkpoint()) is not None:
        resume = load_tune_checkpoint(checkpoint)
    with torch.device("meta"):  # sizes only: no memory, no initialisation (run_trial builds the real one)
        counts = build_model(config.model).parameter_counts()
    extra = {R.PARAMS_PREFIX + name: n for name, n in counts.items()}
    extra[R.PARAMS_TOTAL] = sum(counts.values())
    extra.update(environment(device))  # node, device, torch version
    extra[R.RAY_NODE_ID] = ray.get_runtime_context().get_node_id()
    reporter = TuneReporter(Path.cwd(), config, extra)  # Ray runs each trial in its working dir
    if resume is not None:
        reporter.history = list(resume["history"])
    evaluator = None
    if setup.evaluators is not None and config.eval_samples > 0:
        evaluator = setup.evaluators(config, setup.data, device)
    result = run_trial(config, setup.data, reporter, evaluator=evaluator, device=device, resume=resume,
                       checkpoint_epochs=setup.checkpoint_epochs)
    summary = {**result.summary, R.RAY_NODE_ID: extra[R.RAY_NODE_ID]}
    R.write_text_atomic(reporter.out / R.SUMMARY_JSON, json.dumps(summary, indent=1, default=str))
    reporter.finish(summary)


def evaluate_checkpoint(checkpoint, setup: TrialSetup) -> dict[str, Any]:
    """Summary row of a trial the scheduler stopped, from its last checkpoint: the trial's own
    summary (stop reason early-stopped) plus its test metrics. Runs as a Ray task with a
    trial's resources (see study/export.py)."""
    from models.checkpoint import load_model
    from study.train import summarize

    device = trial_device()
    torch.set_num_threads(max(1, setup.threads))
    with checkpoint.as_directory() as directory:
        config, model, state = load_model(checkpoint_file(directory))
    model = model.to(device)
    summary = summarize(config, model, list(state["history"]), R.STOP_EARLY, device)
    if setup.evaluators is not None and config.eval_samples > 0:
        evaluator = setup.evaluators(config, setup.data, device)
        summary[R.FEATURENET_SHA256] = evaluator.featurenet_sha256
        summary.update(evaluator.test(model))
    return summary


def scheduler_rungs(grace_period: int, reduction_factor: float, max_t: int) -> frozenset[int]:
    """The epochs at which ASHA can stop a trial: grace * rf^k <= max_t (for every bracket,
    since a bracket's rungs are a subset of this series)."""
    rungs, t = set(), float(grace_period)
    while t <= max_t:
        rungs.add(math.ceil(t - 1e-9))  # the first epoch >= the milestone
        t *= reduction_factor
    return frozenset(rungs)


def with_setup(setup: TrialSetup):
    """The trainable with the shared setup put in the object store once."""
    from ray import tune

    return tune.with_parameters(train_trial, setup=setup)


__all__ = ["TrialSetup", "EvaluatorFactory", "MetricsFactory", "train_trial", "with_setup", "scheduler_rungs",
           "evaluate_checkpoint", "load_tune_checkpoint", "checkpoint_file"]
