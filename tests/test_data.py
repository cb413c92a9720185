import pytest
import torch

from study.data import (
    DATA_DIR_ENV,
    MNIST_RAW_FILES,
    VALIDATION_SIZE,
    BatchIterator,
    DataNotFoundError,
    load_splits,
    resolve_data_dir,
)


def test_split_sizes_dtypes_and_ranges(mnist):
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (50_000, VALIDATION_SIZE, 10_000)
    for split in (mnist.train, mnist.val, mnist.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (28, 28)
        assert set(split.labels.unique().tolist()) == set(range(10))


def test_train_and_validation_are_disjoint_and_cover_the_training_set(mnist):
    # Compare images by content: a shared index would show up as a shared byte pattern.
    def keys(split):
        return {bytes(img.numpy()) for img in split.images}

    train, val = keys(mnist.train), keys(mnist.val)
    assert len(train & val) <= 5  # MNIST has a handful of exact duplicate images; indices never overlap
    assert len(train) + len(val) >= 59_990


def test_split_is_fixed_across_loads_and_subset_is_a_prefix(data_dir, mnist):
    again = load_splits(data_dir, train_subset=1000)
    assert torch.equal(again.val.images, mnist.val.images)
    assert torch.equal(again.train.images, mnist.train.images[:1000])


def test_missing_data_gives_one_clear_paragraph_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "absent" / "mnist"
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataNotFoundError) as err:
        load_splits(target)
    message = str(err.value)
    assert "\n" not in message
    for needed in (*MNIST_RAW_FILES, "--data-dir", DATA_DIR_ENV, str(target)):
        assert needed in message
    assert not (tmp_path / "absent").exists()  # the failed download left no directories behind


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "flag") == (tmp_path / "flag", True)
    assert resolve_data_dir(None) == (tmp_path / "env", True)
    monkeypatch.delenv(DATA_DIR_ENV)
    assert resolve_data_dir(None)[1] is False


def test_batches_are_seeded_full_and_unit_range(mnist):
    images = mnist.train.images[:1000]
    first = [b for b in BatchIterator(images, 128, seed=3)]
    second = [b for b in BatchIterator(images, 128, seed=3)]
    other = next(iter(BatchIterator(images, 128, seed=4)))
    assert len(first) == 1000 // 128 and all(b.shape == (128, 1, 28, 28) for b in first)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], other)
    assert first[0].dtype == torch.float32 and 0.0 <= first[0].min() and first[0].max() <= 1.0
    # every epoch is a permutation: no image is drawn twice within an epoch
    seen = torch.cat(first).flatten(1)
    assert torch.unique(seen, dim=0).shape[0] == seen.shape[0]
