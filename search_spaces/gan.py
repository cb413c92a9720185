"""GAN search space: dcgan | mlp, per-layer widths, discriminator/MLP depth, latent size,
separate generator and discriminator learning rates, Adam beta1, batch size.

The table (`space(options)`) is declared by `STACKS` and `SCALARS`; the seed widths per layer are
the seed configurations' (`models.config.seed_model_config`):
  dcgan  generator (7x7 projection, 14x14 transposed conv) = (128, 64), fixed depth 2;
         discriminator convs (64, 128, 256, 512): depth 2..4, doubling from 64.
  mlp    generator (256, 512, 1024), discriminator (1024, 512, 256): depth 2..4 each, keeping
         the seed's doubling towards the image side (a 4-layer generator is 128-256-512-1024).
Not searched (kept at the seed's value): leaky slope, dropout, batch norm, Adam beta2.
"""

from __future__ import annotations

from typing import Any

from models.config import ARCH_DCGAN, ARCH_MLP, FAMILY_GAN
from search_spaces.common import (
    BETA1_RANGE,
    FIRST,
    FLOAT,
    INT,
    LAST,
    LATENT_RANGE,
    LR_RANGE,
    ScalarParam,
    Space,
    SpaceOptions,
    WidthStack,
    build_space,
)

DCGAN_D_DEPTHS = (2, 4)  # inclusive range; each conv halves the map, 28 -> 14 -> 7 -> 4
MLP_DEPTHS = (2, 4)

STACKS = (
    #          Optuna prefix  field        architecture  depths          other depths from
    WidthStack("dcgan_g",     "g_widths",  ARCH_DCGAN),  # fixed: the 7x7 and 14x14 maps
    WidthStack("dcgan_d",     "d_widths",  ARCH_DCGAN,   DCGAN_D_DEPTHS, FIRST, 2.0),
    WidthStack("mlp_g",       "g_widths",  ARCH_MLP,     MLP_DEPTHS,     LAST, 0.5),
    WidthStack("mlp_d",       "d_widths",  ARCH_MLP,     MLP_DEPTHS,     FIRST, 0.5),
)
SCALARS = (
    ScalarParam("latent_dim", INT, LATENT_RANGE, log=True),
    ScalarParam("lr_g", FLOAT, LR_RANGE, log=True),
    ScalarParam("lr_d", FLOAT, LR_RANGE, log=True),
    ScalarParam("beta1", FLOAT, BETA1_RANGE),
)


def space(options: SpaceOptions) -> Space:
    return build_space(FAMILY_GAN, STACKS, SCALARS, options)


def define(trial, options: SpaceOptions) -> dict[str, Any]:
    """Define-by-run GAN space -> flat TrainConfig dict."""
    return space(options).define(trial)


def seed_points(options: SpaceOptions) -> list[dict[str, Any]]:
    """Optuna parameters reproducing the first (dcgan) and second (mlp) seed studies' GANs."""
    return space(options).seed_points()
