import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from models import GANConfig, TrainConfig, VAEConfig, build_model
from models.checkpoint import load_checkpoint, load_model
from study import results as R
from study.data import MNISTSplits, to_unit
from study.loop.run_dir import RunDirectory
from study.loop.trial import run_trial
from tests.conftest import REPO_ROOT

TINY_GAN = GANConfig(latent_dim=8, g_widths=(16, 8), d_widths=(8, 16))
TINY_VAE = VAEConfig(arch="mlp", latent_dim=4, enc_widths=(64,), dec_widths=(64,), lr=1e-3)


@pytest.fixture(scope="module")
def small(mnist) -> MNISTSplits:
    return MNISTSplits(train=mnist.train, val=mnist.val, test=mnist.test, data_dir=mnist.data_dir)


def losses_of(history):
    return [{k: v for k, v in h.items() if k.startswith(("loss", "d_"))} for h in history]


def test_one_small_epoch_lowers_the_vae_loss_on_held_out_images(small):
    config = TrainConfig(model=TINY_VAE, epochs=1, batch_size=64, train_subset=2000, seed=0)
    held_out = to_unit(small.val.images[:500])

    def held_out_nelbo(model):
        with torch.no_grad():
            terms = model.loss_terms(held_out, generator=torch.Generator().manual_seed(0))
            return (terms[R.LOSS_RECON] + terms[R.LOSS_KL]).mean().item()

    torch.manual_seed(config.seed)
    untrained = held_out_nelbo(build_model(config.model))
    trained = held_out_nelbo(run_trial(config, small).model)
    assert trained < untrained - 100  # ~545 nats -> well under 300 after 31 steps


def test_same_seed_same_losses_other_seed_other_losses(small):
    config = TrainConfig(model=TINY_GAN, epochs=2, batch_size=32, train_subset=256, seed=5)
    first = run_trial(config, small).history
    again = run_trial(config, small).history
    other = run_trial(config.replace(seed=6), small).history
    assert losses_of(first) == losses_of(again)
    assert losses_of(first) != losses_of(other)


def test_resume_from_a_checkpoint_continues_bit_for_bit(small):
    config = TrainConfig(model=TINY_VAE, epochs=3, batch_size=64, train_subset=512, seed=1,
                         checkpoint_every=1)
    checkpoints = {}
    full = run_trial(config, small,
                     report=lambda rec, art: checkpoints.setdefault(rec[R.EPOCH], art.checkpoint))
    resumed = run_trial(config, small, resume=checkpoints[1])
    assert [h[R.EPOCH] for h in resumed.history] == [1, 2, 3]
    assert losses_of(resumed.history) == losses_of(full.history)


def test_records_carry_timings_and_summary_carries_config_sizes_environment(small):
    config = TrainConfig(model=TINY_GAN, epochs=2, batch_size=32, train_subset=256)
    result = run_trial(config, small)
    for record in result.history:
        assert record[R.EPOCH_SECONDS] > 0 and record[R.IMAGES_PER_S] > 0
        assert {R.LOSS_D, R.LOSS_G, R.D_REAL, R.D_FAKE} <= record.keys()
    row = result.summary
    assert row[R.STOP_REASON] == R.STOP_COMPLETED and row[R.EPOCHS_RUN] == 2
    assert row[R.PARAMS_TOTAL] == row["params_generator"] + row["params_discriminator"]
    assert row[R.hp_column("g_widths")] == "16-8" and row[R.hp_column("lr_d")] == 2e-4
    assert TrainConfig.from_json(row[R.CONFIG_JSON]) == config
    assert row[R.TRAIN_SECONDS] == pytest.approx(sum(h[R.EPOCH_SECONDS] for h in result.history))
    assert {R.NODE, R.DEVICE, R.TORCH_VERSION} <= row.keys()


def test_nan_losses_end_the_run_as_diverged_without_raising(small):
    config = TrainConfig(model=TINY_VAE.__class__(**{**TINY_VAE.__dict__, "lr": 50.0}), epochs=5,
                         batch_size=64, train_subset=512, checkpoint_every=10)
    reports = []
    result = run_trial(config, small, report=lambda rec, art: reports.append((rec, art.checkpoint)))
    assert result.summary[R.STOP_REASON] == R.STOP_DIVERGED
    assert result.summary[R.EPOCHS_RUN] == 1 < config.epochs
    record, checkpoint = reports[-1]
    assert record[R.STOP_REASON] == R.STOP_DIVERGED and checkpoint is not None


def test_checkpoint_round_trip_with_weights_only(small, tmp_path):
    config = TrainConfig(model=TINY_VAE, epochs=1, batch_size=64, train_subset=256)
    run_dir = RunDirectory(tmp_path)
    result = run_trial(config, small, report=run_dir)
    path = tmp_path / R.CHECKPOINTS_DIR / R.checkpoint_name(1)
    loaded_config, model, raw = load_model(path)
    assert loaded_config == config and raw["epoch"] == 1
    z = torch.randn(4, 4)
    assert torch.equal(model.decode_to_unit(z), result.model.eval().decode_to_unit(z))
    torch.save({"evil": object()}, tmp_path / "bad.pt")
    with pytest.raises(Exception, match="[Ww]eights[- ]only"):
        load_checkpoint(tmp_path / "bad.pt")


def run_cli(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, "-m", "study.train", *args], cwd=cwd, capture_output=True,
                          text=True,
                          timeout=300)


@pytest.mark.parametrize("family", ["gan", "vae"])
def test_runner_smoke_mode_writes_metrics_grids_checkpoints_and_resumes(family, data_dir, tmp_path):
    out = tmp_path / "run"
    done = run_cli("--family", family, "--smoke-test", "--eval-samples", "0", "--data-dir", str(data_dir),
                   "--out", str(out), "--checkpoint-every", "1")
    assert done.returncode == 0, done.stderr
    assert "summary" in done.stdout and "params_total" in done.stdout
    history = pd.read_csv(out / R.METRICS_CSV)
    assert history[R.EPOCH].tolist() == [1, 2]
    assert json.loads((out / R.METRICS_JSON).read_text())[1][R.EPOCH] == 2
    assert sorted(p.name for p in (out / R.SAMPLES_DIR).iterdir()) == ["epoch_001.png", "epoch_002.png"]
    checkpoints = {p.name for p in (out / R.CHECKPOINTS_DIR).iterdir()}
    assert {"epoch_001.pt", "epoch_002.pt", R.FINAL_CHECKPOINT} <= checkpoints
    summary = json.loads((out / R.SUMMARY_JSON).read_text())
    assert summary[R.FAMILY] == family and summary[R.EPOCHS_RUN] == 2

    # rerunning into the same directory is refused and leaves it untouched
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    refused = run_cli("--family", family, "--smoke-test", "--data-dir", str(data_dir), "--out", str(out))
    assert refused.returncode == 2 and "--resume" in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before

    # resuming a finished run from its last checkpoint re-runs nothing and keeps the history
    resumed = run_cli("--family", family, "--smoke-test", "--eval-samples", "0", "--data-dir", str(data_dir),
                      "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert pd.read_csv(out / R.METRICS_CSV)[R.EPOCH].tolist() == [1, 2]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--family", "gan", "--arch", "conv"], "arch='conv'"),
        (["--family", "vae", "--set", "latent_size=3"], "latent_size"),
        (["--family", "vae", "--data-dir", "/nonexistent/mnist"], "--data-dir"),
    ],
)
def test_runner_bad_input_exits_2_with_a_message_and_writes_nothing(args, needle, tmp_path):
    out = tmp_path / "never"
    done = run_cli(*args, "--out", str(out), "--epochs", "1")
    assert done.returncode == 2
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_resume_refuses_another_configuration_but_may_extend_epochs(small):
    from models.config import ConfigError
    from study.loop.trial import check_resumable

    config = TrainConfig(model=TINY_VAE, epochs=2, batch_size=64, train_subset=256)
    saved = []
    run_trial(config, small, report=lambda rec, art: saved.append(art.checkpoint) if art.checkpoint else None)
    checkpoint = saved[-1]
    check_resumable(config.replace(epochs=5, checkpoint_every=1), checkpoint)  # extending is allowed
    with pytest.raises(ConfigError, match="latent_dim: checkpoint 4 vs now 8"):
        check_resumable(config.replace(latent_dim=8), checkpoint)
    with pytest.raises(ConfigError, match="beyond --epochs 1"):
        check_resumable(config.replace(epochs=1), checkpoint)


def _gan_step_by_hand(model, optimizers, x_unit, *, fresh_context_per_update: bool):
    """The GAN step written out under bf16 autocast: a fresh context per update (alternating), or
    one context around both updates (the generator's loss then goes through the discriminator's
    bf16 weights cached before its update)."""
    from contextlib import nullcontext

    import torch.nn.functional as F

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    outer = nullcontext() if fresh_context_per_update else bf16()
    inner = bf16 if fresh_context_per_update else nullcontext
    g, d = model.generator, model.discriminator
    real = x_unit * 2 - 1
    ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
    with outer:
        with inner():
            fake = g(model.sample_latent(len(real)))
            loss_d = (F.binary_cross_entropy_with_logits(d(real), ones)
                      + F.binary_cross_entropy_with_logits(d(fake.detach()), zeros))
        optimizers["discriminator"].zero_grad()
        loss_d.backward()
        optimizers["discriminator"].step()
        with inner():
            loss_g = F.binary_cross_entropy_with_logits(d(fake), ones)
        optimizers["generator"].zero_grad()
        loss_g.backward()
        optimizers["generator"].step()
    return loss_g.item()


def test_bf16_gan_step_alternates_the_generator_loss_goes_through_the_updated_discriminator(small):
    from study.data import BatchIterator

    # a large discriminator rate, so that its one step moves its bf16 weights visibly
    gan = GANConfig(arch="mlp", latent_dim=8, g_widths=(32,), d_widths=(32,), lr_d=0.05)
    config = TrainConfig(model=gan, epochs=1, batch_size=64, train_subset=64, seed=3, amp="bf16")
    # on the CPU, where the step by hand runs (on a CUDA machine run_trial would pick the GPU, whose
    # latents come from another generator: a different step, not a different reading)
    trained = run_trial(config, small, device="cpu")  # exactly one step
    expected = {}
    for alternating in (True, False):
        torch.manual_seed(config.seed)
        model = build_model(gan)
        optimizers = model.make_optimizers()
        (x,) = BatchIterator(small.train.images[:64], 64, seed=config.seed)
        loss_g = _gan_step_by_hand(model, optimizers, x, fresh_context_per_update=alternating)
        expected[alternating] = (loss_g, torch.cat([p.flatten() for p in model.generator.parameters()]))
    assert abs(expected[True][0] - expected[False][0]) > 1e-3  # the two readings differ here
    assert trained.history[0][R.LOSS_G] == pytest.approx(expected[True][0], abs=1e-6)
    g_params = torch.cat([p.flatten() for p in trained.model.generator.parameters()])
    assert torch.equal(g_params, expected[True][1])


class _RunsOutOfMemoryInValidation:
    """An Evaluator whose validation at `epoch` allocates, then meets the CPU allocator's refusal
    (the RuntimeError torch raises for an allocation the host cannot hold)."""

    featurenet_sha256 = "none"

    def __init__(self, epoch: int):
        self.epoch, self.calls, self.held = epoch, 0, None

    def validation(self, model, suite=True):
        import weakref

        self.calls += 1
        if self.calls == self.epoch:
            scratch = torch.ones(1000, 1000)  # referenced only by this frame (and so by the traceback)
            self.held = weakref.ref(scratch)
            raise RuntimeError("DefaultCPUAllocator: not enough memory: "
                               "you tried to allocate 40000000000 bytes.")
        return {R.VAL_FID: 1.0}

    def test(self, model, nll=True):
        return {}


def test_out_of_memory_in_evaluation_is_oom_and_memory_is_freed_after_the_handler(small, monkeypatch):
    import sys

    import study.loop.trial as loop

    seen = []
    real_release = loop.release_memory

    def observed_release(device):  # the real function, plus what is alive when it runs
        seen.append((sys.exc_info()[0], evaluator.held is not None and evaluator.held() is not None))
        real_release(device)

    monkeypatch.setattr(loop, "release_memory", observed_release, raising=False)
    evaluator = _RunsOutOfMemoryInValidation(epoch=2)
    config = TrainConfig(model=TINY_VAE, epochs=3, batch_size=64, train_subset=128, checkpoint_every=1)
    reported = []
    result = run_trial(config, small, report=lambda rec, art: reported.append(rec[R.EPOCH]),
                       evaluator=evaluator)
    assert result.summary[R.STOP_REASON] == R.STOP_OOM  # not an error that ends the study's trial
    assert reported == [1] and [h[R.EPOCH] for h in result.history] == [1]  # epoch 1 stands
    assert result.summary[R.EPOCHS_RUN] == 1
    assert seen == [(None, False)]  # freed outside the except block: no live traceback, tensor gone


def test_checkpoint_snapshots_are_cpu_copies_independent_of_further_training(small):
    from models.checkpoint import MODEL_KEY
    from study.loop.trial import CUDA_RNG_KEY

    config = TrainConfig(model=TINY_GAN, epochs=3, batch_size=32, train_subset=128, checkpoint_every=1)
    snapshots = {}

    def keep(record, artifacts):
        live = {k: v.clone() for k, v in artifacts.model.state_dict().items()}
        snapshots[record[R.EPOCH]] = (artifacts.checkpoint, live, artifacts.model.state_dict())

    run_trial(config, small, report=keep)
    checkpoint, at_report, live = snapshots[1]
    optimizer_states = [s for opt in checkpoint["optimizers"].values() for s in opt["state"].values()]
    tensors = [*checkpoint[MODEL_KEY].values(), *(t for s in optimizer_states for t in s.values())]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    for name, tensor in checkpoint[MODEL_KEY].items():  # epochs 2 and 3 trained the live weights on
        assert torch.equal(tensor, at_report[name]) and not torch.equal(tensor, live[name])
        assert tensor.data_ptr() != live[name].data_ptr()
    assert checkpoint["optimizers"]["generator"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert CUDA_RNG_KEY not in checkpoint  # a CPU trial has no GPU generator (a CUDA one saves it)


def test_deterministic_trials_run_with_deterministic_algorithms_then_restore_the_settings(small, monkeypatch):
    import os

    from study.train import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args(["--family", "gan", "--deterministic"])).deterministic
    assert not config_from_args(build_parser().parse_args(["--family", "gan"])).deterministic
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = []

    def settings(record, artifacts):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                     torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG")))

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark, None)
    config = TrainConfig(model=TINY_GAN, epochs=2, batch_size=32, train_subset=64, deterministic=True)
    first = run_trial(config, small, report=settings)
    assert seen == [(True, True, False, ":4096:8")] * 2
    after = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    assert after == before == (False, False, False, None)
    seen.clear()
    again = run_trial(config.replace(deterministic=False), small, report=settings)
    assert seen == [before] * 2
    assert losses_of(first.history) == losses_of(again.history)  # on a CPU both are bit-for-bit
