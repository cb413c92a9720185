"""A VAE's likelihood on the test set: -log p(x) of the test images binarized once (fixed seed),
importance-weighted (Burda et al. 2016), plus the reconstruction MSE and the continuous-pixel ELBO,
which is reported as a BCE loss, never as a likelihood."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from models.config import LOSS_KL, LOSS_RECON
from study.data import to_unit
from study.metrics.fp32 import full_fp32
from study.metrics.real_stats import cpu_chunk, per_chunk, unit_batches
from study.metrics.sampling import eval_mode

# The binarized NLL: k importance samples per image. Burda et al. 2016 use 5000; on a trained MLP VAE
# (300 binarized test images) k = 100 / 500 / 1000 / 2000 gave 0.113 / 0.034 / 0.002 / 0.001 nat above
# k = 5000 (docs/metrics.md, "Real-data floors and costs"), so k = 500 is within 0.1 nat at a tenth of
# the cost. On the first IW_IMAGES test images (None: all 10,000, the protocol for final models;
# presets may use fewer, the same images for every trial).
IW_K = 500
IW_IMAGES: int | None = None
BINARIZE_SEED = 20_160_601  # the test set is binarized once, with this seed, for every model


def binarized(images_uint8: torch.Tensor, seed: int = BINARIZE_SEED) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float {0, 1} [N, 1, 28, 28]: each pixel a Bernoulli draw with its intensity
    as probability, all images at once from one seeded generator (the same binary set for every model)."""
    return torch.bernoulli(to_unit(images_uint8), generator=torch.Generator().manual_seed(seed))


class VAEScores(NamedTuple):
    recon_mse: float  # per-pixel squared error of the posterior-mean reconstruction, [0, 1] pixel units
    bce_nelbo: float  # BCE + KL on the continuous pixels, nats per image: a loss, not a likelihood
    binarized_nll: float  # -log p(x) of the binarized images, nats per image, k importance samples
    iw_k: int
    iw_images: int


@torch.no_grad()
@full_fp32()
def vae_scores(model, images_uint8: torch.Tensor, *, seed: int = 0, iw_k: int = IW_K,
               iw_images: int | None = IW_IMAGES, batch_size: int = 500, nll: bool = True) -> VAEScores:
    """Reconstruction MSE and the BCE loss on all images (continuous pixels); the importance-weighted
    NLL of the first `iw_images` (None: all) of the images binarized with BINARIZE_SEED (nll False: NaN,
    skipping the k decoder passes per image, by far the costly part). The noise
    is drawn on a CPU generator (as study.metrics.sampling.generate does), so it does not depend on
    the device."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    iw_images = len(images_uint8) if iw_images is None else min(iw_images, len(images_uint8))
    sq_err = bce_nelbo = total_nll = 0.0
    chunk = cpu_chunk(device)  # the same numbers, faster on a CPU (real_stats.CPU_CHUNK)
    with eval_mode(model):
        for x in unit_batches(images_uint8, batch_size):
            x = x.to(device)
            mu, logvar = per_chunk(model.encoder, x)
            sq_err += float((torch.sigmoid(per_chunk(model.decoder, mu)) - x).pow(2).sum())
            terms = model.loss_terms(x, generator=generator, chunk=chunk, posterior=(mu, logvar))
            bce_nelbo += float((terms[LOSS_RECON] + terms[LOSS_KL]).sum())  # Kingma & Welling 2014, Eq. 10
        binary = binarized(images_uint8)[:iw_images]  # the whole set binarized, so a prefix is the same
        for x in binary.split(batch_size) if nll else ():
            total_nll += float(model.importance_weighted_nll(x.to(device), iw_k, generator=generator,
                                                             chunk=chunk).sum())
    n = len(images_uint8)
    return VAEScores(sq_err / images_uint8.numel(), bce_nelbo / n,
                     total_nll / iw_images if nll and iw_images else math.nan, iw_k, iw_images)
