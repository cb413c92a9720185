"""Column names of every record the study writes, and the tidy-file writers.

One constant per name: the training loop, the Ray trainable, the launcher and `analysis/`
all import these, so no metric or column is spelled twice. Importing this module pulls in
nothing heavier than pandas.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

# --- identity -------------------------------------------------------------------------------
STUDY = "study"
TRIAL_ID = "trial_id"
FAMILY = "family"
ARCH = "arch"
SEED = "seed"
CONFIG_JSON = "config_json"  # the full, exact config; the flat hp columns are for pandas
NODE = "node"
DEVICE = "device"
TORCH_VERSION = "torch_version"
TORCH_THREADS = "torch_threads"  # intra-op threads the row's numbers were computed with (study/repeat.py)
CPU_MODEL = "cpu_model"
CPU_ID = "cpu_id"  # fingerprint of the CPU's instruction sets and caches: oneDNN picks kernels by them
FEATURENET_SHA256 = "featurenet_sha256"

# --- per-epoch training record -----------------------------------------------------------------
EPOCH = "epoch"
EPOCH_SECONDS = "epoch_seconds"
TRAIN_SECONDS = "train_seconds"  # cumulative training wall time, evaluation excluded
# cumulative wall time of everything the trial spent: training, validation, checkpoints and writes, and
# (in trials.parquet) its test scoring, wherever it ran (inside the trial, or after the search for a
# stopped trial and the picked trials' likelihood); what a study costs. Work a crashed attempt did
# after its last checkpoint is not counted (the restart repeats it, and that is counted).
TRIAL_SECONDS = "trial_seconds"
EVAL_SECONDS = "eval_seconds"
TEST_EVAL_SECONDS = "test_eval_seconds"  # the end-of-trial test evaluation, wall seconds
IMAGES_PER_S = "images_per_s"
# the per-step loss names are the models' own
from models.config import D_FAKE, D_REAL, LOSS_D, LOSS_G, LOSS_KL, LOSS_NELBO, LOSS_RECON  # noqa: E402,F401

# --- quality metrics ---------------------------------------------------------------------------
# Which metric answers which question (docs/metrics.md, "Which metric answers which question"):
#   fidelity  FID, precision, density;  diversity  recall, coverage, class coverage/entropy;
#   likelihood (VAE)  the importance-weighted NLL of the binarized test set.
VAL_FID = "val_fid"  # the early-stopping / model-selection metric
# the trial's lowest val_fid up to this epoch: a scheduler's decision signal (--stop-signal best),
# reported to Tune only, never a history column (it follows from val_fid)
VAL_FID_BEST = "val_fid_best"
VAL_KID = "val_kid"
VAL_SAMPLE_IS = "val_sample_is"  # IS of the generated samples under the MNIST classifier (no real data)
# Kynkaanniemi et al. 2019 (precision, recall), Naeem et al. 2020 (density, coverage), k = 5, on the
# domain features: `num_samples` generated images vs the first `num_samples` real images of the split
VAL_PRECISION = "val_precision"
VAL_RECALL = "val_recall"
VAL_DENSITY = "val_density"
VAL_COVERAGE = "val_coverage"
# the classifier's predicted classes of the generated images: the FRACTION of the 10 digit classes that
# get at least 1 % of them, and the entropy of their histogram over log(10) (1 = uniform)
VAL_CLASS_COVERAGE = "val_class_coverage"
VAL_CLASS_ENTROPY = "val_class_entropy"
TEST_FID = "test_fid"
TEST_KID = "test_kid"
TEST_SAMPLE_IS = "test_sample_is"
TEST_PRECISION = "test_precision"
TEST_RECALL = "test_recall"
TEST_DENSITY = "test_density"
TEST_COVERAGE = "test_coverage"
TEST_CLASS_COVERAGE = "test_class_coverage"
TEST_CLASS_ENTROPY = "test_class_entropy"
TEST_INCEPTION_FID = "test_inception_fid"  # study/metrics/inception.py: the paper-comparable protocol
TEST_RECON_MSE = "test_recon_mse"  # per-pixel MSE in [0, 1] pixel units
# Bernoulli cross-entropy + KL on the continuous grey pixels, nats per image: a training LOSS, not a
# likelihood (grey pixels are no Bernoulli outcomes; their own entropy adds ~45 nats per image)
TEST_BCE_NELBO = "test_bce_nelbo"
# -log p(x) in nats per image of the test set binarized once with a fixed seed, under the Bernoulli
# decoder, importance-weighted with IW_K samples (Burda et al. 2016): comparable with published NLLs
TEST_BINARIZED_NLL = "test_binarized_nll"
# a search computes TEST_BINARIZED_NLL (with IW_K, IW_IMAGES) after the search, for the trials the report
# picks only (study/followups/picked_nll.py); LIKELIHOOD_SECONDS its wall time. Like the Inception FID
# of `--inception final`, it is a step of the study after the search, the same whatever the search did,
# so it is not in the trial's TRIAL_SECONDS (what the trial spent in the search, the clock the search
# benchmarks and the lab's tables read); what a study spent on its trials is both (search_seconds and
# after_search_seconds below).
LIKELIHOOD_SECONDS = "likelihood_seconds"
# the same seconds in tables written before 2026-12-05, which added them to TRIAL_SECONDS
LEGACY_NLL_SECONDS = "nll_seconds"
# the metric groups: what a trial reports each epoch, and what it adds once, on the test split
VALIDATION_METRICS = (VAL_FID, VAL_KID, VAL_SAMPLE_IS, VAL_PRECISION, VAL_RECALL, VAL_DENSITY, VAL_COVERAGE,
                      VAL_CLASS_COVERAGE, VAL_CLASS_ENTROPY)
# what a trial computes each epoch (the FID a scheduler reads, plus what the same pass of the feature network
# gives nearly free); the whole VALIDATION_METRICS at its last epoch (study/loop/trial.py: suite epochs)
LEAN_VALIDATION_METRICS = (VAL_FID, VAL_SAMPLE_IS, VAL_CLASS_COVERAGE, VAL_CLASS_ENTROPY)
TEST_METRICS = (TEST_FID, TEST_KID, TEST_SAMPLE_IS, TEST_PRECISION, TEST_RECALL, TEST_DENSITY, TEST_COVERAGE,
                TEST_CLASS_COVERAGE, TEST_CLASS_ENTROPY, TEST_INCEPTION_FID, TEST_RECON_MSE, TEST_BCE_NELBO,
                TEST_BINARIZED_NLL)
# how a metric record was produced (python -m study.evaluate --checkpoint)
CHECKPOINT = "checkpoint"  # the checkpoint file; in trials.parquet the trial's last one (study-relative)
NUM_SAMPLES = "num_samples"  # generated images per FID/KID/IS/PRDC (and real images per PRDC)
EVAL_SEED = "eval_seed"  # seed of the generated samples and of KID's subsets / IS's splits
IW_K = "iw_k"  # importance samples per image behind TEST_BINARIZED_NLL
IW_IMAGES = "iw_images"  # binarized test images behind TEST_BINARIZED_NLL (the first N)
INCEPTION_SAMPLES = "inception_samples"  # generated (and test) images behind TEST_INCEPTION_FID
INCEPTION_SHA256 = "inception_sha256"  # SHA-256 of the TorchScript Inception behind TEST_INCEPTION_FID

# --- trial summary -----------------------------------------------------------------------------
PARAMS_PREFIX = "params_"  # params_generator, params_discriminator, params_encoder, ...
PARAMS_TOTAL = "params_total"
EPOCHS_RUN = "epochs_run"
STOP_REASON = "stop_reason"
BEST_VAL_FID = "best_val_fid"
BEST_EPOCH = "best_epoch"
FINAL_VAL_FID = "final_val_fid"
ERROR_MESSAGE = "error_message"

# stop reasons
STOP_COMPLETED = "completed"
STOP_EARLY = "early-stopped"
STOP_DIVERGED = "diverged"
STOP_ERROR = "error"
STOP_OOM = "oom"  # the trial's model or batch did not fit in memory (the study goes on)
STOP_REASONS = (STOP_COMPLETED, STOP_EARLY, STOP_DIVERGED, STOP_ERROR, STOP_OOM)

# hyperparameter columns are the config's field names, prefixed, so they never clash
HP_PREFIX = "hp_"

TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"

# The selection rule: "the best trial" has the lowest *final* validation FID. Final, not
# best-over-epochs: the final model is the one whose test metrics and sample grid are reported,
# and validation, never test, chooses.
SELECTION_METRIC = FINAL_VAL_FID

EXIT_BAD_INPUT = 2  # every CLI's exit status for bad flags or files (after an `error:` message)
EXIT_INTERRUPTED = 130  # Ctrl-C (or a lost driver) before every run finished: the same command continues


def hp_column(field_name: str) -> str:
    return HP_PREFIX + field_name


def params_columns(counts: dict[str, int]) -> dict[str, int]:
    """params_<network> per network and params_total, from a model's parameter_counts()."""
    return {**{PARAMS_PREFIX + name: n for name, n in counts.items()}, PARAMS_TOTAL: sum(counts.values())}


def ranked(trials: pd.DataFrame, metric: str = SELECTION_METRIC) -> pd.DataFrame:
    """The rows with a finite `metric`, lowest first, ties in row order: the one selection rule
    (validation chooses; `metric` is a validation column)."""
    values = pd.to_numeric(trials[metric], errors="coerce").astype(float)
    finite = np.isfinite(values.to_numpy())
    order = np.argsort(values.to_numpy()[finite], kind="stable")
    return trials[finite].iloc[order]


def best_trial(trials: pd.DataFrame, metric: str = SELECTION_METRIC) -> pd.Series | None:
    """The selected trial: the first of `ranked` (None if no trial has a finite `metric`)."""
    order = ranked(trials, metric)
    return None if order.empty else order.iloc[0]


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of `points` [n, d] that no other row dominates (every objective
    minimised: another row no worse in every column and better in one). A row with a NaN or inf is
    never on the front, and takes no part in dominating others."""
    points = np.asarray(points, dtype=float)
    points = points.reshape(len(points), -1) if len(points) else np.zeros((0, 0))
    finite = np.isfinite(points).all(axis=1)
    kept = points[finite]
    no_worse = (kept[:, None, :] <= kept[None, :, :]).all(axis=2)  # [i, j]: i no worse than j
    better = (kept[:, None, :] < kept[None, :, :]).any(axis=2)
    mask = np.zeros(len(points), dtype=bool)
    mask[finite] = ~(no_worse & better).any(axis=0)
    return mask


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (weights files are pinned by it)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of `path` to write to, moved onto `path` only when the block succeeds,
    so a crash never leaves half a file (and a failed write leaves no temporary one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# a write that failed because the disk (or the user's quota, or the file-size limit) is full
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def unwritable_reason(path: str | Path) -> str | None:
    """Why no directory can be created and written at the local `path`, or None if one can
    (checked before any work, so a bad output path fails at once instead of after training)."""
    target = Path(path).expanduser().absolute()
    try:
        if target.exists() and not target.is_dir():
            return f"{target} is a file, not a directory"
        while not target.exists():
            target = target.parent
    except PermissionError:  # a parent this user may not enter: nothing below it can be reached
        return f"{target} is not reachable by this user (permission denied on a parent directory)"
    if not target.is_dir():
        return f"{target} is a file, so no directory can be created below it"
    if not os.access(target, os.W_OK | os.X_OK):
        return f"{target} is not writable by this user"
    return None


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# --- a trial's artifact directory (the same for `study.train --out DIR` and a Ray trial) -------
TRIAL_DIR = "trial_dir"  # column: the trial's artifact directory, relative to the study dir
METRICS_CSV = "metrics.csv"  # one row per epoch
METRICS_JSON = "metrics.json"
SUMMARY_JSON = "summary.json"  # the trial's summary row
SAMPLES_DIR = "samples"  # samples/epoch_001.png ... (8x8 grid from fixed noise)
CHECKPOINTS_DIR = "checkpoints"  # checkpoints/epoch_010.pt ..., checkpoints/final.pt
FINAL_CHECKPOINT = "final.pt"


def sample_grid_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.png"


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pt"


CHECKPOINT_GLOB = "epoch_*.pt"  # every checkpoint_name(epoch); sorted, the last is the latest

# --- a Ray Tune study directory (study/launch.py writes it, study/export.py fills the tables) --
SEED_CONFIG = "seed_config"  # True for the seed studies' own configurations (the first trials)
RAY_NODE_ID = "ray_node_id"  # the Ray node a trial ran on (nodes of one host share its name)
# what a trial's training seconds were measured on (they depend on it): the GPU model ("cpu" without
# one), the study's GPUs per trial, and the trials that shared that GPU at most (the packing: 1/gpus
# per trial rounded down; 0 on the CPU). Co-tenants change as trials stop: see docs/cluster.md
GPU_NAME = "gpu_name"
GPUS_PER_TRIAL = "gpus_per_trial"
TRIALS_PER_GPU = "trials_per_gpu"
# where a trial trained: kept from its own reports when another task evaluates it
PLACEMENT = (NODE, DEVICE, RAY_NODE_ID, GPU_NAME, GPUS_PER_TRIAL, TRIALS_PER_GPU)
BEST_SAMPLES_FILE = "best_samples.png"  # the best trial's last sample grid
STUDY_JSON = "study.json"  # the launcher's resolved settings, reused by --resume
RAY_SESSION_JSON = "ray_session.json"  # the local Ray the launcher started (reaped after a crash)
OPTUNA_DB = "optuna.db"  # the Optuna study (SQLite): optuna-dashboard, importances, --resume

# --- replicates (python -m study.replicate): STUDY_DIR/replicates.parquet ---------------------------
# One row per (configuration, seed), with the metric columns of trials.parquet; its TRIAL_ID is the
# replicate run's own id, SEED the replicate seed, SEED_CONFIG carried over from the source trial.
REPLICATES_FILE = "replicates.parquet"
SOURCE_TRIAL_ID = "source_trial_id"  # the trials.parquet trial whose configuration was re-trained
REPLICATE_SEED = "replicate_seed"
REPLICATES_DIR = "replicates"  # STUDY_DIR/replicates/: the replicates' Ray experiment (trial dirs)
REPLICATES_SPEC = "replicates.json"  # in REPLICATES_DIR: the runs it holds (checked on resume)


# --- a trial that also reports test metrics at earlier epochs (python -m study.reproduce) ---------
def epoch_summary_name(epoch: int) -> str:
    """The summary row of a trial's model at `epoch`, as if it had been trained for `epoch` epochs."""
    return f"summary_epoch_{epoch:03d}.json"


def search_seconds(trials: pd.DataFrame) -> pd.Series:
    """Each trial's seconds in the search: TRIAL_SECONDS, less the picked likelihood's seconds that a
    table written before 2026-12-05 added to it (LEGACY_NLL_SECONDS)."""
    seconds = trials[TRIAL_SECONDS].astype(float)
    if LEGACY_NLL_SECONDS in trials:
        seconds = seconds - trials[LEGACY_NLL_SECONDS].astype(float).fillna(0.0)
    return seconds


def after_search_seconds(trials: pd.DataFrame) -> pd.Series:
    """Each trial's seconds in the steps after the search that describe it (the picked likelihood)."""
    column = LIKELIHOOD_SECONDS if LIKELIHOOD_SECONDS in trials else LEGACY_NLL_SECONDS
    if column not in trials:
        return pd.Series(0.0, index=trials.index)
    return trials[column].astype(float).fillna(0.0)
