"""GAN search space: dcgan | mlp, per-layer widths, discriminator/MLP depth, latent size,
separate generator and discriminator learning rates, Adam beta1, batch size.

Seed widths per layer (`models.config.seed_model_config`):
  dcgan  generator (7x7 projection, 14x14 transposed conv) = (128, 64), fixed depth 2;
         discriminator convs (64, 128, 256, 512): depth 2..4, doubling from 64.
  mlp    generator (256, 512, 1024), discriminator (1024, 512, 256): depth 2..4 each, keeping
         the seed's doubling towards the image side (a 4-layer generator is 128-256-512-1024).
Not searched (kept at the seed's value): leaky slope, dropout, batch norm, Adam beta2.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.config import ARCH_DCGAN, ARCH_MLP, ARCHS, FAMILY_GAN, TrainConfig, seed_model_config
from search_spaces.common import (
    BETA1_RANGE,
    LATENT_RANGE,
    LR_RANGE,
    SpaceOptions,
    geometric_widths,
    space_name,
    suggest_widths,
    width_point,
)

DCGAN_G_SEED = (128, 64)
DCGAN_D_FIRST = 64  # the seed discriminator doubles from 64: 64, 128, 256, 512
DCGAN_D_DEPTHS = (2, 4)  # inclusive range; each conv halves the map, 28 -> 14 -> 7 -> 4
MLP_G_LAST = 1024  # the seed generator's widest (last) layer
MLP_D_FIRST = 1024  # the seed discriminator's widest (first) layer
MLP_DEPTHS = (2, 4)


def _dcgan_d_seed(depth: int) -> list[int]:
    return geometric_widths(DCGAN_D_FIRST, depth, 2.0)


def _mlp_g_seed(depth: int) -> list[int]:
    return geometric_widths(MLP_G_LAST, depth, 0.5)[::-1]


def _mlp_d_seed(depth: int) -> list[int]:
    return geometric_widths(MLP_D_FIRST, depth, 0.5)


def define(trial, options: SpaceOptions) -> dict[str, Any]:
    """Define-by-run GAN space -> flat TrainConfig dict."""
    arch = trial.suggest_categorical("arch", ARCHS[FAMILY_GAN])
    model = seed_model_config(FAMILY_GAN, arch)
    if arch == ARCH_DCGAN:
        g_widths = suggest_widths(trial, "dcgan_g", DCGAN_G_SEED, options)
        d_depth = trial.suggest_int(space_name("dcgan_d", "depth"), *DCGAN_D_DEPTHS)
        d_widths = suggest_widths(trial, "dcgan_d", _dcgan_d_seed(d_depth), options)
    else:
        g_depth = trial.suggest_int(space_name("mlp_g", "depth"), *MLP_DEPTHS)
        g_widths = suggest_widths(trial, "mlp_g", _mlp_g_seed(g_depth), options)
        d_depth = trial.suggest_int(space_name("mlp_d", "depth"), *MLP_DEPTHS)
        d_widths = suggest_widths(trial, "mlp_d", _mlp_d_seed(d_depth), options)
    model = dataclasses.replace(
        model,
        g_widths=tuple(g_widths),
        d_widths=tuple(d_widths),
        latent_dim=trial.suggest_int("latent_dim", *LATENT_RANGE, log=True),
        lr_g=trial.suggest_float("lr_g", *LR_RANGE, log=True),
        lr_d=trial.suggest_float("lr_d", *LR_RANGE, log=True),
        beta1=trial.suggest_float("beta1", *BETA1_RANGE),
    )
    batch_size = trial.suggest_categorical("batch_size", options.batch_sizes)
    model = dataclasses.replace(model, **options.model)
    return TrainConfig(model=model, batch_size=batch_size, **options.loop).to_dict()


def seed_points(options: SpaceOptions) -> list[dict[str, Any]]:
    """Optuna parameters reproducing the first (dcgan) and second (mlp) seed studies' GANs."""
    points = []
    for arch in (ARCH_DCGAN, ARCH_MLP):
        seed = seed_model_config(FAMILY_GAN, arch)
        point: dict[str, Any] = {"arch": arch}
        if arch == ARCH_DCGAN:
            point |= width_point("dcgan_g", seed.g_widths, options)
            point[space_name("dcgan_d", "depth")] = len(seed.d_widths)
            point |= width_point("dcgan_d", seed.d_widths, options)
        else:
            point[space_name("mlp_g", "depth")] = len(seed.g_widths)
            point |= width_point("mlp_g", seed.g_widths, options)
            point[space_name("mlp_d", "depth")] = len(seed.d_widths)
            point |= width_point("mlp_d", seed.d_widths, options)
        point |= {"latent_dim": seed.latent_dim, "lr_g": seed.lr_g, "lr_d": seed.lr_d, "beta1": seed.beta1,
                  "batch_size": TrainConfig.batch_size}
        points.append(point)
    return points
