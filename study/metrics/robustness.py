"""How the feature network copes with digits that are real but degraded: accuracy and domain FID.

Generated digits differ from real ones in ways a person reads through: VAEs blur, GANs add
speckle. A feature network that loses the digit under blur makes domain FID/KID/IS measure
sharpness, not content. `robustness_report` measures that on real MNIST:

- classification of the test digits, Gaussian-blurred (`blur`: torchvision's gaussian_blur with a
  kernel of 2*ceil(3*sigma)+1, as issue 10 measured) at each of BLUR_SIGMAS, and with additive Gaussian
  noise x + sigma * N(0, 1) clamped to [0, 1] (NOISE_SIGMA), with the fraction predicted "1"
  (the class a blind classifier falls back on: a blurred stroke looks like a fat bar);
- domain FID against the test split of the first `num_images` training digits: unchanged (the
  real-data floor), blurred at each sigma, noised, and pixel-shuffled (each image's 784 pixels
  permuted, a fixed seed): the same ink histogram with no digit in it.

A network that sees digits keeps FID(blur sigma 1) far below FID(pixel-shuffled); see
`RobustnessReport.blur_shuffle_ratio`. `inception_degradation` gives the same FIDs under the
paper-comparable Inception FID, so the README can say what blur costs in each metric. Pure
computation: nothing is printed or written here except the cached real statistics
(study.metrics.domain.real_stats_for); `format_report` makes the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import torch

from study.data import SPLIT_TEST, MNISTSplits
from study.metrics.classifier import FeatureNet
from study.metrics.domain import real_stats_for, score_images
from study.metrics.inception import INCEPTION_BATCH, inception_fid
from study.metrics.real_stats import unit_batches

BLUR_SIGMAS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0)
NOISE_SIGMA = 0.2
RATIO_BLUR_SIGMA = 1.0  # the blur of blur_shuffle_ratio: readable to a person, fatal to the old network
ONE = 1  # the class whose share we report
FID_KID_SUBSETS = 1  # score_images also computes KID; one subset keeps that cost negligible


Perturb = Callable[[torch.Tensor], torch.Tensor]


def blur(x_unit: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of [B, 1, 28, 28] images in [0, 1]; sigma 0 is the identity.

    torchvision's gaussian_blur (reflect padding) with a kernel covering +-3 sigma: 2*ceil(3*sigma)+1.
    """
    if sigma == 0:
        return x_unit
    from torchvision.transforms.functional import gaussian_blur  # torchvision is only needed here

    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(x_unit, kernel_size=[k, k], sigma=[sigma, sigma])


def add_noise(x_unit: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """x + sigma * N(0, 1) per pixel, clamped back to the valid range [0, 1]."""
    return (x_unit + sigma * torch.randn(x_unit.shape, generator=generator)).clamp(0, 1)


def shuffle_pixels(x_unit: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image's pixels in an independent random order: same ink, no digit."""
    flat = x_unit.flatten(1)  # [B, 784]
    order = torch.rand(flat.shape, generator=generator).argsort(dim=1)
    return flat.gather(1, order).view_as(x_unit)


class RobustnessReport(NamedTuple):
    """Every field is a plain number or tuple of numbers (float in [0, 1] for fractions)."""

    featurenet_sha256: str
    num_test: int  # test digits classified under each perturbation
    blur_sigmas: tuple[float, ...]  # BLUR_SIGMAS; 0 is the clean test set
    blur_accuracy: tuple[float, ...]  # top-1 accuracy on the blurred test digits, one per blur sigma
    blur_predicted_one: tuple[float, ...]  # fraction of them classified "1" (10-11% on clean MNIST)
    noise_sigma: float
    noise_accuracy: float  # top-1 accuracy on the test digits plus Gaussian noise (clamped)
    noise_predicted_one: float
    num_fid: int  # training images scored against the test split's statistics in every FID below
    fid_floor: float  # unchanged training digits vs test: the real-data floor
    fid_blur: tuple[float, ...]  # blurred training digits vs test, one per blur sigma (sigma 0: the floor)
    fid_noise: float  # training digits with Gaussian noise (noise_sigma) vs test
    fid_shuffled: float  # pixel-shuffled training digits vs test: images that hold no digit

    @property
    def clean_accuracy(self) -> float:
        return self.blur_accuracy[self.blur_sigmas.index(0.0)]

    def accuracy_at_blur(self, sigma: float) -> float:
        return self.blur_accuracy[self.blur_sigmas.index(sigma)]

    def fid_at_blur(self, sigma: float) -> float:
        return self.fid_blur[self.blur_sigmas.index(sigma)]

    @property
    def blur_shuffle_ratio(self) -> float:
        """FID(blur sigma 1) / FID(pixel-shuffled): small when blurred digits still look like digits."""
        return self.fid_at_blur(RATIO_BLUR_SIGMA) / self.fid_shuffled


@torch.no_grad()
def _classify(net: FeatureNet, batches: Iterator[torch.Tensor], labels: torch.Tensor,
              device: torch.device) -> tuple[float, float]:
    """(accuracy, fraction predicted ONE) over batches that cover `labels` in order."""
    predictions = torch.cat([net(x.to(device)).argmax(1).cpu() for x in batches])
    n = len(labels)  # integer counts, so the clean accuracy equals study.featurenet.accuracy exactly
    return int((predictions == labels).sum()) / n, int((predictions == ONE).sum()) / n


def robustness_report(net: FeatureNet, data: MNISTSplits, *, num_images: int = 10_000, seed: int = 0,
                      blur_sigmas: tuple[float, ...] = BLUR_SIGMAS, noise_sigma: float = NOISE_SIGMA,
                      device: torch.device | str = "cpu",
                      cache_dir: str | Path | None = None) -> RobustnessReport:
    """Accuracy of `net` on perturbed test digits (all of them) and domain FID of perturbed training
    digits (the first `num_images`) against the first `num_images` test digits.

    Deterministic: the noise and the pixel permutations come from generators seeded with `seed`.
    About 10-20 s on two CPU cores for the defaults (each FID is one 10k-image feature pass).
    """
    if 0.0 not in blur_sigmas or RATIO_BLUR_SIGMA not in blur_sigmas:
        raise ValueError(f"blur_sigmas {blur_sigmas} must include 0 (clean) and {RATIO_BLUR_SIGMA} "
                         "(the blur of the FID ratio)")
    if not net.sha256:
        raise ValueError("the feature network has no .sha256 (the real-statistics cache is keyed by it): "
                         "load it with study.featurenet.load_featurenet(path)")
    device = torch.device(device)
    net = net.to(device).eval()
    test, train_images = data.test, data.train.images[:num_images]

    def per_batch(images: torch.Tensor, perturb: Perturb) -> Iterator[torch.Tensor]:
        return (perturb(x) for x in unit_batches(images))

    def blurred(sigma: float) -> Perturb:
        return lambda x: blur(x, sigma)

    def noise(salt: int) -> Perturb:
        generator = torch.Generator().manual_seed(seed + salt)
        return lambda x: add_noise(x, noise_sigma, generator)

    blur_results = [_classify(net, per_batch(test.images, blurred(s)), test.labels, device)
                    for s in blur_sigmas]
    noise_acc, noise_one = _classify(net, per_batch(test.images, noise(0)), test.labels, device)

    real = real_stats_for(test.images[:num_images], SPLIT_TEST, net, device, cache_dir)

    def fid(batches: Iterator[torch.Tensor]) -> float:
        return score_images(batches, real, net, seed=seed, device=device, kid_subsets=FID_KID_SUBSETS).fid

    fid_blur = tuple(fid(per_batch(train_images, blurred(s))) for s in blur_sigmas)
    shuffle_generator = torch.Generator().manual_seed(seed)
    fid_shuffled = fid(per_batch(train_images, lambda x: shuffle_pixels(x, shuffle_generator)))
    return RobustnessReport(
        featurenet_sha256=net.sha256, num_test=len(test), blur_sigmas=tuple(blur_sigmas),
        blur_accuracy=tuple(a for a, _ in blur_results), blur_predicted_one=tuple(o for _, o in blur_results),
        noise_sigma=noise_sigma, noise_accuracy=noise_acc, noise_predicted_one=noise_one,
        num_fid=len(train_images), fid_floor=fid_blur[blur_sigmas.index(0.0)], fid_blur=fid_blur,
        fid_noise=fid(per_batch(train_images, noise(1))), fid_shuffled=fid_shuffled,
    )


INCEPTION_BLUR_SIGMAS = (1.0, 1.5, 2.0)  # Inception costs ~0.1 s per image on a CPU: a few points


def inception_degradation(data: MNISTSplits, *, num_images: int, seed: int = 0,
                          blur_sigmas: tuple[float, ...] = INCEPTION_BLUR_SIGMAS,
                          device: torch.device | str = "cpu", cache_dir: str | Path | None = None,
                          progress: bool = False) -> dict[str, float]:
    """Inception FID (study.inception's protocol) of the first `num_images` training digits,
    unchanged, blurred at each sigma and pixel-shuffled, against the first `num_images` test digits.
    Keys: "none", "blur <sigma>", "pixel-shuffled"."""
    train_images, real = data.train.images[:num_images], data.test.images[:num_images]

    def fid(perturb: Perturb) -> float:
        batches = (perturb(x) for x in unit_batches(train_images, INCEPTION_BATCH))
        return inception_fid(batches, len(train_images), real, SPLIT_TEST, device=device,
                             cache_dir=cache_dir, progress=progress)

    def blurred(sigma: float) -> Perturb:
        return lambda x: blur(x, sigma)

    shuffle_generator = torch.Generator().manual_seed(seed)
    return {"none": fid(lambda x: x),
            **{f"blur {s:g}": fid(blurred(s)) for s in blur_sigmas},
            "pixel-shuffled": fid(lambda x: shuffle_pixels(x, shuffle_generator))}


def format_report(report: RobustnessReport) -> str:
    """The report as a plain-text table (what `python -m study.featurenet evaluate` prints)."""
    lines = [f"robustness of feature network {report.featurenet_sha256[:12]}: accuracy on {report.num_test} "
             f"test digits; domain FID of {report.num_fid} training digits vs {report.num_fid} test digits",
             f"{'perturbation':<16}{'accuracy':>10}{'predicted 1':>13}{'domain FID':>12}"]
    for sigma, acc, one, fid in zip(report.blur_sigmas, report.blur_accuracy, report.blur_predicted_one,
                                    report.fid_blur, strict=True):
        name = "none" if sigma == 0 else f"blur {sigma:g}"
        lines.append(f"{name:<16}{acc:>10.2%}{one:>13.1%}{fid:>12.2f}")
    lines.append(f"{f'noise {report.noise_sigma:g}':<16}{report.noise_accuracy:>10.2%}"
                 f"{report.noise_predicted_one:>13.1%}{report.fid_noise:>12.2f}")
    lines.append(f"{'pixel-shuffled':<16}{'-':>10}{'-':>13}{report.fid_shuffled:>12.2f}")
    lines.append(f"FID(blur {RATIO_BLUR_SIGMA:g}) / FID(pixel-shuffled) = {report.blur_shuffle_ratio:.3f}; "
                 f"real-data floor (train vs test) {report.fid_floor:.2f}")
    return "\n".join(lines)
