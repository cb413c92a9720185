"""The feature network: shipped weights (hash, size, accuracy), hash checking, the training command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from study.data import load_splits, to_unit
from study.featurenet import main
from study.metrics import classifier as fn
from study.metrics.robustness import blur
from study.results import file_sha256

DATA_DIR = os.environ.get("STUDY_DATA_DIR") or str(Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="module")
def data():
    return load_splits(DATA_DIR)


def test_shipped_weights_are_small_pinned_and_accurate(data):
    net = fn.load_featurenet()
    assert fn.WEIGHTS_PATH.stat().st_size <= 2 * 1024 * 1024
    assert net.sha256 == fn.SHIPPED_SHA256 == file_sha256(fn.WEIGHTS_PATH)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    acc = fn.accuracy(net, data.test)
    assert acc >= fn.MIN_SHIPPED_ACCURACY
    assert acc == pytest.approx(net.meta["test_accuracy"], abs=1e-12)  # the file's own record agrees


def test_features_and_logits_shapes():
    net = fn.load_featurenet()
    features, logits = net.features_and_logits(torch.rand(3, 1, 28, 28))
    assert features.shape == (3, fn.FEATURE_DIM) and logits.shape == (3, fn.NUM_CLASSES)
    assert torch.equal(net(torch.zeros(2, 1, 28, 28)), net.head(net.trunk(torch.zeros(2, 1, 28, 28))))


def test_hash_mismatch_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(fn, "SHIPPED_SHA256", "0" * 64)
    with pytest.raises(fn.FeatureNetError, match="SHA-256 .* expected 0000"):
        fn.load_featurenet()
    copy = tmp_path / "w.pt"
    copy.write_bytes(fn.WEIGHTS_PATH.read_bytes())
    with pytest.raises(fn.FeatureNetError, match="not comparable"):
        fn.load_featurenet(copy, expected_sha256="f" * 64)
    assert fn.load_featurenet(copy).sha256 == file_sha256(copy)  # an explicit file needs no pin


def test_unreadable_or_missing_weights_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(fn.FeatureNetError, match="could not read feature-network weights"):
        fn.load_featurenet(bad)
    with pytest.raises(fn.FeatureNetError, match="do not exist"):
        fn.load_featurenet(tmp_path / "missing.pt")


def test_random_shift_translates_each_image(data):
    x = to_unit(data.train.images[:64])
    shifted = fn.random_shift(x, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    # MNIST digits sit inside the central 20x20 box, so a shift of <= 2 pixels loses no ink
    torch.testing.assert_close(shifted.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    assert 0 < sum(not torch.equal(a, b) for a, b in zip(shifted, x, strict=True)) < 64  # 1 in 25 stays put
    assert torch.equal(fn.random_shift(x, 0, torch.Generator()), x)


def test_blur_each_matches_torchvision_per_image(data):
    x = to_unit(data.test.images[:4])
    sigmas = torch.tensor([0.0, 0.5, 1.0, 1.5])
    blurred = fn.blur_each(x, sigmas)
    assert torch.equal(blurred[0], x[0])
    for i in (1, 2, 3):  # torchvision's kernel is 2*ceil(3 sigma)+1 wide, ours 17: the tails differ slightly
        reference = blur(x[i:i + 1], float(sigmas[i]))
        torch.testing.assert_close(blurred[i:i + 1], reference, atol=1e-3, rtol=0)


def test_augment_digits_is_seeded_bounded_and_varied(data):
    x = to_unit(data.train.images[:256])
    a = fn.augment_digits(x, fn.Augment(), torch.Generator().manual_seed(1))
    b = fn.augment_digits(x, fn.Augment(), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    changed = [not torch.equal(u, v) for u, v in zip(a, x, strict=True)]
    assert 0.8 < sum(changed) / len(x) < 1.0  # nearly every digit is perturbed, a few stay clean
    assert (a.flatten(1).min(1).values > 0.05).any()  # some grey backgrounds
    assert torch.equal(fn.augment_digits(x, fn.NO_AUGMENT, torch.Generator().manual_seed(1)), x)


def test_train_smoke_test_is_reproducible_and_never_overwrites(tmp_path, capsys):
    out_a, out_b = tmp_path / "a.pt", tmp_path / "b.pt"
    threads = torch.get_num_threads()
    assert main(["train", "--smoke-test", "--data-dir", DATA_DIR, "--out", str(out_a)]) == 0
    torch.set_num_threads(2 if threads == 1 else 1)  # training pins its own thread count
    try:
        assert main(["train", "--smoke-test", "--data-dir", DATA_DIR, "--out", str(out_b)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert file_sha256(out_a) == file_sha256(out_b)  # same seed, same machine: same bytes
    net = fn.load_featurenet(out_a)
    assert net.meta["train_subset"] == 2048 and net.meta["epochs"] == 1
    assert net.meta["test_accuracy"] > 0.3  # one short epoch: far from 99%, far above chance (0.1)
    assert f"sha256 {net.sha256}" in capsys.readouterr().out

    before = out_a.read_bytes()
    assert main(["train", "--smoke-test", "--data-dir", DATA_DIR, "--out", str(out_a)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out_a.read_bytes() == before


@pytest.mark.slow  # ~20 s on two idle cores: 7 passes over the test set, 8 FIDs on 1,000 images
def test_evaluate_command_reports_hash_accuracy_and_robustness(capsys):
    assert main(["evaluate", "--data-dir", DATA_DIR, "--fid-images", "1000"]) == 0
    out = capsys.readouterr().out
    assert fn.SHIPPED_SHA256 in out and "test accuracy 0.99" in out
    assert "10,000 test images classified in" in out
    rows = {line[:16].strip(): line[16:].split() for line in out.splitlines()}
    names = ("none", "blur 0.5", "blur 0.75", "blur 1", "blur 1.5", "blur 2", "noise 0.2", "pixel-shuffled")
    assert set(rows) >= set(names)
    assert float(rows["blur 1.5"][0].rstrip("%")) >= 90.0  # accuracy, in percent
    assert float(rows["blur 1"][2]) < 0.25 * float(rows["pixel-shuffled"][2])  # domain FID on 1,000 images
    assert "domain FID of 1000 training digits" in out


def test_evaluate_refuses_a_bad_fid_image_count(capsys):
    assert main(["evaluate", "--data-dir", DATA_DIR, "--fid-images", "1"]) == 2
    assert "--fid-images 1" in capsys.readouterr().err
