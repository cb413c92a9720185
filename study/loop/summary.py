"""A trial's tidy summary row: its full config, sizes, timings, best/final validation FID, the
environment, and (through the `Evaluator`) its timed test metrics. The one builder of that row, for
a trial that ran to its end, one the scheduler stopped, and a model tested part-way through."""

from __future__ import annotations

import math
import time
from typing import Any, Protocol

import torch

from models.config import TrainConfig
from study import results as R
from study.devices import environment
from study.repeat import pinned_threads


class Evaluator(Protocol):
    """Quality metrics for a model (study.metrics.evaluator.TrialEvaluator is the real one)."""

    featurenet_sha256: str

    def validation(self, model, suite: bool = True) -> dict[str, float]: ...

    def test(self, model, nll: bool = True) -> dict[str, float]: ...


def config_columns(config: TrainConfig) -> dict[str, Any]:
    """Flat hp_* columns (tuples as 'a-b-c' strings so pandas can group on them) + the exact JSON."""
    flat = config.to_dict()
    row = {R.FAMILY: flat.pop("family"), R.ARCH: flat.pop("arch"), R.SEED: flat.pop("seed")}
    for key, value in flat.items():
        row[R.hp_column(key)] = "-".join(map(str, value)) if isinstance(value, list) else value
    row[R.CONFIG_JSON] = config.to_json()
    return row


def summarize(config: TrainConfig, model, history: list[dict], stop_reason: str, device) -> dict[str, Any]:
    """The summary row without test metrics: full config, sizes, timings, best/final validation FID."""
    row = config_columns(config)
    row.update(R.params_columns(model.parameter_counts()))
    row[R.EPOCHS_RUN] = len(history)
    row[R.STOP_REASON] = stop_reason
    row[R.TRAIN_SECONDS] = history[-1][R.TRAIN_SECONDS] if history else 0.0
    # (NaN for a history written before the column existed)
    row[R.TRIAL_SECONDS] = history[-1].get(R.TRIAL_SECONDS, math.nan) if history else 0.0
    speeds = [h[R.IMAGES_PER_S] for h in history]
    row[R.IMAGES_PER_S] = sum(speeds) / len(speeds) if speeds else float("nan")
    fids = [(h[R.VAL_FID], h[R.EPOCH]) for h in history if math.isfinite(h.get(R.VAL_FID, math.nan))]
    if fids:
        row[R.BEST_VAL_FID], row[R.BEST_EPOCH] = min(fids)
        row[R.FINAL_VAL_FID] = history[-1].get(R.VAL_FID, math.nan)
    if history:  # the final model's other validation metrics (fidelity, diversity), under their own names
        row.update({k: history[-1][k] for k in R.VALIDATION_METRICS if k != R.VAL_FID and k in history[-1]})
    with pinned_threads(device):  # a CPU trial's count, also where a driver summarises a failed trial
        row.update(environment(torch.device(device)))
    return row


def summary_row(config: TrainConfig, model, history: list[dict], stop_reason: str, device,
                evaluator: Evaluator | None, nll: bool = True) -> dict[str, Any]:
    """`summarize` plus the feature-network hash and the model's test metrics with their wall time,
    which TRIAL_SECONDS includes (no test metrics for a diverged model or without an evaluator; `nll`
    False: a VAE's without the importance-weighted NLL, see TrialEvaluator.test). On a CPU at the
    trials' pinned thread count (study/repeat.py), also for a stopped trial's checkpoint evaluated later."""
    with pinned_threads(device):
        row = summarize(config, model, history, stop_reason, device)
        if evaluator is not None:
            row[R.FEATURENET_SHA256] = evaluator.featurenet_sha256
            if stop_reason != R.STOP_DIVERGED:
                started = time.perf_counter()
                row.update(evaluator.test(model, nll=nll))
                row[R.TEST_EVAL_SECONDS] = time.perf_counter() - started
                row[R.TRIAL_SECONDS] += row[R.TEST_EVAL_SECONDS]
    return row
