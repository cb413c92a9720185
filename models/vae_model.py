"""VAE family: the first seed study's conv VAE, the second seed study's MLP VAE, and the ELBO step.

The decoder outputs Bernoulli logits over pixels in [0, 1]; images are sampled as the
Bernoulli means sigmoid(logits), the usual way to show VAE samples on MNIST.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from models.config import ARCH_CONV, FAMILY_VAE, LOSS_KL, LOSS_NELBO, LOSS_RECON, VAEConfig
from models.layers import IMAGE_PIXELS, Autocast, GenerativeModel, activation, chunked, mlp

ENCODER = "encoder"
DECODER = "decoder"


class ConvEncoder(nn.Module):
    """x -> conv 32, conv 64 (k3, s2, 'same') -> dense 512 -> 256 -> (mu, logvar) of size 10."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        c1, c2 = cfg.enc_channels
        act = lambda: activation(cfg.activation, cfg.leaky_slope)  # noqa: E731
        self.convs = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1), act(),  # [B, c1, 14, 14]
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), act(),  # [B, c2, 7, 7]
            nn.Flatten(),  # [B, c2*49]
        )
        self.dense = mlp([c2 * 49, *cfg.enc_widths], cfg.activation, cfg.leaky_slope, cfg.dropout,
                         cfg.batch_norm)
        self.to_stats = nn.Linear(cfg.enc_widths[-1], 2 * cfg.latent_dim)  # [B, 2*latent]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.dense(self.convs(x))).chunk(2, dim=1)
        return mu, logvar


class ConvDecoder(nn.Module):
    """z -> dense 256 -> 512 -> dense 7*7*64 -> convT 64, convT 1 (k3, s2, 'same') -> 28x28 logits.

    The printed decoder reshapes after its 512-unit dense layer, but 512 units cannot form the
    7x7 map that two stride-2 transposed convs need for a 28x28 output. We add the projection
    to 7*7*64 (the encoder's last map, mirrored), the closest working reading.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        (c,) = cfg.dec_channels
        act = lambda: activation(cfg.activation, cfg.leaky_slope)  # noqa: E731
        widths = [cfg.latent_dim, *cfg.dec_widths]
        self.dense = nn.Sequential(
            mlp(widths, cfg.activation, cfg.leaky_slope, cfg.dropout, cfg.batch_norm),
            nn.Linear(widths[-1], c * 49), act(),  # [B, c*49]
            nn.Unflatten(1, (c, 7, 7)),  # [B, c, 7, 7]
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1), act(),  # [B, c, 14, 14]
            nn.ConvTranspose2d(c, 1, 3, stride=2, padding=1, output_padding=1),  # [B, 1, 28, 28] logits
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.dense(z))


class MLPEncoder(nn.Module):
    """x -> 784 -> 512 -> 256 -> 2*16 (mu, logvar), ReLU (second seed study)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        widths = [IMAGE_PIXELS, *cfg.enc_widths]
        self.body = mlp(widths, cfg.activation, cfg.leaky_slope, cfg.dropout, cfg.batch_norm)
        self.to_stats = nn.Linear(widths[-1], 2 * cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.body(x.flatten(1))).chunk(2, dim=1)
        return mu, logvar


class MLPDecoder(nn.Module):
    """z -> 16 -> 256 -> 512 -> 784 logits (the printed sigmoid is applied in the loss/sampler)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        widths = [cfg.latent_dim, *cfg.dec_widths]
        self.body = mlp(widths, cfg.activation, cfg.leaky_slope, cfg.dropout, cfg.batch_norm)
        self.out = nn.Linear(widths[-1], IMAGE_PIXELS)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z)).view(-1, 1, 28, 28)


def _normal_like(mu: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) noise of mu's shape on mu's device, drawn on `generator`'s device (a CPU generator
    gives the same noise whatever device the model is on); None: the default generator of mu's device."""
    draw_on = generator.device if generator is not None else mu.device
    return torch.randn(mu.shape, generator=generator, device=draw_on, dtype=mu.dtype).to(mu.device)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per example (Kingma & Welling 2014, Appendix B)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def bernoulli_nll(logits: torch.Tensor, x_unit: torch.Tensor) -> torch.Tensor:
    """Summed pixel cross-entropy -log p(x|z) per example, x in [0, 1] (nats)."""
    return F.binary_cross_entropy_with_logits(logits, x_unit, reduction="none").flatten(1).sum(1)


class VAE(GenerativeModel):
    """Encoder + decoder trained on the negative ELBO = reconstruction + kl_beta * KL.

    The first seed study prints the loss as the *product* of the two terms; that is a misprint
    (a product has no likelihood bound meaning): we use the sum, the ELBO of Kingma & Welling
    2014, Eq. 10, with an optional beta weight (Higgins et al. 2017).
    """

    family = FAMILY_VAE
    config: VAEConfig

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.config = cfg
        conv = cfg.arch == ARCH_CONV
        self.encoder = ConvEncoder(cfg) if conv else MLPEncoder(cfg)
        self.decoder = ConvDecoder(cfg) if conv else MLPDecoder(cfg)

    def networks(self) -> dict[str, nn.Module]:
        return {ENCODER: self.encoder, DECODER: self.decoder}

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {"vae": torch.optim.Adam(self.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))}

    @torch.no_grad()
    def decode_to_unit(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> Bernoulli means in [0, 1], shape [B, 1, 28, 28]."""
        return torch.sigmoid(self.decoder(z))

    def loss_terms(self, x_unit: torch.Tensor, generator: torch.Generator | None = None,
                   chunk: int | None = None,
                   posterior: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Per-example reconstruction NLL and KL, with one reparameterised sample (`chunk`: the networks
        see at most that many examples per call, in eval mode; the noise is drawn for the whole batch).
        `posterior`: the encoder's (mu, logvar) of `x_unit` when the caller already has them (scoring,
        in eval mode: the same values), so the encoder is not run twice."""
        mu, logvar = chunked(self.encoder, x_unit, chunk) if posterior is None else posterior
        eps = _normal_like(mu, generator)
        z = mu + eps * torch.exp(0.5 * logvar)  # reparameterisation trick
        return {LOSS_RECON: bernoulli_nll(chunked(self.decoder, z, chunk), x_unit),
                LOSS_KL: gaussian_kl(mu, logvar)}

    def train_step(self, x_unit: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   autocast: Autocast = contextlib.nullcontext) -> dict[str, torch.Tensor]:
        """One ELBO step; forward and loss under `autocast()`, backward and step outside it."""
        if self.config.binarize:  # dynamic binarization: a fresh Bernoulli draw of every pixel per step
            x_unit = torch.bernoulli(x_unit)
        with autocast():
            terms = self.loss_terms(x_unit)
            recon, kl = terms[LOSS_RECON].mean(), terms[LOSS_KL].mean()
            loss = recon + self.config.kl_beta * kl
        (opt,) = optimizers.values()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {LOSS_NELBO: loss.detach(), LOSS_RECON: recon.detach(), LOSS_KL: kl.detach()}

    @torch.no_grad()
    def importance_weighted_nll(self, x_unit: torch.Tensor, k: int,
                                generator: torch.Generator | None = None,
                                chunk: int | None = None) -> torch.Tensor:
        """-log p(x) per example from k importance samples of q(z|x) (Burda et al. 2016, Eq. 8):
        -log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x). A likelihood only for binary x (Bernoulli decoder).
        `chunk`: decode at most this many latents per call (the same noise, drawn per sample i for the
        whole batch; None: the whole batch at once)."""
        mu, logvar = chunked(self.encoder, x_unit, chunk)
        std = torch.exp(0.5 * logvar)
        log_weights = []
        for _ in range(k):
            eps = _normal_like(mu, generator)
            z = mu + eps * std
            log_px_z = -bernoulli_nll(chunked(self.decoder, z, chunk), x_unit)
            log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
            log_qz_x = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(1)
            log_weights.append(log_px_z + log_pz - log_qz_x)
        return -(torch.logsumexp(torch.stack(log_weights), dim=0) - math.log(k))
