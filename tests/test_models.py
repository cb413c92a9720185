import pytest
import torch

from models import (
    FAMILY_GAN,
    FAMILY_VAE,
    GANConfig,
    TrainConfig,
    VAEConfig,
    build_model,
    seed_model_config,
)
from models.config import ConfigError
from models.gan_model import DISCRIMINATOR, GENERATOR
from models.vae_model import DECODER, ENCODER


def lin(d_in, d_out):  # weights + bias of a dense layer
    return d_in * d_out + d_out


def conv(c_in, c_out, k):  # weights + bias of a (transposed) conv
    return c_in * c_out * k * k + c_out


# Hand-counted from the seed studies' printed layer sizes (see models/*.py for the readings).
PRINTED_COUNTS = {
    ("gan", "dcgan"): {
        GENERATOR: lin(100, 7 * 7 * 128) + conv(128, 64, 5) + conv(64, 1, 5),
        DISCRIMINATOR: conv(1, 64, 5) + conv(64, 128, 5) + conv(128, 256, 5) + conv(256, 512,
                                                                                    5) + lin(512 * 2 * 2, 1),
    },
    ("gan", "mlp"): {
        GENERATOR: lin(100, 256) + lin(256, 512) + lin(512, 1024) + lin(1024, 784),
        DISCRIMINATOR: lin(784, 1024) + lin(1024, 512) + lin(512, 256) + lin(256, 1),
    },
    ("vae", "conv"): {
        ENCODER: conv(1, 32, 3) + conv(32, 64, 3) + lin(64 * 7 * 7, 512) + lin(512, 256) + lin(256, 2 * 10),
        DECODER: lin(10, 256) + lin(256, 512) + lin(512, 64 * 7 * 7) + conv(64, 64, 3) + conv(64, 1, 3),
    },
    ("vae", "mlp"): {
        ENCODER: lin(784, 512) + lin(512, 256) + lin(256, 2 * 16),
        DECODER: lin(16, 256) + lin(256, 512) + lin(512, 784),
    },
}


@pytest.mark.parametrize("family,arch", list(PRINTED_COUNTS))
def test_printed_architectures_have_hand_counted_parameters_and_mnist_shapes(family, arch):
    model = build_model(seed_model_config(family, arch))
    assert model.parameter_counts() == PRINTED_COUNTS[(family, arch)]
    z = model.sample_latent(5, generator=torch.Generator().manual_seed(0))
    images = model.decode_to_unit(z)
    assert images.shape == (5, 1, 28, 28)
    assert 0.0 <= images.min() and images.max() <= 1.0
    if family == FAMILY_GAN:
        assert model.discriminator(images * 2 - 1).shape == (5,)
    else:
        mu, logvar = model.encoder(images)
        assert mu.shape == logvar.shape == (5, model.config.latent_dim)


def test_printed_second_dense_option_keeps_28x28_and_adds_the_printed_layer():
    default = build_model(GANConfig()).parameter_counts()[GENERATOR]
    printed = build_model(GANConfig(printed_second_dense=True))
    extra_dense = lin(7 * 7 * 128, 14 * 14 * 64)
    # the first transposed conv becomes stride 1 with 64 input channels instead of 128
    conv_change = conv(64, 64, 5) - conv(128, 64, 5)
    assert printed.parameter_counts()[GENERATOR] == default + extra_dense + conv_change
    assert printed.generator(torch.zeros(2, 100)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize(
    "cfg",
    [
        GANConfig(latent_dim=7, g_widths=(16, 8), d_widths=(8, 16)),
        GANConfig(arch="mlp", latent_dim=3, g_widths=(32,), d_widths=(64, 32, 16, 8), dropout=0.1,
                  batch_norm=True),
        VAEConfig(latent_dim=2, enc_channels=(4, 8), enc_widths=(32,), dec_widths=(16, 32, 64),
                  dec_channels=(8,)),
        VAEConfig(arch="mlp", latent_dim=128, enc_widths=(64,), dec_widths=(64, 64), batch_norm=True),
        GANConfig(d_widths=(8, 8, 8, 8, 8), batch_norm=True),
    ],
)
def test_searched_widths_depths_and_latents_build(cfg):
    model = build_model(cfg).eval()
    z = model.sample_latent(3)
    assert z.shape == (3, cfg.latent_dim)
    assert model.decode_to_unit(z).shape == (3, 1, 28, 28)


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda: GANConfig(arch="conv"), "arch='conv'"),
        (lambda: GANConfig(g_widths=(64,)), "exactly 2"),
        (lambda: VAEConfig(latent_dim=0), "latent_dim"),
        (lambda: VAEConfig(dropout=1.5), "dropout"),
        (lambda: TrainConfig(epochs=0), "epochs"),
        (lambda: TrainConfig.from_dict({"family": "vae", "latent_size": 3}), "latent_size"),
    ],
)
def test_bad_configs_say_what_to_change(make, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_config_round_trips_through_flat_dict_and_json():
    for family, arch in PRINTED_COUNTS:
        cfg = TrainConfig(model=seed_model_config(family, arch), epochs=3, seed=7, train_subset=100)
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg
        assert TrainConfig.from_json(cfg.to_json()) == cfg
    assert TrainConfig(model=VAEConfig()).family == FAMILY_VAE


def test_gan_step_updates_both_networks():
    torch.manual_seed(0)
    model = build_model(GANConfig(latent_dim=8, g_widths=(16, 8), d_widths=(8, 16)))
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in model.networks().items()}
    losses = model.train_step(torch.rand(16, 1, 28, 28), model.make_optimizers())
    for name, net in model.networks().items():
        changed = [not torch.equal(a, b) for a, b in zip(before[name], net.parameters(), strict=True)]
        assert all(changed), f"{name}: some parameters did not move"
    assert all(torch.isfinite(v) for v in losses.values())
    assert 0 < losses["d_real"] < 1 and 0 < losses["d_fake"] < 1


def _reference_gan_step(model, x_unit, optimizers):
    """The alternating step written out with nothing frozen (Goodfellow et al. 2014, non-saturating G)."""
    import torch.nn.functional as F

    real = x_unit * 2.0 - 1.0
    ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
    fake = model.generator(model.sample_latent(len(real), device=real.device))
    loss_d = (F.binary_cross_entropy_with_logits(model.discriminator(real), ones)
              + F.binary_cross_entropy_with_logits(model.discriminator(fake.detach()), zeros))
    optimizers[DISCRIMINATOR].zero_grad(set_to_none=True)
    loss_d.backward()
    d_grads = [p.grad.clone() for p in model.discriminator.parameters()]
    optimizers[DISCRIMINATOR].step()
    loss_g = F.binary_cross_entropy_with_logits(model.discriminator(fake), ones)
    optimizers[GENERATOR].zero_grad(set_to_none=True)
    loss_g.backward()
    optimizers[GENERATOR].step()
    return d_grads


@pytest.mark.parametrize("cfg", [
    GANConfig(latent_dim=8, g_widths=(16, 8), d_widths=(8, 16, 24)),
    GANConfig(latent_dim=8, g_widths=(16, 8), d_widths=(8, 16), batch_norm=True),
    GANConfig(arch="mlp", latent_dim=8, g_widths=(32,), d_widths=(32,)),
])
def test_gan_generator_step_leaves_the_discriminator_gradient_alone_and_trains_bit_for_bit_the_same(cfg):
    # the generator's step freezes the discriminator (its weight gradients are skipped): the same
    # parameters, bit for bit, as the step with nothing frozen, and the discriminator's .grad is its own
    # loss's (the old step left the generator loss's gradient there)
    torch.manual_seed(0)
    model = build_model(cfg)
    reference = build_model(cfg)
    reference.load_state_dict(model.state_dict())
    opt, ref_opt = model.make_optimizers(), reference.make_optimizers()
    for step in range(3):
        x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(step))
        torch.manual_seed(100 + step)
        model.train_step(x, opt)
        torch.manual_seed(100 + step)
        d_grads = _reference_gan_step(reference, x, ref_opt)
        for a, b in zip(model.parameters(), reference.parameters(), strict=True):
            assert torch.equal(a, b)
        for p, g in zip(model.discriminator.parameters(), d_grads, strict=True):
            assert p.requires_grad and torch.equal(p.grad, g)


def test_vae_elbo_terms_are_consistent():
    torch.manual_seed(0)
    model = build_model(VAEConfig(arch="mlp", latent_dim=4, enc_widths=(32,), dec_widths=(32,)))
    x = torch.rand(8, 1, 28, 28).round()
    terms = model.loss_terms(x)
    assert (terms["loss_kl"] >= 0).all()
    # untrained decoder ~ p=0.5 per pixel: reconstruction close to 784 * ln 2 nats
    assert terms["loss_recon"].mean().item() == pytest.approx(784 * 0.6931, rel=0.1)
    # the importance-weighted bound is tighter than (<=) the one-sample ELBO estimate on average
    nelbo = (terms["loss_recon"] + terms["loss_kl"]).mean()
    iw = model.importance_weighted_nll(x, k=64, generator=torch.Generator().manual_seed(1)).mean()
    assert iw <= nelbo + 1.0


def test_gan_weight_average_follows_the_generator_and_samples():
    """ema_decay > 0: a frozen copy of the generator, moved by the warmed-up lerp after every
    generator step, is what decode_to_unit samples; it is saved with the model."""
    torch.manual_seed(0)
    cfg = GANConfig(latent_dim=8, g_widths=(16, 8), d_widths=(8, 16), ema_decay=0.9)
    model = build_model(cfg)
    assert set(model.networks()) == {GENERATOR, DISCRIMINATOR}  # sizes count trained networks only
    optimizers = model.make_optimizers()
    assert all(not p.requires_grad for p in model.generator_ema.parameters())
    for step in range(3):
        before = [p.detach().clone() for p in model.generator_ema.parameters()]
        model.train_step(torch.rand(16, 1, 28, 28), optimizers)
        decay = min(0.9, (1 + step) / (10 + step))  # EMA_WARMUP = 10
        for old, new, current in zip(before, model.generator_ema.parameters(), model.generator.parameters(),
                                     strict=True):
            torch.testing.assert_close(new, decay * old + (1 - decay) * current.detach())
    assert int(model.ema_steps) == 3
    z = torch.randn(4, 8)
    model.eval()
    average = model.generator_ema(z).add(1).mul(0.5).clamp(0, 1)
    assert torch.equal(model.decode_to_unit(z), average)
    assert not torch.equal(model.decode_to_unit(z), model.generator(z).add(1).mul(0.5).clamp(0, 1))
    restored = build_model(cfg)
    restored.load_state_dict(model.state_dict())  # the average and its step count travel with the model
    assert torch.equal(restored.eval().decode_to_unit(z), model.decode_to_unit(z))
    assert int(restored.ema_steps) == 3


def test_gan_without_average_keeps_its_state_dict_and_rejects_bad_decays():
    model = build_model(GANConfig(latent_dim=8, g_widths=(16, 8), d_widths=(8, 16)))
    assert model.generator_ema is None and model.sampler() is model.generator
    assert not any(key.startswith(("generator_ema", "ema_steps")) for key in model.state_dict())
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match="ema_decay"):
            GANConfig(ema_decay=bad)
