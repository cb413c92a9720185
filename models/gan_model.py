"""GAN family: the first seed study's DCGAN, the second seed study's MLP GAN, and the GAN step.

Images are in [-1, 1] (tanh output), as both seed studies preprocess them.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn

from models.config import ARCH_DCGAN, D_FAKE, D_REAL, FAMILY_GAN, LOSS_D, LOSS_G, GANConfig
from models.layers import IMAGE_PIXELS, Autocast, GenerativeModel, conv_out_size, mlp

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
EMA_WARMUP = 10  # the average's decay ramps up as (1 + t) / (EMA_WARMUP + t) over the first steps


class DCGANGenerator(nn.Module):
    """z -> dense 7*7*C0 -> convT C1 (k5, s2, 'same') -> convT 1 (k5, s2, 'same') -> tanh.

    The first seed study prints two dense layers (7*7*128 and 14*14*64) before two stride-2
    transposed convs with 64 and 1 filters. Those cannot coexist with a 28x28 output: two
    stride-2 upsamplings after a 14x14 map give 56x56. The closest working reading, used by
    default, drops the second dense layer: its 14x14x64 shape is exactly the output of the
    first transposed conv, which is the usual TensorFlow DCGAN. `printed_second_dense=True`
    keeps the printed dense layer instead (7*7*128 -> 14*14*64, ~79M weights) and makes the
    first transposed conv stride 1, so the output is still 28x28.
    """

    def __init__(self, cfg: GANConfig):
        super().__init__()
        c0, c1 = cfg.g_widths
        act = lambda: nn.LeakyReLU(cfg.leaky_slope)  # noqa: E731
        norm1d = (lambda n: nn.BatchNorm1d(n)) if cfg.batch_norm else (lambda n: nn.Identity())
        norm2d = (lambda n: nn.BatchNorm2d(n)) if cfg.batch_norm else (lambda n: nn.Identity())
        dense = [nn.Linear(cfg.latent_dim, 7 * 7 * c0), norm1d(7 * 7 * c0), act()]  # [B, 7*7*c0]
        if cfg.printed_second_dense:
            dense += [nn.Linear(7 * 7 * c0, 14 * 14 * c1), norm1d(14 * 14 * c1), act()]  # [B, 14*14*c1]
            self.unflatten = nn.Unflatten(1, (c1, 14, 14))
            first_up = nn.ConvTranspose2d(c1, c1, 5, stride=1, padding=2)  # [B, c1, 14, 14]
        else:
            self.unflatten = nn.Unflatten(1, (c0, 7, 7))  # [B, c0, 7, 7]
            first_up = nn.ConvTranspose2d(c0, c1, 5, stride=2, padding=2, output_padding=1)  # [B, c1, 14, 14]
        self.dense = nn.Sequential(*dense)
        self.deconv = nn.Sequential(
            first_up, norm2d(c1), act(),
            nn.ConvTranspose2d(c1, 1, 5, stride=2, padding=2, output_padding=1),  # [B, 1, 28, 28]
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.unflatten(self.dense(z)))


class DCGANDiscriminator(nn.Module):
    """x -> convs (k5, s2, 'same'; 64, 128, 256, 512 filters printed) -> flatten -> dense 1 logit."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in cfg.d_widths:  # each halves the map: 28 -> 14 -> 7 -> 4 -> 2
            layers.append(nn.Conv2d(c_in, c_out, 5, stride=2, padding=2))
            if cfg.batch_norm and c_in != 1:  # no norm on the input layer (Radford et al. 2016)
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(cfg.leaky_slope))
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            c_in = c_out
        side = conv_out_size(28, len(cfg.d_widths))
        self.features = nn.Sequential(*layers, nn.Flatten())  # [B, c_last * side * side]
        self.head = nn.Linear(c_in * side * side, 1)  # [B, 1] logit; sigmoid lives in the loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


class MLPGenerator(nn.Module):
    """z -> 256 -> 512 -> 1024 (printed) -> 784 tanh, LeakyReLU 0.2 (second seed study)."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        widths = [cfg.latent_dim, *cfg.g_widths]
        self.body = mlp(widths, "leaky_relu", cfg.leaky_slope, batch_norm=cfg.batch_norm)
        self.out = nn.Sequential(nn.Linear(widths[-1], IMAGE_PIXELS), nn.Tanh())  # [B, 784]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z)).view(-1, 1, 28, 28)


class MLPDiscriminator(nn.Module):
    """x -> 784 -> 1024 -> 512 -> 256 (printed) -> 1 logit, LeakyReLU 0.2, dropout 0.3."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        widths = [IMAGE_PIXELS, *cfg.d_widths]
        self.body = mlp(widths, "leaky_relu", cfg.leaky_slope, dropout=cfg.dropout)
        self.head = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1))).squeeze(1)


class GAN(GenerativeModel):
    """Generator + discriminator and the alternating step.

    Losses (Goodfellow et al. 2014, Sec. 3): D minimises BCE(D(x), 1) + BCE(D(G(z)), 0); G uses
    the non-saturating loss BCE(D(G(z)), 1) = -log D(G(z)) instead of log(1 - D(G(z))), which
    saturates early in training. Logits + BCE-with-logits replace the printed sigmoid output.
    """

    family = FAMILY_GAN
    config: GANConfig
    ema_steps: torch.Tensor  # generator steps averaged so far (a buffer, when ema_decay > 0)

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.config = cfg
        dcgan = cfg.arch == ARCH_DCGAN
        self.generator = DCGANGenerator(cfg) if dcgan else MLPGenerator(cfg)
        self.discriminator = DCGANDiscriminator(cfg) if dcgan else MLPDiscriminator(cfg)
        # the weight average, a frozen copy of the generator that samples when ema_decay > 0; a
        # submodule, so checkpoints save and restore it (and .to(device) moves it) with the rest
        self.generator_ema: nn.Module | None = None
        if cfg.ema_decay > 0:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
            self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))

    def networks(self) -> dict[str, nn.Module]:
        """The trained networks (the average is a copy of the generator, not more capacity)."""
        return {GENERATOR: self.generator, DISCRIMINATOR: self.discriminator}

    def sampler(self) -> nn.Module:
        """The generator that samples: the weight average when there is one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def update_average(self) -> None:
        """ema <- d * ema + (1 - d) * generator, d = min(ema_decay, (1 + t) / (EMA_WARMUP + t));
        buffers (batch-norm statistics) are copied."""
        if self.generator_ema is None:
            return
        t = float(self.ema_steps)
        decay = min(self.config.ema_decay, (1.0 + t) / (EMA_WARMUP + t))
        average: list[torch.Tensor] = list(self.generator_ema.parameters())
        current = [p.detach() for p in self.generator.parameters()]
        torch._foreach_lerp_(average, current, 1.0 - decay)
        for ema_buffer, buffer in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            ema_buffer.copy_(buffer)
        self.ema_steps.add_(1)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {
            GENERATOR: torch.optim.Adam(self.generator.parameters(), lr=c.lr_g, betas=(c.beta1, c.beta2)),
            DISCRIMINATOR: torch.optim.Adam(self.discriminator.parameters(), lr=c.lr_d,
                                            betas=(c.beta1, c.beta2)),
        }

    @torch.no_grad()
    def decode_to_unit(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> images in [0, 1], shape [B, 1, 28, 28]."""
        return self.sampler()(z).add(1.0).mul(0.5).clamp_(0.0, 1.0)

    def train_step(self, x_unit: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   autocast: Autocast = contextlib.nullcontext) -> dict[str, torch.Tensor]:
        """One discriminator step, then one generator step, on a batch in [0, 1]. Alternating: the
        generator's loss goes through the updated discriminator (a fresh `autocast()` per update,
        see GenerativeModel.train_step)."""
        real = x_unit * 2.0 - 1.0  # [B, 1, 28, 28] in [-1, 1]
        batch = real.shape[0]
        ones = torch.ones(batch, device=real.device)
        zeros = torch.zeros(batch, device=real.device)

        with autocast():
            fake = self.generator(self.sample_latent(batch, device=real.device))
            logits_real = self.discriminator(real)
            logits_fake = self.discriminator(fake.detach())
            loss_d = (F.binary_cross_entropy_with_logits(logits_real, ones)
                      + F.binary_cross_entropy_with_logits(logits_fake, zeros))
        optimizers[DISCRIMINATOR].zero_grad(set_to_none=True)
        loss_d.backward()
        optimizers[DISCRIMINATOR].step()

        # the generator's loss needs the gradient through the discriminator, not the discriminator's own:
        # frozen, its convolutions skip their weight gradients (a fifth of a CPU step at the lab's widths;
        # the generator's gradients are the same bit for bit, tests/test_models.py)
        self.discriminator.requires_grad_(False)
        try:
            with autocast():  # a new context: the discriminator's weights as they are after its step
                loss_g = F.binary_cross_entropy_with_logits(self.discriminator(fake), ones)  # non-saturating
            optimizers[GENERATOR].zero_grad(set_to_none=True)
            loss_g.backward()
        finally:
            self.discriminator.requires_grad_(True)
        optimizers[GENERATOR].step()
        self.update_average()
        return {
            LOSS_D: loss_d.detach(),
            LOSS_G: loss_g.detach(),
            D_REAL: torch.sigmoid(logits_real.detach()).mean(),
            D_FAKE: torch.sigmoid(logits_fake.detach()).mean(),
        }
