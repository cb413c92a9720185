"""The one `TrialEvaluator` (validation metrics each epoch, test metrics at the end) and the
`EvaluationAssets` it is built from: the feature network, the real statistics and the real side of
PRDC, computed once (e.g. on a Ray driver) and shipped to every trial. The Inception FID lives in
study/metrics/inception.py, the reference floors in study/metrics/floors.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.config import FAMILY_VAE, TrainConfig
from study import results as R
from study.data import SPLIT_TEST, SPLIT_VAL, MNISTSplits
from study.metrics.classifier import FeatureNet, load_featurenet
from study.metrics.domain import (
    KID_SUBSETS,
    LEAN_VALIDATION_KEYS,
    TEST_KEYS,
    VALIDATION_KEYS,
    DomainScores,
    domain_record,
    real_stats_for,
    score_images,
)
from study.metrics.likelihood import IW_IMAGES, IW_K, vae_scores
from study.metrics.prdc import PRDC_K, PRDCKey, PRDCReal, prdc_key, prdc_real
from study.metrics.real_stats import BATCH_SIZE, RealStats
from study.metrics.sampling import GENERATION_SEED_OFFSET, eval_mode, generate


@dataclass(frozen=True)
class EvaluationAssets:
    """What a trial needs to score models, computed once (e.g. on a Ray driver) and shipped.

    `evaluator(config, data, device)` is the one seam through which the loop, the Ray trainable
    and the export get a TrialEvaluator.
    """

    featurenet: FeatureNet  # on CPU
    real_stats: dict[str, RealStats]  # per split; a split missing here is computed on first use
    iw_images: int | None = IW_IMAGES  # test images behind a VAE's IW-NLL (None: all; k passes each)
    # the real side of PRDC (features, k-NN radii) per prdc_key, computed once here and shipped
    prdc: dict[PRDCKey, PRDCReal] = field(default_factory=dict)

    @property
    def featurenet_sha256(self) -> str:
        return self.featurenet.sha256

    def evaluator(self, config: TrainConfig, data: MNISTSplits,
                  device: torch.device | str) -> TrialEvaluator | None:
        """The trial's evaluator on its device, or None when evaluation is off (eval_samples 0)."""
        if config.eval_samples == 0:
            return None
        return TrialEvaluator(data, num_samples=config.eval_samples, device=device, seed=config.seed,
                              featurenet=self.featurenet, real_stats=self.real_stats,
                              iw_images=self.iw_images, batch_size=config.eval_batch_size, prdc=self.prdc)


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
    prdc = {prdc_key(split_stats, prdc_images): prdc_real(split_stats, prdc_images, device=device)
            for split_stats in stats.values()} if prdc_images else {}
    return EvaluationAssets(net.cpu(), stats, iw_images, prdc)


class TrialEvaluator:
    """The metrics the training loop reports: `validation(model)` each epoch, `test(model)` at the end.

    validation -> R.VALIDATION_METRICS (suite=False: R.LEAN_VALIDATION_METRICS, the same numbers,
    what a scheduler reads each epoch); test -> the domain half of R.TEST_METRICS plus, for a VAE,
    {test_recon_mse, test_bce_nelbo, test_binarized_nll, iw_k, iw_images} (nll=False: without the
    importance-weighted NLL, seconds per model, which `likelihood(model)` adds later). Generated images:
    `num_samples` from a seeded
    generator (same seed -> same numbers), scored against the whole split. Pass `featurenet` and
    `real_stats` from `prepare_evaluation` to skip loading and the real-image pass.
    """

    def __init__(self, data: MNISTSplits, num_samples: int = 10_000, device: torch.device | str = "cpu",
                 seed: int = 0, *, featurenet: FeatureNet | None = None,
                 real_stats: dict[str, RealStats] | None = None, batch_size: int = BATCH_SIZE,
                 kid_subsets: int = KID_SUBSETS, iw_k: int = IW_K, iw_images: int | None = IW_IMAGES,
                 cache_dir: str | Path | None = None, prdc: dict[PRDCKey, PRDCReal] | None = None):
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
        self.prdc = dict(prdc or {})  # the real side of PRDC per prdc_key; a missing one is computed once
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

    def _prdc(self, real: RealStats) -> PRDCReal:
        key = prdc_key(real, self.num_samples)
        if key not in self.prdc:
            self.prdc[key] = prdc_real(real, self.num_samples, device=self.device)
        return self.prdc[key]

    def scores(self, model, split: str, suite: bool = True) -> DomainScores:
        seed = self.seed + GENERATION_SEED_OFFSET.get(split, 0)
        real = self._real(split)
        prdc = self._prdc(real) if suite and self.num_samples > PRDC_K else None
        with eval_mode(model):
            return score_images(generate(model, self.num_samples, seed, self.batch_size), real,
                                self.featurenet, seed=seed, device=self.device, kid_subsets=self.kid_subsets,
                                prdc_reference=prdc, suite=suite)

    def validation(self, model, suite: bool = True) -> dict[str, float]:
        """The validation suite (R.VALIDATION_METRICS), or with suite=False only its nearly free part
        (R.LEAN_VALIDATION_METRICS: the FID, IS and class coverage, the same values)."""
        return domain_record(self.scores(model, SPLIT_VAL, suite),
                             VALIDATION_KEYS if suite else LEAN_VALIDATION_KEYS)

    def test(self, model, nll: bool = True) -> dict[str, float]:
        out = domain_record(self.scores(model, SPLIT_TEST), TEST_KEYS)
        if model.family == FAMILY_VAE:
            out.update(self._vae(model, nll))
        return out

    def likelihood(self, model) -> dict[str, float]:
        """A VAE's likelihood columns, the importance-weighted NLL included (the same numbers as
        `test(model)` gives them): what the post-search step adds to the trials the report picks."""
        return self._vae(model, nll=True)

    def _vae(self, model, nll: bool) -> dict[str, float]:
        v = vae_scores(model, self.data.test.images, seed=self.seed, iw_k=self.iw_k, iw_images=self.iw_images,
                       nll=nll)
        out: dict[str, float] = {R.TEST_RECON_MSE: v.recon_mse, R.TEST_BCE_NELBO: v.bce_nelbo}
        if nll:
            out.update({R.TEST_BINARIZED_NLL: v.binarized_nll, R.IW_K: v.iw_k, R.IW_IMAGES: v.iw_images})
        return out
