"""The analysis tests' fixture study: a GAN and a VAE study directory made by REALLY training tiny
configurations with study.loop.trial.run_trial, written in the layout of study/results.py.

Unlike a launcher run (tests/conftest.py: launched_studies), it controls exactly which trials
exist, so the analysis tests can count on them. Each study holds: a seed-study configuration,
tiny variants, one trial stopped early by the caller (as ASHA would), one diverged trial
(VAE, real NaN losses) or one errored trial (GAN, a real error from run_trial), so NaN rows,
stop reasons and missing sizes all occur. Metrics come from the real evaluator
(study.metrics.evaluator.TrialEvaluator via EvaluationAssets.evaluator) on EVAL_SAMPLES images.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from models import build_model
from models.checkpoint import load_checkpoint
from models.config import (
    ARCH_CONV,
    ARCH_DCGAN,
    ARCH_MLP,
    FAMILY_GAN,
    FAMILY_VAE,
    TrainConfig,
    seed_model_config,
)
from search_spaces import scale_widths
from study import results as R
from study.data import MNISTSplits, load_splits
from study.loop.run_dir import RunDirectory, latest_checkpoint
from study.loop.summary import config_columns, summarize
from study.loop.trial import run_trial
from study.metrics.evaluator import prepare_evaluation
from study.store import StudyStore

EVAL_SAMPLES = 400  # generated images per FID/KID/IS (the real study.metrics evaluator)
IW_IMAGES = 200  # test images behind a VAE's IW-NLL (all 10,000: ~390 s for the VAE study; 200: ~20 s)
TRAIN_SUBSET = 256
BATCH = 32


class _StopTrial(Exception):
    """Raised by the reporter to stop a trial after an epoch, as ASHA stops a Ray trial."""


@dataclass(frozen=True)
class TrialSpec:
    trial_id: str
    config: TrainConfig
    stop_after: int | None = None  # stop early after this epoch


@dataclass(frozen=True)
class TinyStudies:
    gan: Path
    vae: Path
    data_dir: Path


def _tiny(family: str, arch: str, scale: float = 0.125, epochs: int = 2, **changes) -> TrainConfig:
    config = TrainConfig(model=seed_model_config(family, arch), epochs=epochs, batch_size=BATCH,
                         train_subset=TRAIN_SUBSET, eval_samples=EVAL_SAMPLES, checkpoint_every=1)
    config = scale_widths(config, scale) if scale != 1.0 else config
    return config.replace(**changes) if changes else config


def study_specs() -> dict[str, list[TrialSpec]]:
    """Tiny trials per study; trial 0 of each is a seed study's own configuration at full width."""
    return {
        FAMILY_GAN: [
            TrialSpec("gan_00000", _tiny(FAMILY_GAN, ARCH_MLP, scale=1.0)),
            TrialSpec("gan_00001", _tiny(FAMILY_GAN, ARCH_DCGAN, latent_dim=16)),
            TrialSpec("gan_00002", _tiny(FAMILY_GAN, ARCH_DCGAN, epochs=3, lr_g=1e-3, lr_d=1e-3),
                      stop_after=1),
            TrialSpec("gan_00003", _tiny(FAMILY_GAN, ARCH_MLP, scale=0.25, latent_dim=8, lr_g=5e-4)),
            TrialSpec("gan_00004", _tiny(FAMILY_GAN, ARCH_MLP, batch_size=4096)),  # errors: batch > subset
        ],
        FAMILY_VAE: [
            TrialSpec("vae_00000", _tiny(FAMILY_VAE, ARCH_MLP, scale=1.0)),
            TrialSpec("vae_00001", _tiny(FAMILY_VAE, ARCH_CONV, latent_dim=8, lr=1e-3)),
            TrialSpec("vae_00002", _tiny(FAMILY_VAE, ARCH_MLP, scale=0.25, latent_dim=4, epochs=3, lr=1e-3),
                      stop_after=2),
            TrialSpec("vae_00003", _tiny(FAMILY_VAE, ARCH_CONV, latent_dim=2)),
            TrialSpec("vae_00004", _tiny(FAMILY_VAE, ARCH_MLP, lr=50.0)),  # diverges: NaN losses
        ],
    }


def _run(spec: TrialSpec, data: MNISTSplits, study: str, study_dir: Path,
         evaluator_for) -> tuple[dict, list[dict]]:
    """Train one spec into study_dir/trials/<id>/; return its summary row and history rows."""
    out = study_dir / "trials" / spec.trial_id
    run_dir = RunDirectory(out)
    config = spec.config
    evaluator = evaluator_for(config)

    def report(record, artifacts):
        run_dir(record, artifacts)
        if spec.stop_after is not None and record[R.EPOCH] >= spec.stop_after:
            raise _StopTrial

    identity = {R.STUDY: study, R.TRIAL_ID: spec.trial_id, R.TRIAL_DIR: str(out.relative_to(study_dir))}
    try:
        summary = run_trial(config, data, report, evaluator=evaluator, device="cpu").summary
    except _StopTrial:  # rebuild the model from the last checkpoint, as a trainable restores one
        model = build_model(config.model)
        model.load_state_dict(load_checkpoint(latest_checkpoint(out))["model"])
        model.eval()
        summary = summarize(config, model, run_dir.history, R.STOP_EARLY, torch.device("cpu"))
        summary[R.FEATURENET_SHA256] = evaluator.featurenet_sha256
        summary.update(evaluator.test(model))
    except ValueError as exc:  # a crashed trial is recorded, as the launcher records it
        summary = {**config_columns(config), R.STOP_REASON: R.STOP_ERROR, R.ERROR_MESSAGE: str(exc),
                   R.EPOCHS_RUN: 0, R.TRAIN_SECONDS: math.nan, R.PARAMS_TOTAL: math.nan}
    last = latest_checkpoint(out)
    if last is not None:
        run_dir.save_checkpoint(load_checkpoint(last), R.FINAL_CHECKPOINT)
    history = [{**identity, R.FAMILY: config.family, R.ARCH: config.model.arch, R.SEED: config.seed, **record}
               for record in run_dir.history]
    return {**identity, **summary}, history


def build_tiny_studies(root: Path, data_dir: Path, specs: dict[str, list[TrialSpec]] | None = None,
                       prefix: str = "tiny") -> TinyStudies:
    """Train every spec and write root/tiny-gan/ and root/tiny-vae/ (trials + history parquet)."""
    torch.set_num_threads(1)  # the test machine has 2 shared cores
    data = load_splits(data_dir, download=False)

    assets = prepare_evaluation(data, splits=(), iw_images=IW_IMAGES)  # real statistics: the disk cache

    def evaluator_for(config):
        return assets.evaluator(config, data, torch.device("cpu"))

    dirs = {}
    for family, family_specs in (specs or study_specs()).items():
        name = f"{prefix}-{family}"
        study_dir = root / name
        trials, history = [], []
        started = time.perf_counter()
        for spec in family_specs:
            row, rows = _run(spec, data, name, study_dir, evaluator_for)
            trials.append(row)
            history.extend(rows)
        store = StudyStore(study_dir)  # the study's layout and the one table writer (study/store.py)
        store.write_table(pd.DataFrame(trials), R.TRIALS_FILE)
        store.write_table(pd.DataFrame(history), R.HISTORY_FILE)
        print(f"fixture study {name}: {len(family_specs)} trials in {time.perf_counter() - started:.1f} s")
        dirs[family] = study_dir
    return TinyStudies(gan=dirs[FAMILY_GAN], vae=dirs[FAMILY_VAE], data_dir=Path(data_dir))
