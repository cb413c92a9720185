"""Quality metrics: domain FID/KID/IS, VAE likelihoods, and the one `TrialEvaluator`.

Domain metrics run torchmetrics' own implementations with the MNIST feature network
(study/featurenet/) as the custom `feature` module:
  FID  Heusel et al. 2017: ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)), float64 features.
  KID  Binkowski et al. 2018: unbiased MMD^2, cubic polynomial kernel, mean over random subsets.
  IS   Salimans et al. 2016: exp(E_x KL(p(y|x) || p(y))) on the classifier's logits, mean over splits;
       of the generated samples alone (no real data), hence the column name *_sample_is.
  PRDC precision/recall (Kynkaenniemi et al. 2019), density/coverage (Naeem et al. 2020), k = 5, by the
       `prdc` package, on the domain features of n generated vs the first n real images of the split.
  class coverage / entropy: the classifier's predicted classes of the generated images.
VAE likelihood: -log p(x) of the test set binarized once (fixed seed), importance-weighted (Burda et
al. 2016); the continuous-pixel ELBO is reported as a BCE loss, never as a likelihood.
Real-image statistics come from study/real_stats.py (computed once, cached on disk);
`prepare_evaluation` gathers them with the network into `EvaluationAssets`, which a Ray driver
ships to every trial, and `EvaluationAssets.evaluator(config, data, device)` is the one way a
trial gets its `TrialEvaluator`. The Inception FID lives in study/inception.py, the reference
floors in study/evaluate.py.

Torchmetrics quirks handled here: a custom module needs `num_features` (else FID probes it with a
dummy 3x299x299 image); `InceptionScore(normalize=True)` turns inputs into uint8 even for custom
modules, so every metric gets float [0, 1] images with normalize=False; KID and IS draw subsets
from the global RNG, so they run under a forked, seeded RNG.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from models.config import FAMILY_VAE, LOSS_KL, LOSS_RECON, TrainConfig
from study import results as R
from study.data import SPLIT_TEST, SPLIT_VAL, MNISTSplits, to_unit
from study.featurenet import FEATURE_DIM, NUM_CLASSES, FeatureNet, load_featurenet
from study.real_stats import BATCH_SIZE, RealStats, cached_real_stats, images_sha256, unit_batches

KID_SUBSETS = 100  # Binkowski et al. 2018 use 100 subsets of 1,000
KID_SUBSET_SIZE = 1000
IS_SPLITS = 10  # Salimans et al. 2016
PRDC_K = 5  # nearest neighbours of the PRDC manifolds (Naeem et al. 2020 recommend k = 5)
CLASS_MIN_SHARE = 0.01  # a class counts as covered when at least 1 % of the samples are predicted as it
# The binarized NLL: k importance samples per image. Burda et al. 2016 use 5000; on a trained MLP VAE
# (300 binarized test images) k = 100 / 500 / 1000 / 2000 gave 0.113 / 0.034 / 0.002 / 0.001 nat above
# k = 5000 (README, "Real-data floors and costs"), so k = 500 is within 0.1 nat at a tenth of the cost.
# On the first IW_IMAGES test images (None: all 10,000, the protocol for final models; presets may use
# fewer, the same images for every trial).
IW_K = 500
IW_IMAGES: int | None = None
BINARIZE_SEED = 20_160_601  # the test set is binarized once, with this seed, for every model
GENERATION_SEED_OFFSET = {SPLIT_VAL: 0, SPLIT_TEST: 1_000_003}  # test samples differ from validation ones
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
                self.outputs = net.features_and_logits(x)
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


# --- real-image statistics through the feature network (cached by study/real_stats.py) ----------

@torch.no_grad()
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
    return cached_real_stats(images_uint8, split, net.sha256,
                             lambda: compute_real_stats(images_uint8, split, net, device), cache_dir)


@dataclass(frozen=True)
class EvaluationAssets:
    """What a trial needs to score models, computed once (e.g. on a Ray driver) and shipped.

    `evaluator(config, data, device)` is the one seam through which the loop, the Ray trainable
    and the export get a TrialEvaluator.
    """

    featurenet: FeatureNet  # on CPU
    real_stats: dict[str, RealStats]  # per split; a split missing here is computed on first use
    iw_images: int | None = IW_IMAGES  # test images behind a VAE's IW-NLL (None: all; k passes each)
    # the real side of PRDC (features, k-NN radii) per memo key, computed once here and shipped
    prdc: dict[tuple[str, str, int, int], PRDCReal] = field(default_factory=dict)

    @property
    def featurenet_sha256(self) -> str:
        return self.featurenet.sha256

    def evaluator(self, config: TrainConfig, data: MNISTSplits,
                  device: torch.device | str) -> TrialEvaluator | None:
        """The trial's evaluator on its device, or None when evaluation is off (eval_samples 0)."""
        if config.eval_samples == 0:
            return None
        _PRDC_MEMO.update(self.prdc)
        return TrialEvaluator(data, num_samples=config.eval_samples, device=device, seed=config.seed,
                              featurenet=self.featurenet, real_stats=self.real_stats,
                              iw_images=self.iw_images, batch_size=config.eval_batch_size)


def prepare_evaluation(data: MNISTSplits, device: torch.device | str = "cpu",
                       splits: Iterable[str] = (SPLIT_VAL, SPLIT_TEST), featurenet: FeatureNet | None = None,
                       cache_dir: str | Path | None = None,
                       iw_images: int | None = IW_IMAGES,
                       prdc_images: int | None = None) -> EvaluationAssets:
    """The feature network (on CPU) and the real statistics of `splits`, from the cache when present,
    plus the real side of PRDC for `prdc_images` generated images (the trials' eval_samples).

    Both are picklable, so `ray.put(prepare_evaluation(data))` ships them once.
    """
    net = featurenet if featurenet is not None else load_featurenet()
    stats = {split: real_stats_for(data.get(split).images, split, net, device, cache_dir) for split in splits}
    prdc = {}
    if prdc_images:
        for split_stats in stats.values():
            real = prdc_real(split_stats, prdc_images)
            prdc[(split_stats.images_sha256, split_stats.network_sha256, len(real.features), PRDC_K)] = real
    return EvaluationAssets(net.cpu(), stats, iw_images, prdc)


# --- scoring ----------------------------------------------------------------------------------------

class PRDCReal(NamedTuple):
    """The real side of PRDC, computed once per (split, image count): features and k-NN radii."""

    features: np.ndarray  # float32 [n, D]: the domain features of the first n real images
    radii: np.ndarray  # float32 [n]: distance of each to its k-th nearest real neighbour


_PRDC_MEMO: dict[tuple[str, str, int, int], PRDCReal] = {}


def prdc_real(real: RealStats, num_images: int, k: int = PRDC_K) -> PRDCReal:
    """The first `num_images` real features of `real` and their k-NN radii (memoised per process)."""
    if real.features is None:
        raise ValueError("these real statistics carry no features (Inception-FID statistics have none)")
    n = min(num_images, real.num_images)
    key = (real.images_sha256, real.network_sha256, n, k)
    if key not in _PRDC_MEMO:
        features = real.features[:n].numpy().astype(np.float32)
        _PRDC_MEMO[key] = PRDCReal(features, prdc_real_radii(features, k))
    return _PRDC_MEMO[key]


def prdc_real_radii(features: np.ndarray, k: int = PRDC_K) -> np.ndarray:
    """Each real feature's distance to its k-th nearest real neighbour (prdc's own function)."""
    from prdc.prdc import compute_nearest_neighbour_distances

    return compute_nearest_neighbour_distances(features, k)


def prdc_scores(real: PRDCReal, fake_features: np.ndarray, k: int = PRDC_K) -> dict[str, float]:
    """Precision, recall, density, coverage of fake features against a cached real side.

    Exactly `prdc.compute_prdc` (Kynkaenniemi et al. 2019 Eq. 1-2; Naeem et al. 2020 Eq. 3-4) with
    the real radii passed in, so an evaluation pays only for the fake side; prdc's own functions
    compute the distances (tests check the equality with compute_prdc).
    """
    from prdc.prdc import compute_nearest_neighbour_distances, compute_pairwise_distance

    fake_radii = compute_nearest_neighbour_distances(fake_features, k)
    distance = compute_pairwise_distance(real.features, fake_features)  # [n_real, n_fake]
    inside_real = distance < real.radii[:, None]  # fake j inside real i's k-NN ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((distance < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((distance.min(axis=1) < real.radii).mean()),
    }


def quiet_compute_prdc(real_features: np.ndarray, fake_features: np.ndarray,
                       k: int = PRDC_K) -> dict[str, float]:
    """prdc.compute_prdc without its print to stdout (the reference the tests compare against)."""
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):
        return {key: float(v) for key, v in compute_prdc(real_features, fake_features, k).items()}


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
def score_images(batches: Iterable[torch.Tensor], real: RealStats, net: FeatureNet, *, seed: int = 0,
                 device: torch.device | str = "cpu", kid_subsets: int = KID_SUBSETS,
                 kid_subset_size: int = KID_SUBSET_SIZE, is_splits: int = IS_SPLITS,
                 prdc: bool = True) -> DomainScores:
    """FID/KID/IS, PRDC and class coverage of images ([B,1,28,28] batches in [0,1]) against a split.

    PRDC compares the n images with the first n real images of the split (equal counts; n capped
    at the split's size). Deterministic: same images and seed -> same numbers. Images with NaN/inf
    (a diverged model) score NaN instead of raising inside torchmetrics.
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
        kid_mean, kid_std = m.kid.compute()
        is_mean, is_std = m.inception_score.compute()
    fid = m.fid.compute()
    extra: dict[str, float] = {}
    if prdc and n > PRDC_K:
        reference = prdc_real(real, n)
        fake = torch.cat(features)[: len(reference.features)].numpy()  # equal counts
        extra.update(prdc_scores(reference, fake))
    extra["class_coverage"], extra["class_entropy"] = class_coverage(torch.cat(logits))
    return DomainScores(float(fid), float(kid_mean), float(kid_std), float(is_mean), float(is_std), n,
                        **extra)


@contextmanager
def eval_mode(model: nn.Module):
    """Evaluate in eval mode, then give the model back in the mode it came in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def generate(model, num_images: int, seed: int, batch_size: int = BATCH_SIZE) -> Iterator[torch.Tensor]:
    """Seeded, batched samples [B,1,28,28] in [0,1]; the noise is drawn on CPU so it is device-independent."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    for start in range(0, num_images, batch_size):
        z = model.sample_latent(min(batch_size, num_images - start), generator=generator)
        yield model.decode_to_unit(z.to(device))


def binarized(images_uint8: torch.Tensor, seed: int = BINARIZE_SEED) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float {0, 1} [N, 1, 28, 28]: each pixel a Bernoulli draw with its intensity
    as probability, all images at once from one seeded generator (the same binary set for every model)."""
    return torch.bernoulli(to_unit(images_uint8), generator=torch.Generator().manual_seed(seed))


class VAEScores(NamedTuple):
    recon_mse: float  # per-pixel squared error of the posterior-mean reconstruction, [0, 1] pixel units
    bce_nelbo: float  # BCE + KL on the continuous pixels, nats per image: a loss, not a likelihood
    binarized_nll: float  # -log p(x) of the binarized images, nats per image, k importance samples
    iw_k: int
    iw_images: int


@torch.no_grad()
def vae_scores(model, images_uint8: torch.Tensor, *, seed: int = 0, iw_k: int = IW_K,
               iw_images: int | None = IW_IMAGES, batch_size: int = 500) -> VAEScores:
    """Reconstruction MSE and the BCE loss on all images (continuous pixels); the importance-weighted
    NLL of the first `iw_images` (None: all) of the images binarized with BINARIZE_SEED."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    iw_images = len(images_uint8) if iw_images is None else min(iw_images, len(images_uint8))
    sq_err = bce_nelbo = nll = 0.0
    with eval_mode(model):
        for x in unit_batches(images_uint8, batch_size):
            x = x.to(device)
            mu, _logvar = model.encoder(x)
            sq_err += float((torch.sigmoid(model.decoder(mu)) - x).pow(2).sum())
            terms = model.loss_terms(x, generator=generator)
            bce_nelbo += float((terms[LOSS_RECON] + terms[LOSS_KL]).sum())  # Kingma & Welling 2014, Eq. 10
        binary = binarized(images_uint8)[:iw_images]  # the whole set binarized, so a prefix is the same
        for x in binary.split(batch_size):
            nll += float(model.importance_weighted_nll(x.to(device), iw_k, generator=generator).sum())
    n = len(images_uint8)
    return VAEScores(sq_err / images_uint8.numel(), bce_nelbo / n, nll / iw_images if iw_images else math.nan,
                     iw_k, iw_images)


class TrialEvaluator:
    """The metrics the training loop reports: `validation(model)` each epoch, `test(model)` at the end.

    validation -> R.VALIDATION_METRICS; test -> the domain half of R.TEST_METRICS plus, for a VAE,
    {test_recon_mse, test_bce_nelbo, test_binarized_nll, iw_k, iw_images}. Generated images:
    `num_samples` from a seeded
    generator (same seed -> same numbers), scored against the whole split. Pass `featurenet` and
    `real_stats` from `prepare_evaluation` to skip loading and the real-image pass.
    """

    def __init__(self, data: MNISTSplits, num_samples: int = 10_000, device: torch.device | str = "cpu",
                 seed: int = 0, *, featurenet: FeatureNet | None = None,
                 real_stats: dict[str, RealStats] | None = None, batch_size: int = BATCH_SIZE,
                 kid_subsets: int = KID_SUBSETS, iw_k: int = IW_K, iw_images: int | None = IW_IMAGES,
                 cache_dir: str | Path | None = None):
        if num_samples < 2:
            raise ValueError(f"num_samples={num_samples}: FID/KID/IS need at least 2 generated images")
        self.data = data
        self.num_samples = num_samples
        self.device = torch.device(device)
        self.seed = seed
        self.batch_size = batch_size
        self.kid_subsets = kid_subsets
        self.iw_k, self.iw_images = iw_k, iw_images
        self.cache_dir = cache_dir
        self.featurenet = (featurenet if featurenet is not None else load_featurenet()).to(self.device)
        self.featurenet_sha256 = self.featurenet.sha256
        self.real_stats = dict(real_stats or {})
        for split, stats in self.real_stats.items():
            if stats.network_sha256 != self.featurenet_sha256 or stats.split != split:
                raise ValueError(f"real_stats[{split!r}] belong to split {stats.split!r} under feature "
                                 "network "
                                 f"{stats.network_sha256[:12]}, not this evaluator's "
                                 f"{self.featurenet_sha256[:12]}")

    def _real(self, split: str) -> RealStats:
        if split not in self.real_stats:
            self.real_stats[split] = real_stats_for(self.data.get(split).images, split, self.featurenet,
                                                    self.device, self.cache_dir)
        return self.real_stats[split]

    def scores(self, model, split: str) -> DomainScores:
        seed = self.seed + GENERATION_SEED_OFFSET.get(split, 0)
        with eval_mode(model):
            return score_images(generate(model, self.num_samples, seed, self.batch_size), self._real(split),
                                self.featurenet, seed=seed, device=self.device, kid_subsets=self.kid_subsets)

    def validation(self, model) -> dict[str, float]:
        return domain_record(self.scores(model, SPLIT_VAL), VALIDATION_KEYS)

    def test(self, model) -> dict[str, float]:
        out = domain_record(self.scores(model, SPLIT_TEST), TEST_KEYS)
        if model.family == FAMILY_VAE:
            v = vae_scores(model, self.data.test.images, seed=self.seed, iw_k=self.iw_k,
                           iw_images=self.iw_images)
            out.update({R.TEST_RECON_MSE: v.recon_mse, R.TEST_BCE_NELBO: v.bce_nelbo,
                        R.TEST_BINARIZED_NLL: v.binarized_nll, R.IW_K: v.iw_k, R.IW_IMAGES: v.iw_images})
        return out


# DomainScores field -> column, per split
VALIDATION_KEYS = {"fid": R.VAL_FID, "kid": R.VAL_KID, "inception_score": R.VAL_SAMPLE_IS,
                   "precision": R.VAL_PRECISION, "recall": R.VAL_RECALL, "density": R.VAL_DENSITY,
                   "coverage": R.VAL_COVERAGE, "class_coverage": R.VAL_CLASS_COVERAGE,
                   "class_entropy": R.VAL_CLASS_ENTROPY}
TEST_KEYS = {"fid": R.TEST_FID, "kid": R.TEST_KID, "inception_score": R.TEST_SAMPLE_IS,
             "precision": R.TEST_PRECISION, "recall": R.TEST_RECALL, "density": R.TEST_DENSITY,
             "coverage": R.TEST_COVERAGE, "class_coverage": R.TEST_CLASS_COVERAGE,
             "class_entropy": R.TEST_CLASS_ENTROPY}


def domain_record(scores: DomainScores, keys: dict[str, str]) -> dict[str, float]:
    return {column: getattr(scores, field) for field, column in keys.items()}
