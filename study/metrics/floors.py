"""The metrics' reference floors: what real training images, uniform noise and blurred training
images score against the test split (FID/KID, PRDC and class coverage of train vs test, IS of the
test set). A generated model's numbers read against these."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import torch

from study.data import SPLIT_TEST, MNISTSplits
from study.metrics.classifier import FeatureNet, load_featurenet
from study.metrics.domain import KID_SUBSETS, DomainScores, real_stats_for, score_images
from study.metrics.real_stats import BATCH_SIZE, unit_batches
from study.metrics.robustness import blur

BLUR_SIGMAS = (0.5, 1.0, 2.0)


class ReferenceFloors(NamedTuple):
    featurenet_sha256: str
    num_images: int
    fid_train_test: float  # the real-data floor: 10k training vs the 10k test images
    kid_train_test: float
    # fidelity/diversity floors of the same 10k training vs test images (the best a generator can do)
    precision_train_test: float
    recall_train_test: float
    density_train_test: float
    coverage_train_test: float
    class_coverage_train_test: float
    class_entropy_train_test: float
    is_test: float  # IS of the test set, the ceiling a perfect generator reaches
    fid_noise_test: float  # uniform noise vs test
    kid_noise_test: float
    fid_blur_test: tuple[float, ...]  # Gaussian-blurred training images vs test, one per BLUR_SIGMAS


def reference_floors(data: MNISTSplits, net: FeatureNet | None = None, *, num_images: int = 10_000,
                     seed: int = 0,
                     device: torch.device | str = "cpu", kid_subsets: int = KID_SUBSETS,
                     blur_sigmas: tuple[float, ...] = BLUR_SIGMAS,
                     cache_dir: str | Path | None = None) -> ReferenceFloors:
    """FID/KID of real training images, noise and blurred training images against the test split, and
    IS(test).

    Uses the first `num_images` of the training split and of the test split.
    """
    net = net if net is not None else load_featurenet()
    test = data.test.images[:num_images]
    real = real_stats_for(test, SPLIT_TEST, net, device, cache_dir)

    def score(batches: Iterable[torch.Tensor], prdc: bool = False) -> DomainScores:
        # PRDC for the train-vs-test floor only: its k-NN search costs ~1 min per 10k images on a CPU
        return score_images(batches, real, net, seed=seed, device=device, kid_subsets=kid_subsets,
                            prdc=prdc)

    train = score(unit_batches(data.train.images[:num_images]), prdc=True)
    test_self = score(unit_batches(test))
    noise = torch.rand(len(test), 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    noisy = score(noise.split(BATCH_SIZE))
    # blurred *training* digits, so the curve starts at the train-vs-test floor (blurring the test
    # digits themselves would compare them with their own sharp copies, cheaper than any new sample)
    train_images = data.train.images[:num_images]
    blurred = [score(blur(x, s) for x in unit_batches(train_images)).fid for s in blur_sigmas]
    return ReferenceFloors(
        featurenet_sha256=net.sha256, num_images=len(test), fid_train_test=train.fid,
        kid_train_test=train.kid, precision_train_test=train.precision, recall_train_test=train.recall,
        density_train_test=train.density, coverage_train_test=train.coverage,
        class_coverage_train_test=train.class_coverage, class_entropy_train_test=train.class_entropy,
        is_test=test_self.inception_score, fid_noise_test=noisy.fid, kid_noise_test=noisy.kid,
        fid_blur_test=tuple(blurred))
