"""Optuna search spaces for both families: an Optuna trial -> a plain config dict.

Each family module (`gan.py`, `vae.py`) defines
  - `define(trial, options) -> dict`: a define-by-run space. It calls `trial.suggest_*` and
    returns the flat dict that `models.config.TrainConfig.from_dict` accepts (plus a nested
    `SPACE_KEY` entry that Ray Tune adds with the raw per-layer suggestions; see `train_config`).
  - `seed_points(options) -> list[dict]`: the Optuna parameters that reproduce the seed studies'
    own configurations; `study.launch` enqueues them so they are the first trials of every study.
The shared pieces (ranges, `SpaceOptions`, names, `train_config`) live in `common.py`, which the
family modules import; this package module only re-exports them and dispatches on the family.

Widths are searched per layer on a log scale around the seed study's value for that layer
(`width_range` times the seed width, 1/4x to 4x by default). `width_scale` shrinks the whole
space (and the seed points with it) for the `--quick` / `--smoke-test` presets, so "the seed
configuration" of a smoke test is the seed architecture at that scale, hyperparameters unchanged.

Width names are keyed by depth and position: `space/mlp_g_d3_w0` is the first layer of a
3-layer MLP generator and nothing else. A depth-free name such as `space/mlp_g_0` would mean the
first layer of a 2-, 3- or 4-layer stack, whose seed widths (512, 256, 128) and so ranges
differ, and multivariate TPE would pool those observations as one parameter. With depth-keyed
names every name is one layer of one architecture with one distribution, at the price of TPE
learning each depth's widths from the trials of that depth only (the depth itself is one
shared parameter, `space/mlp_g_depth`, learnt from every trial). Per-position multipliers
(width / seed width) were the alternative; they keep one distribution per name but still pool
different layers, which is the confusion this removes. Names changed with this scheme, so a
study started before it cannot be resumed.

`tpe_startup_trials(n_trials, n_seed_points)` sizes TPE's random start-up to the study (see its
docstring); the launcher passes it to `optuna.samplers.TPESampler(n_startup_trials=...)`.

This package knows Optuna's trial interface (`suggest_int/float/categorical`) and the models'
config fields; it never imports Ray, torch or `study/`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from models.config import FAMILIES, FAMILY_GAN, FAMILY_VAE, ConfigError, TrainConfig
from search_spaces import gan, vae
from search_spaces.common import (
    BATCH_SIZES,
    BETA1_RANGE,
    DEFAULT_WIDTH_RANGE,
    KL_BETA_RANGE,
    LATENT_RANGE,
    LR_RANGE,
    SPACE_KEY,
    SpaceOptions,
    geometric_widths,
    space_name,
    suggest_widths,
    tpe_startup_trials,
    train_config,
    width_name,
    width_point,
)

__all__ = [
    "BATCH_SIZES", "BETA1_RANGE", "DEFAULT_WIDTH_RANGE", "KL_BETA_RANGE", "LATENT_RANGE", "LR_RANGE",
    "SPACE_KEY", "SpaceOptions", "config_for_params", "define_by_run", "family_module",
    "geometric_widths", "seed_configs", "seed_points", "space_name", "suggest_widths",
    "tpe_startup_trials", "train_config", "width_name", "width_point",
]

FAMILY_MODULES: dict[str, ModuleType] = {FAMILY_GAN: gan, FAMILY_VAE: vae}


def family_module(family: str) -> ModuleType:
    if family not in FAMILIES:
        raise ConfigError(f"family={family!r}: choose one of {', '.join(FAMILIES)}.")
    return FAMILY_MODULES[family]


def define_by_run(family: str, options: SpaceOptions) -> Callable[[Any], dict[str, Any]]:
    """The family's space bound to `options`; a picklable partial, because Ray pickles the
    searcher (and its space) into the experiment directory for `--resume`."""
    return functools.partial(family_module(family).define, options=options)


def seed_points(family: str, options: SpaceOptions) -> list[dict[str, Any]]:
    return family_module(family).seed_points(options)


def config_for_params(family: str, params: dict[str, Any], options: SpaceOptions) -> TrainConfig:
    """Replay `define` on fixed parameters (e.g. a seed point) -> the TrainConfig it gives."""
    import optuna

    return train_config(family_module(family).define(optuna.trial.FixedTrial(params), options))


def seed_configs(family: str, options: SpaceOptions) -> list[TrainConfig]:
    """The seed studies' configurations as this study runs them (at options.width_scale)."""
    return [config_for_params(family, point, options) for point in seed_points(family, options)]
