"""A configuration and seed train bit for bit on one CPU machine, whatever the process's torch thread
count: `python -m study.train` runs on every core, a Tune trial on its --cpus-per-trial, and the
real-image statistics (shipped to every trial, cached on disk) come from whichever process computed
them first. Before study/repeat.py pinned the count, 1 and 2 threads gave other weights and a
validation FID 1e-9 apart after one tiny epoch (the oneDNN convolutions and the reductions split
their sums by thread), and a GAN amplifies that over epochs (issue 28, item 2)."""

from __future__ import annotations

import pytest
import torch

from models import GANConfig, TrainConfig
from study import results as R
from study.data import MNISTSplits, Split
from study.loop.trial import run_trial
from study.metrics.evaluator import prepare_evaluation
from study.repeat import REPEAT_THREADS, pinned_threads, repeat_columns

TINY_DCGAN = GANConfig(latent_dim=8, g_widths=(16, 8), d_widths=(8, 16))  # conv layers: oneDNN's kernels
EVAL_SAMPLES = 200
REAL_IMAGES = 1000  # per evaluation split, so the real statistics take a second


@pytest.fixture(scope="module")
def small(mnist) -> MNISTSplits:
    def head(split: Split) -> Split:
        return Split(split.images[:REAL_IMAGES], split.labels[:REAL_IMAGES])

    return MNISTSplits(train=mnist.train, val=head(mnist.val), test=head(mnist.test), data_dir=mnist.data_dir)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def train_in_a_process_with(threads: int, data: MNISTSplits, cache_dir) -> tuple[list[dict], dict, bytes]:
    """One run as a process with `threads` torch threads makes it: the evaluation assets computed
    there (as a launcher's driver does, into a fresh cache), then the trial."""
    torch.set_num_threads(threads)
    config = TrainConfig(model=TINY_DCGAN, epochs=2, batch_size=32, train_subset=256, seed=3,
                         eval_samples=EVAL_SAMPLES, eval_batch_size=100)
    assets = prepare_evaluation(data, cache_dir=cache_dir, prdc_images=EVAL_SAMPLES)
    result = run_trial(config, data, evaluator=assets.evaluator(config, data, "cpu"), device="cpu")
    history = [{k: v for k, v in h.items() if not k.endswith("seconds") and k != R.IMAGES_PER_S}
               for h in result.history]
    test = {k: v for k, v in result.summary.items() if k.startswith("test_") and k != R.TEST_EVAL_SECONDS}
    assert result.model is not None
    weights = b"".join(t.numpy().tobytes() for t in result.model.state_dict().values())
    assert result.summary[R.TORCH_THREADS] == REPEAT_THREADS and len(result.summary[R.CPU_ID]) == 16
    return history, test, weights


def test_a_trial_repeats_bit_for_bit_whatever_the_processs_thread_count(small, tmp_path, restore_threads):
    one = train_in_a_process_with(1, small, tmp_path / "one")
    two = train_in_a_process_with(2, small, tmp_path / "two")
    assert [h[R.VAL_FID] for h in one[0]] == [h[R.VAL_FID] for h in two[0]]
    assert one[0] == two[0]  # every epoch's losses, D outputs and validation metrics, bit for bit
    assert one[1] == two[1]  # the test metrics
    assert one[2] == two[2]  # the weights
    assert torch.get_num_threads() == 2  # the process's own count comes back after the trial


def test_the_pin_restores_the_count_and_the_rows_record_it(restore_threads):
    torch.set_num_threads(2)
    with pinned_threads("cpu"):
        assert torch.get_num_threads() == REPEAT_THREADS
        assert repeat_columns()[R.TORCH_THREADS] == REPEAT_THREADS
    assert torch.get_num_threads() == 2
    with pinned_threads("meta"):  # not a CPU computation: the count is left alone
        assert torch.get_num_threads() == 2
    columns = repeat_columns()
    assert columns[R.TORCH_THREADS] == 2
    assert len(columns[R.CPU_ID]) == 16 and columns[R.CPU_ID] == repeat_columns()[R.CPU_ID]
