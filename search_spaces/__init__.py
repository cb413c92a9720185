"""Optuna search spaces for both families, held as tables: an Optuna trial -> a plain config dict.

Each family module (`gan.py`, `vae.py`) declares its space as data: `STACKS`, the per-layer width
stacks (`WidthStack`: Optuna prefix, config field, architecture, depth range, how depths the seed
study did not use continue its widths), and `SCALARS` (`ScalarParam`: field, kind, range, log scale).
`space(options)` expands them into the table (`common.Space`), one row (`common.Param`) per Optuna
parameter: name, kind (int / float / categorical), range or choices, log scale, the condition under
which it is drawn (`when`), the configuration field it sets, and its value in each seed
configuration, read from `models.config.seed_model_config`. Everything else is derived from the
table, never written a second time:
  - `define(trial, options) -> dict`: define-by-run sampling. It walks the table in order, calls
    `trial.suggest_*` for each active row and returns the flat dict that
    `models.config.TrainConfig.from_dict` accepts (plus a nested `SPACE_KEY` entry that Ray Tune
    adds with the raw per-layer suggestions; see `train_config`);
  - `seed_points(options) -> list[dict]`: the Optuna parameters that reproduce the seed studies'
    own configurations; `study.launch` enqueues them so they are the first trials of every study;
  - `Param.distribution()`: the distribution Optuna stores in optuna.db for a row;
  - `scale_widths` (this module): the configuration's width fields are the table's stacks;
  - `encode.space_features` / `encode.encode`: the search lab's numeric encoding of a configuration.
The shared pieces (ranges, `SpaceOptions`, names, the table machinery, `train_config`) live in
`common.py`, which the family modules import; this package module re-exports them and dispatches on
the family.

Widths are searched per layer on a log scale around the seed study's value for that layer
(`width_range` times the seed width, 1/4x to 4x by default). `width_scale` shrinks the whole
space (and the seed points with it) for the `--quick` / `--smoke-test` presets, so "the seed
configuration" of a smoke test is the seed architecture at that scale, hyperparameters unchanged.
`common.scale_width` is the one rounding rule for a scaled width.

Width names are keyed by depth and position: `space/mlp_g_d3_w0` is the first layer of a
3-layer MLP generator and nothing else (its row is drawn when arch == "mlp" and
`space/mlp_g_depth` == 3). A depth-free name such as `space/mlp_g_0` would mean the
first layer of a 2-, 3- or 4-layer stack, whose seed widths (512, 256, 128) and so ranges
differ, and multivariate TPE would pool those observations as one parameter. With depth-keyed
names every name is one layer of one architecture with one distribution, at the price of TPE
learning each depth's widths from the trials of that depth only (the depth itself is one
shared parameter, `space/mlp_g_depth`, learnt from every trial). Per-position multipliers
(width / seed width) were the alternative; they keep one distribution per name but still pool
different layers, which is the confusion this removes. Names changed with this scheme, so a
study started before it cannot be resumed. The tables draw the same names, distributions and
values in the same order as the code before them (tests/test_search_space_compat.py), so studies
started before the tables resume.

`tpe_startup_trials(n_trials, n_seed_points)` sizes TPE's random start-up to the study (see its
docstring); the launcher passes it to `optuna.samplers.TPESampler(n_startup_trials=...)`.

This package knows Optuna (its trial interface and distributions) and the models' config fields;
it never imports Ray, torch or `study/`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import optuna

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
    Param,
    Space,
    SpaceOptions,
    geometric_widths,
    scale_width,
    space_name,
    tpe_startup_trials,
    train_config,
    width_name,
)

__all__ = [
    "BATCH_SIZES", "BETA1_RANGE", "DEFAULT_WIDTH_RANGE", "KL_BETA_RANGE", "LATENT_RANGE", "LR_RANGE",
    "SPACE_KEY", "Param", "Space", "SpaceOptions", "config_for_params", "define_by_run", "family_module",
    "geometric_widths", "scale_width", "scale_widths", "seed_configs", "seed_points", "space", "space_name",
    "tpe_startup_trials", "train_config", "width_name",
]

FAMILY_MODULES: dict[str, ModuleType] = {FAMILY_GAN: gan, FAMILY_VAE: vae}


def family_module(family: str) -> ModuleType:
    if family not in FAMILIES:
        raise ConfigError(f"family={family!r}: choose one of {', '.join(FAMILIES)}.")
    return FAMILY_MODULES[family]


def space(family: str, options: SpaceOptions) -> Space:
    """The family's table at these options."""
    return family_module(family).space(options)


def define_by_run(family: str, options: SpaceOptions) -> Callable[[Any], dict[str, Any]]:
    """The family's space bound to `options`; a picklable partial, because Ray pickles the
    searcher (and its space) into the experiment directory for `--resume`."""
    return functools.partial(family_module(family).define, options=options)


def seed_points(family: str, options: SpaceOptions) -> list[dict[str, Any]]:
    return family_module(family).seed_points(options)


def config_for_params(family: str, params: dict[str, Any], options: SpaceOptions) -> TrainConfig:
    """Replay `define` on fixed parameters (e.g. a seed point) -> the TrainConfig it gives."""
    return train_config(family_module(family).define(optuna.trial.FixedTrial(params), options))


def seed_configs(family: str, options: SpaceOptions) -> list[TrainConfig]:
    """The seed studies' configurations as this study runs them (at options.width_scale)."""
    return [config_for_params(family, point, options) for point in seed_points(family, options)]


def scale_widths(config: TrainConfig, factor: float) -> TrainConfig:
    """Every per-layer width field of the config's family (its table's stacks, whether or not its
    architecture uses them) times `factor`, each width rounded by `scale_width`."""
    flat = config.to_dict()
    fields = space(config.family, SpaceOptions()).width_fields
    return config.replace(**{k: [scale_width(w, factor) for w in flat[k]] for k in fields})
