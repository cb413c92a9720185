"""The shipped feature network reads degraded real digits (issue 10, item 0), and the report's parts."""

from __future__ import annotations

import pytest
import torch

from study.data import to_unit
from study.metrics import classifier as fn
from study.metrics import robustness as rb

# issue 10's targets on the real test set
MIN_CLEAN, MIN_BLUR_1, MIN_BLUR_1_5, MIN_NOISE_0_2 = 0.993, 0.97, 0.90, 0.97
MAX_BLUR_SHUFFLE_RATIO = 0.25


@pytest.fixture(scope="module")
def report(mnist, tmp_path_factory):
    """The full report of the shipped weights: all 10,000 test digits, FIDs on 10,000 vs 10,000."""
    return rb.robustness_report(fn.load_featurenet(), mnist, cache_dir=tmp_path_factory.mktemp("stats"))


@pytest.mark.slow
def test_shipped_weights_classify_blurred_and_noisy_digits(report, mnist):
    assert report.featurenet_sha256 == fn.SHIPPED_SHA256 and report.num_test == len(mnist.test) == 10_000
    assert report.blur_sigmas == rb.BLUR_SIGMAS and report.noise_sigma == rb.NOISE_SIGMA == 0.2
    assert report.clean_accuracy == pytest.approx(fn.accuracy(fn.load_featurenet(), mnist.test), abs=1e-12)
    assert report.clean_accuracy >= MIN_CLEAN
    assert report.accuracy_at_blur(1.0) >= MIN_BLUR_1
    assert report.accuracy_at_blur(1.5) >= MIN_BLUR_1_5
    assert report.noise_accuracy >= MIN_NOISE_0_2
    # no fallback class: the share called "1" stays near the test set's own 11.35% at every blur
    true_one = float((mnist.test.labels == rb.ONE).float().mean())
    for share in (*report.blur_predicted_one, report.noise_predicted_one):
        assert abs(share - true_one) < 0.02


@pytest.mark.slow
def test_domain_fid_ranks_blurred_digits_near_the_floor_and_shuffled_ones_far(report):
    assert report.num_fid == 10_000
    assert report.fid_blur[0] == report.fid_floor < 1.0  # 10k training vs 10k test digits
    assert list(report.fid_blur) == sorted(set(report.fid_blur)), report.fid_blur  # more blur, higher FID
    assert report.fid_at_blur(1.0) <= MAX_BLUR_SHUFFLE_RATIO * report.fid_shuffled
    assert report.blur_shuffle_ratio == report.fid_at_blur(1.0) / report.fid_shuffled
    assert report.fid_blur[-1] < report.fid_shuffled  # even sigma 2 is closer than no digit at all
    table = rb.format_report(report)
    assert "blur 1.5" in table and "pixel-shuffled" in table and f"{report.fid_shuffled:.2f}" in table


def test_perturbations(mnist):
    x = to_unit(mnist.test.images[:32])
    g = torch.Generator().manual_seed(0)
    shuffled = rb.shuffle_pixels(x, g)
    # the same ink, image by image, in another place
    assert torch.equal(shuffled.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    assert not any(torch.equal(a, b) for a, b in zip(shuffled, x, strict=True))
    assert torch.equal(rb.blur(x, 0.0), x)
    blurred = rb.blur(x, 1.0)  # 7x7 kernel: the ink spreads and its peaks drop
    assert blurred.max() < x.max() and (blurred > 0).sum() > (x > 0).sum()
    # the same blur as the training augmentation's independent implementation (a 17-wide kernel)
    torch.testing.assert_close(blurred, fn.blur_each(x, torch.ones(len(x))), atol=1e-3, rtol=0)
    grey = torch.full((64, 1, 28, 28), 0.5)
    noisy = rb.add_noise(grey, 0.2, g)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert noisy.std().item() == pytest.approx(0.2, rel=0.05)
    assert noisy.mean().item() == pytest.approx(0.5, abs=0.01)
    black = rb.add_noise(torch.zeros(16, 1, 28, 28), 0.2, g)
    assert black.eq(0).float().mean().item() == pytest.approx(0.5, abs=0.03)  # negative noise clamps to 0


def test_report_refuses_bad_sigmas_and_an_unnamed_network(mnist):
    with pytest.raises(ValueError, match="must include 0"):
        rb.robustness_report(fn.load_featurenet(), mnist, blur_sigmas=(0.5, 1.0))
    with pytest.raises(ValueError, match="must include 0"):
        rb.robustness_report(fn.load_featurenet(), mnist, blur_sigmas=(0.0, 1.5))
    with pytest.raises(ValueError, match="no .sha256"):  # its real statistics could not be cached safely
        rb.robustness_report(fn.FeatureNet().eval(), mnist)
