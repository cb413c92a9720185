"""VAE search space: conv | mlp, per-layer widths, dense depth, latent size, learning rate,
Adam beta1, batch size and the KL weight beta (beta-VAE; 1.0 is the true ELBO).

Seed widths per layer (`models.config.seed_model_config`):
  conv   encoder convs (32, 64) and decoder 7x7 channels (64,), fixed depth (the 28 -> 14 -> 7
         maps need exactly two stride-2 layers);
  both   dense encoder (512, 256) and decoder (256, 512): depth 1..3 each, keeping the seed's
         halving towards the latent (a 3-layer encoder is 512-256-128, its decoder 128-256-512).
Not searched (kept at the seed's value): activation, leaky slope, dropout, batch norm, beta2.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.config import ARCH_CONV, ARCH_MLP, ARCHS, FAMILY_VAE, TrainConfig, seed_model_config
from search_spaces.common import (
    BETA1_RANGE,
    KL_BETA_RANGE,
    LATENT_RANGE,
    LR_RANGE,
    SpaceOptions,
    geometric_widths,
    space_name,
    suggest_widths,
    width_point,
)

CONV_ENC_SEED = (32, 64)
CONV_DEC_SEED = (64,)
DENSE_FIRST = 512  # the seed encoder's widest (first) dense layer; the decoder mirrors it
DENSE_DEPTHS = (1, 3)  # inclusive range


def _enc_seed(depth: int) -> list[int]:
    return geometric_widths(DENSE_FIRST, depth, 0.5)


def _dec_seed(depth: int) -> list[int]:
    return _enc_seed(depth)[::-1]


def define(trial, options: SpaceOptions) -> dict[str, Any]:
    """Define-by-run VAE space -> flat TrainConfig dict."""
    arch = trial.suggest_categorical("arch", ARCHS[FAMILY_VAE])
    model = seed_model_config(FAMILY_VAE, arch)
    changes: dict[str, Any] = {}
    if arch == ARCH_CONV:
        changes["enc_channels"] = tuple(suggest_widths(trial, "conv_enc_ch", CONV_ENC_SEED, options))
        changes["dec_channels"] = tuple(suggest_widths(trial, "conv_dec_ch", CONV_DEC_SEED, options))
    enc_depth = trial.suggest_int(space_name(arch, "enc", "depth"), *DENSE_DEPTHS)
    changes["enc_widths"] = tuple(suggest_widths(trial, f"{arch}_enc", _enc_seed(enc_depth), options))
    dec_depth = trial.suggest_int(space_name(arch, "dec", "depth"), *DENSE_DEPTHS)
    changes["dec_widths"] = tuple(suggest_widths(trial, f"{arch}_dec", _dec_seed(dec_depth), options))
    model = dataclasses.replace(
        model,
        **changes,
        latent_dim=trial.suggest_int("latent_dim", *LATENT_RANGE, log=True),
        lr=trial.suggest_float("lr", *LR_RANGE, log=True),
        beta1=trial.suggest_float("beta1", *BETA1_RANGE),
        kl_beta=trial.suggest_float("kl_beta", *KL_BETA_RANGE, log=True),
    )
    batch_size = trial.suggest_categorical("batch_size", options.batch_sizes)
    model = dataclasses.replace(model, **options.model)
    return TrainConfig(model=model, batch_size=batch_size, **options.loop).to_dict()


def seed_points(options: SpaceOptions) -> list[dict[str, Any]]:
    """Optuna parameters reproducing the first (conv) and second (mlp) seed studies' VAEs."""
    points = []
    for arch in (ARCH_CONV, ARCH_MLP):
        seed = seed_model_config(FAMILY_VAE, arch)
        point: dict[str, Any] = {"arch": arch}
        if arch == ARCH_CONV:
            point |= width_point("conv_enc_ch", seed.enc_channels, options)
            point |= width_point("conv_dec_ch", seed.dec_channels, options)
        point[space_name(arch, "enc", "depth")] = len(seed.enc_widths)
        point |= width_point(f"{arch}_enc", seed.enc_widths, options)
        point[space_name(arch, "dec", "depth")] = len(seed.dec_widths)
        point |= width_point(f"{arch}_dec", seed.dec_widths, options)
        point |= {"latent_dim": seed.latent_dim, "lr": seed.lr, "beta1": seed.beta1, "kl_beta": seed.kl_beta,
                  "batch_size": TrainConfig.batch_size}
        points.append(point)
    return points
