"""Domain metrics: FID, KID and IS through torchmetrics' own implementations, with the MNIST feature
network (study/metrics/classifier.py) as the custom `feature` module, plus PRDC (study/metrics/prdc.py)
and class coverage, all from one pass over the images:
  FID  Heusel et al. 2017: ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)), float64 features.
  KID  Binkowski et al. 2018: unbiased MMD^2, cubic polynomial kernel, mean over random subsets.
  IS   Salimans et al. 2016: exp(E_x KL(p(y|x) || p(y))) on the classifier's logits, mean over splits;
       of the generated samples alone (no real data), hence the column name *_sample_is.
  class coverage / entropy: the classifier's predicted classes of the generated images.
Real-image statistics come from study/metrics/real_stats.py (computed once, cached on disk).

Torchmetrics quirks handled here: a custom module needs `num_features` (else FID probes it with a
dummy 3x299x299 image); `InceptionScore(normalize=True)` turns inputs into uint8 even for custom
modules, so every metric gets float [0, 1] images with normalize=False; KID and IS draw subsets
from the global RNG, so they run under a forked, seeded RNG.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from study import results as R
from study.metrics.classifier import FEATURE_DIM, NUM_CLASSES, FeatureNet
from study.metrics.fp32 import full_fp32
from study.metrics.prdc import PRDC_K, PRDCReal, prdc_real, prdc_scores
from study.metrics.real_stats import RealStats, cached_real_stats, images_sha256, per_chunk, unit_batches
from study.repeat import REPEAT_THREADS, pinned_threads

KID_SUBSETS = 100  # Binkowski et al. 2018 use 100 subsets of 1,000
KID_SUBSET_SIZE = 1000
IS_SPLITS = 10  # Salimans et al. 2016
CLASS_MIN_SHARE = 0.01  # a class counts as covered when at least 1 % of the samples are predicted as it
FEATURES, LOGITS = "features", "logits"


# --- the feature network as torchmetrics' custom `feature` module --------------------------------

class _OneBatchMemo:
    """The feature network's outputs for the last batch it saw.

    FID, KID and IS each call their feature module on the same batch tensor; the memo makes that
    one forward pass instead of three. It holds the batch itself, so identity is a safe key, and
    checks the tensor's version counter so an in-place change is never served stale features.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.batch: torch.Tensor | None = None
        self.version = -1
        self.outputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, net: FeatureNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.outputs is None or x is not self.batch or x._version != self.version:
            with torch.no_grad():
                self.outputs = per_chunk(net.features_and_logits, x)
            self.batch, self.version = x, x._version
        return self.outputs


class FeatureTap(nn.Module):
    """One output of the feature network: [B,1,28,28] in [0,1] -> [B,128] features or [B,10] logits.

    FID gets float64 features (its sums and matrix square root are float64 anyway); KID gets
    float32 ones, which keeps its 300 kernel matrices per evaluation affordable on a CPU.
    """

    def __init__(self, net: FeatureNet, output: str, memo: _OneBatchMemo, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.net = net
        self.output = output
        self.num_features = FEATURE_DIM if output == FEATURES else NUM_CLASSES  # spares FID a dummy pass
        self.memo = memo
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, logits = self.memo(self.net, x)
        return (features if self.output == FEATURES else logits).to(self.dtype)


class _DomainMetrics(NamedTuple):
    fid: FrechetInceptionDistance
    kid: KernelInceptionDistance
    inception_score: InceptionScore
    memo: _OneBatchMemo


def _domain_metrics(net: FeatureNet, device: torch.device, kid_subsets: int, kid_subset_size: int,
                    is_splits: int) -> _DomainMetrics:
    memo = _OneBatchMemo()
    with warnings.catch_warnings():  # KID and IS warn that they buffer features: 10k x 128 is small
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
        fid = FrechetInceptionDistance(feature=FeatureTap(net, FEATURES, memo, torch.float64),
                                        reset_real_features=False)
        kid = KernelInceptionDistance(feature=FeatureTap(net, FEATURES, memo), subsets=kid_subsets,
                                      subset_size=kid_subset_size, reset_real_features=False)
        inception_score = InceptionScore(feature=FeatureTap(net, LOGITS, memo), splits=is_splits)
    return _DomainMetrics(fid.to(device), kid.to(device), inception_score.to(device), memo)


# --- real-image statistics through the feature network (cached by study/metrics/real_stats.py) ----------

@torch.no_grad()
@full_fp32()
def compute_real_stats(images_uint8: torch.Tensor, split: str, net: FeatureNet,
                       device: torch.device | str = "cpu") -> RealStats:
    """Run the real images through torchmetrics' FID and KID and keep their real-image states."""
    device = torch.device(device)
    metrics = _domain_metrics(net.to(device), device, 1, 1, 1)
    for x in unit_batches(images_uint8):
        x = x.to(device)
        metrics.fid.update(x, real=True)
        metrics.kid.update(x, real=True)
    return RealStats(
        split=split, images_sha256=images_sha256(images_uint8), network_sha256=net.sha256,
        num_images=len(images_uint8), feature_sum=metrics.fid.real_features_sum.cpu(),
        feature_cov_sum=metrics.fid.real_features_cov_sum.cpu(),
        features=torch.cat(metrics.kid.real_features).cpu(),
    )


def real_stats_for(images_uint8: torch.Tensor, split: str, net: FeatureNet,
                   device: torch.device | str = "cpu",
                   cache_dir: str | Path | None = None) -> RealStats:
    def compute() -> RealStats:  # on a CPU at the trials' pinned thread count, whoever computes them
        with pinned_threads(device):
            return compute_real_stats(images_uint8, split, net, device)

    # the pinned count in the name: stats computed at another count (before the pin) are not reused
    return cached_real_stats(images_uint8, split, net.sha256, compute, cache_dir,
                             variant=f"-threads{REPEAT_THREADS}")


def class_coverage(logits: torch.Tensor, num_classes: int = NUM_CLASSES,
                   min_share: float = CLASS_MIN_SHARE) -> tuple[float, float]:
    """(fraction of classes with at least `min_share` of the predictions, entropy / log(classes))
    of the classifier's predicted classes: 1.0 and 1.0 for a balanced set, 0.1 and 0.0 for one class."""
    counts = torch.bincount(logits.argmax(dim=1), minlength=num_classes).double()
    share = counts / counts.sum()
    nonzero = share[share > 0]
    entropy = float(-(nonzero * nonzero.log()).sum()) / math.log(num_classes)
    return float((share >= min_share).double().mean()), entropy


class DomainScores(NamedTuple):
    fid: float
    kid: float  # mean over subsets
    kid_std: float
    inception_score: float  # mean over splits
    inception_score_std: float
    num_images: int
    precision: float = math.nan
    recall: float = math.nan
    density: float = math.nan
    coverage: float = math.nan
    class_coverage: float = math.nan  # fraction of the 10 classes with >= 1 % of the predictions
    class_entropy: float = math.nan  # entropy of the predicted-class histogram / log(10)


@torch.no_grad()
@full_fp32()
def score_images(batches: Iterable[torch.Tensor], real: RealStats, net: FeatureNet, *, seed: int = 0,
                 device: torch.device | str = "cpu", kid_subsets: int = KID_SUBSETS,
                 kid_subset_size: int = KID_SUBSET_SIZE, is_splits: int = IS_SPLITS,
                 prdc: bool = True, prdc_reference: PRDCReal | None = None,
                 suite: bool = True) -> DomainScores:
    """FID/KID/IS, PRDC and class coverage of images ([B,1,28,28] batches in [0,1]) against a split.

    `suite` False: only what the one pass of the feature network gives nearly free, FID, IS and class
    coverage (KID's subset kernels and PRDC's k-NN search, the costly part, are left NaN): what a
    scheduler reads each epoch (study/loop/trial.py). The FID is the same number either way.

    PRDC compares the n images with the first n real images of the split (equal counts; n capped
    at the split's size), whose features and k-NN radii `prdc_reference` holds when given (else
    they are computed here, a k-NN search over the real images). Deterministic: same images and
    seed -> same numbers. Images with NaN/inf (a diverged model) score NaN instead of raising
    inside torchmetrics.
    """
    if real.network_sha256 != net.sha256:
        raise ValueError(f"real statistics were computed with feature network {real.network_sha256[:12]}, "
                         f"not {net.sha256[:12]}: recompute them with this network")
    device = torch.device(device)
    m = _domain_metrics(net.to(device), device, kid_subsets, kid_subset_size, is_splits)
    real.load_into(m.fid, m.kid)
    n = 0
    features, logits = [], []
    for x in batches:
        x = x.to(device, torch.float32)
        if not bool(torch.isfinite(x).all()):
            return DomainScores(*(math.nan,) * 5, num_images=n + len(x))
        m.fid.update(x, real=False)
        if suite:
            m.kid.update(x, real=False)
        m.inception_score.update(x)
        batch_features, batch_logits = m.memo(net, x)  # the pass the metrics just made (memoised)
        features.append(batch_features.float().cpu())
        logits.append(batch_logits.float().cpu())
        n += len(x)
    m.memo.clear()
    if n < 2:
        raise ValueError(f"FID/KID/IS need at least 2 images, got {n}")
    m.kid.subset_size = min(kid_subset_size, n, real.num_images)  # KID refuses subsets larger than the sets
    with torch.random.fork_rng(devices=[]):  # KID subsets and IS split order come from the global RNG
        torch.manual_seed(seed)
        kid_mean, kid_std = math.nan, math.nan
        if suite:
            kid_mean, kid_std = (float(v) for v in m.kid.compute())
        else:
            _replay_kid_draws(kid_subsets, real.num_images, n)
        is_mean, is_std = m.inception_score.compute()
    fid = m.fid.compute()
    extra: dict[str, float] = {}
    if suite and prdc and n > PRDC_K:
        reference = prdc_reference if prdc_reference is not None else prdc_real(real, n, device=device)
        if len(reference.features) != min(n, real.num_images):
            raise ValueError(f"the PRDC reference holds {len(reference.features)} real images, "
                             f"not the {min(n, real.num_images)} that {n} generated ones are compared with")
        fake = torch.cat(features)[: len(reference.features)]  # equal counts
        extra.update(prdc_scores(reference, fake, device=device))
    extra["class_coverage"], extra["class_entropy"] = class_coverage(torch.cat(logits))
    return DomainScores(float(fid), float(kid_mean), float(kid_std), float(is_mean), float(is_std), n,
                        **extra)


def _replay_kid_draws(subsets: int, n_real: int, n_fake: int) -> None:
    """Draw from the global RNG what KID's compute draws (torchmetrics: two randperms per subset), so
    the IS computed next shuffles its splits exactly as in the whole suite: a lean record's IS is the
    suite's IS. Milliseconds, against KID's hundreds of kernel matrices."""
    for _ in range(subsets):
        torch.randperm(n_real)
        torch.randperm(n_fake)


# DomainScores field -> column, per split
VALIDATION_KEYS = {"fid": R.VAL_FID, "kid": R.VAL_KID, "inception_score": R.VAL_SAMPLE_IS,
                   "precision": R.VAL_PRECISION, "recall": R.VAL_RECALL, "density": R.VAL_DENSITY,
                   "coverage": R.VAL_COVERAGE, "class_coverage": R.VAL_CLASS_COVERAGE,
                   "class_entropy": R.VAL_CLASS_ENTROPY}
TEST_KEYS = {"fid": R.TEST_FID, "kid": R.TEST_KID, "inception_score": R.TEST_SAMPLE_IS,
             "precision": R.TEST_PRECISION, "recall": R.TEST_RECALL, "density": R.TEST_DENSITY,
             "coverage": R.TEST_COVERAGE, "class_coverage": R.TEST_CLASS_COVERAGE,
             "class_entropy": R.TEST_CLASS_ENTROPY}


# what `score_images(..., suite=False)` computes: the per-epoch validation record (study/loop/trial.py)
LEAN_VALIDATION_KEYS = {f: c for f, c in VALIDATION_KEYS.items() if c in R.LEAN_VALIDATION_METRICS}


def domain_record(scores: DomainScores, keys: dict[str, str]) -> dict[str, float]:
    return {column: getattr(scores, field) for field, column in keys.items()}
