"""VAE search space: conv | mlp, per-layer widths, dense depth, latent size, learning rate,
Adam beta1, batch size and the KL weight beta (beta-VAE; 1.0 is the true ELBO).

The table (`space(options)`) is declared by `STACKS` and `SCALARS`; the seed widths per layer are
the seed configurations' (`models.config.seed_model_config`):
  conv   encoder convs (32, 64) and decoder 7x7 channels (64,), fixed depth (the 28 -> 14 -> 7
         maps need exactly two stride-2 layers);
  both   dense encoder (512, 256) and decoder (256, 512): depth 1..3 each, keeping the seed's
         halving towards the latent (a 3-layer encoder is 512-256-128, its decoder 128-256-512).
Each architecture has its own dense-depth and width names (`space/conv_enc_depth`, `space/mlp_enc_depth`).
Not searched (kept at the seed's value): activation, leaky slope, dropout, batch norm, beta2.
"""

from __future__ import annotations

from typing import Any

from models.config import ARCH_CONV, ARCH_MLP, FAMILY_VAE
from search_spaces.common import (
    BETA1_RANGE,
    FIRST,
    FLOAT,
    INT,
    KL_BETA_RANGE,
    LAST,
    LATENT_RANGE,
    LR_RANGE,
    ScalarParam,
    Space,
    SpaceOptions,
    WidthStack,
    build_space,
)

DENSE_DEPTHS = (1, 3)  # inclusive range

STACKS = (
    #          Optuna prefix  field           architecture  depths        other depths from
    WidthStack("conv_enc_ch", "enc_channels", ARCH_CONV),  # fixed: two stride-2 convs
    WidthStack("conv_dec_ch", "dec_channels", ARCH_CONV),  # fixed: the 7x7 projection
    WidthStack("conv_enc",    "enc_widths",   ARCH_CONV,    DENSE_DEPTHS, FIRST, 0.5),
    WidthStack("conv_dec",    "dec_widths",   ARCH_CONV,    DENSE_DEPTHS, LAST, 0.5),
    WidthStack("mlp_enc",     "enc_widths",   ARCH_MLP,     DENSE_DEPTHS, FIRST, 0.5),
    WidthStack("mlp_dec",     "dec_widths",   ARCH_MLP,     DENSE_DEPTHS, LAST, 0.5),
)
SCALARS = (
    ScalarParam("latent_dim", INT, LATENT_RANGE, log=True),
    ScalarParam("lr", FLOAT, LR_RANGE, log=True),
    ScalarParam("beta1", FLOAT, BETA1_RANGE),
    ScalarParam("kl_beta", FLOAT, KL_BETA_RANGE, log=True),
)


def space(options: SpaceOptions) -> Space:
    return build_space(FAMILY_VAE, STACKS, SCALARS, options)


def define(trial, options: SpaceOptions) -> dict[str, Any]:
    """Define-by-run VAE space -> flat TrainConfig dict."""
    return space(options).define(trial)


def seed_points(options: SpaceOptions) -> list[dict[str, Any]]:
    """Optuna parameters reproducing the first (conv) and second (mlp) seed studies' VAEs."""
    return space(options).seed_points()
