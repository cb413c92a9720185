"""GPU packing without a GPU: a Ray started with one logical GPU (`num_gpus=1` on this CPU
machine) runs `--gpus-per-trial 0.25` trials four at a time on it, and the trainable, finding no
CUDA behind Ray's GPU id, trains on the CPU and records it. Plus the GPU speed options
(bf16 autocast, channels-last, evaluation batch size), run on the CPU.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest
import torch

from models.config import AMP_BF16, ConfigError, TrainConfig, VAEConfig
from study import launch
from study import results as R
from study.engine import cluster, study_run
from study.launch import plan_from_args


@pytest.fixture
def logical_gpu_ray(monkeypatch):
    import ray

    from study.engine import ALLOW_CPU_ON_GPU_ENV

    monkeypatch.setenv(ALLOW_CPU_ON_GPU_ENV, "1")  # these GPUs are logical: CPU trials are expected

    import models
    import search_spaces
    import study

    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False,
             runtime_env={"py_modules": [models, search_spaces, study]})
    try:
        yield
    finally:
        ray.shutdown()


def wait_for_all(marker_dir: str, expected: int, timeout_s: float = 120.0) -> dict:
    """A trial that announces itself and waits until `expected` trials run at the same time."""
    import os

    import ray
    import torch
    from ray import tune

    from study.engine.trainable import trial_device

    Path(marker_dir, tune.get_context().get_trial_id()).touch()
    deadline = time.monotonic() + timeout_s
    while len(os.listdir(marker_dir)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"together": len(os.listdir(marker_dir)), "gpu_ids": ray.get_gpu_ids(),
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "cuda": torch.cuda.is_available(),
            "device": str(trial_device())}


@pytest.mark.slow
def test_a_quarter_gpu_per_trial_runs_four_trials_at_once_on_one_gpu(tmp_path, logical_gpu_ray):
    from ray import cloudpickle, tune

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    markers = tmp_path / "running"
    markers.mkdir()
    slots = cluster.trial_slots(cpus_per_trial=1, gpus_per_trial=0.25)
    assert slots == 4 and cluster.trial_slots(1, 0.5) == 2 and cluster.trial_slots(1, 1) == 1
    tuner = tune.Tuner(
        tune.with_resources(lambda config: wait_for_all(str(markers), 4), {"cpu": 1, "gpu": 0.25}),
        param_space={"i": tune.grid_search(list(range(4)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=slots, reuse_actors=True),
        run_config=tune.RunConfig(name="pack", storage_path=str(tmp_path)),
    )
    results = tuner.fit()
    assert results.num_errors == 0
    for result in results:
        assert result.metrics["together"] == 4  # all four ran at once on the one GPU
        assert result.metrics["gpu_ids"] == [0] and result.metrics["cuda_visible"] == "0"
        assert result.metrics["cuda"] is False and result.metrics["device"] == "cpu"  # clean CPU fallback


@pytest.mark.slow
def test_a_launched_study_packs_quarter_gpu_trials_and_records_the_cpu(tmp_path, data_dir, logical_gpu_ray):
    from study.data import load_splits
    from study.metrics.evaluator import prepare_evaluation

    args = launch.build_parser().parse_args([
        "--family", "vae", "--smoke-test", "--data-dir", str(data_dir), "--storage-path", str(tmp_path),
        "--name", "packed", "--trials", "4", "--gpus-per-trial", "0.25", "--scheduler", "none",
        "--max-epochs", "2", "--amp", "bf16", "--channels-last", "--eval-batch-size", "250"])
    plan = plan_from_args(args)
    data = load_splits(plan.data_dir, train_subset=plan.train_subset)
    exported = study_run.run_study(plan, data, prepare_evaluation(data, iw_images=plan.iw_images))
    assert exported is not None
    table = exported.trials
    assert len(table) == 4 and set(table[R.STOP_REASON]) == {R.STOP_COMPLETED}
    assert set(table[R.DEVICE]) == {"cpu"}  # Ray's logical GPU has no CUDA behind it
    # what the training seconds were measured on: no GPU model, a quarter GPU, four trials per GPU
    assert set(table[R.GPU_NAME]) == {"cpu"} and set(table[R.GPUS_PER_TRIAL]) == {0.25}
    assert set(table[R.TRIALS_PER_GPU]) == {4}
    assert table[R.TEST_FID].map(math.isfinite).all()
    configs = [TrainConfig.from_json(c) for c in table[R.CONFIG_JSON]]
    assert {(c.amp, c.channels_last, c.eval_batch_size) for c in configs} == {(AMP_BF16, True, 250)}
    # Tune ran them side by side: each trial's [start, end] from Ray's result.json
    spans = []
    for trial_dir in table[R.TRIAL_DIR]:
        last = json.loads((tmp_path / "packed" / trial_dir / "result.json").read_text().splitlines()[-1])
        spans.append((last["timestamp"] - last["time_total_s"], last["timestamp"]))
    starts, ends = zip(*spans, strict=True)
    assert max(starts) < min(ends) + 1.0  # result timestamps are whole seconds


def test_bf16_autocast_and_channels_last_train_on_the_cpu(data_dir):
    from study.data import load_splits
    from study.loop.trial import _restore, run_trial

    data = load_splits(data_dir, train_subset=512)
    base = TrainConfig(model=VAEConfig(arch="conv", latent_dim=4), epochs=1, batch_size=128,
                       train_subset=512, eval_samples=0)
    fp32 = run_trial(base, data, lambda *_: None, device=torch.device("cpu"))
    bf16 = run_trial(base.replace(amp=AMP_BF16, channels_last=True), data, lambda *_: None,
                     device=torch.device("cpu"))
    loss = R.LOSS_NELBO
    assert math.isfinite(bf16.history[-1][loss])
    assert bf16.history[-1][loss] == pytest.approx(fp32.history[-1][loss], rel=0.05)  # same training
    assert bf16.history[-1][loss] != fp32.history[-1][loss]  # but not the fp32 arithmetic
    trial = _restore(base.replace(channels_last=True), data, torch.device("cpu"), None)
    convs = [p for p in trial.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not all(p.is_contiguous() for p in convs)
    with pytest.raises(ConfigError, match="amp='fp8'"):
        base.replace(amp="fp8")
    with pytest.raises(ConfigError, match="eval_batch_size=0"):
        base.replace(eval_batch_size=0)


def test_the_evaluation_batch_size_reaches_the_evaluator(data_dir):
    from study.data import load_splits
    from study.metrics.evaluator import prepare_evaluation

    data = load_splits(data_dir, train_subset=256)
    assets = prepare_evaluation(data, iw_images=10)
    config = TrainConfig(model=VAEConfig(arch="mlp", latent_dim=4), eval_samples=100, eval_batch_size=37)
    assert assets.evaluator(config, data, "cpu").batch_size == 37


def test_bench_gpu_says_nothing_was_measured_without_cuda(capsys, monkeypatch):
    import importlib.util

    from tests.conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("bench_gpu", REPO_ROOT / "benchmarks" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU machine
    assert bench.main([]) == 0
    assert capsys.readouterr().out.startswith("no GPU: nothing measured")
