"""Optuna search spaces for both families: an Optuna trial -> a plain config dict.

Each family module (`gan.py`, `vae.py`) defines
  - `define(trial, options) -> dict`: a define-by-run space. It calls `trial.suggest_*` and
    returns the flat dict that `models.config.TrainConfig.from_dict` accepts (plus a nested
    `SPACE_KEY` entry that Ray Tune adds with the raw per-layer suggestions; see `train_config`).
  - `seed_points(options) -> list[dict]`: the Optuna parameters that reproduce the seed studies'
    own configurations; `study.launch` enqueues them so they are the first trials of every study.

Widths are searched per layer on a log scale around the seed study's value for that layer
(`width_range` times the seed width, 1/4x to 4x by default). `width_scale` shrinks the whole
space (and the seed points with it) for the `--quick` / `--smoke-test` presets, so "the seed
configuration" of a smoke test is the seed architecture at that scale, hyperparameters unchanged.

This package knows Optuna's trial interface (`suggest_int/float/categorical`) and the models'
config fields; it never imports Ray, torch or `study/`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.config import FAMILIES, FAMILY_GAN, ConfigError, TrainConfig

# Optuna names for per-layer widths and depths start with this prefix and a "/". Ray's
# OptunaSearch unflattens "/" names, so they land under config[SPACE_KEY] in a Tune trial's
# config, apart from the TrainConfig fields, and `train_config` drops them.
SPACE_KEY = "space"

LATENT_RANGE = (2, 128)  # log scale
LR_RANGE = (1e-5, 1e-2)  # log scale, for lr, lr_g and lr_d
BETA1_RANGE = (0.0, 0.95)
KL_BETA_RANGE = (0.25, 4.0)  # log scale; 1.0 is the true ELBO
BATCH_SIZES = (32, 64, 128, 256)
DEFAULT_WIDTH_RANGE = (0.25, 4.0)


@dataclass(frozen=True)
class SpaceOptions:
    """What a study varies, and the loop settings every trial shares."""

    width_scale: float = 1.0  # base width of each layer = seed width x width_scale
    width_range: tuple[float, float] = DEFAULT_WIDTH_RANGE  # searched: base x [low, high], log scale
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    # TrainConfig loop fields fixed for the whole study (epochs, seed, eval_samples, ...)
    loop: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        low, high = self.width_range
        if not (self.width_scale > 0 and 0 < low <= 1.0 <= high):
            raise ConfigError(
                f"width_scale={self.width_scale}, width_range={self.width_range}: the scale must be > 0 "
                "and the range must contain 1.0 (the seed width), e.g. (0.25, 4.0)."
            )
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise ConfigError(f"batch_sizes={self.batch_sizes!r}: give positive integers, e.g. (32, 64, 128).")

    def base_width(self, seed_width: int) -> int:
        return max(1, round(seed_width * self.width_scale))

    def width_bounds(self, seed_width: int) -> tuple[int, int]:
        base = self.base_width(seed_width)
        low = max(1, math.floor(base * self.width_range[0]))
        return low, max(low, math.ceil(base * self.width_range[1]))


def space_name(*parts: object) -> str:
    """The Optuna name of a per-layer parameter, e.g. space_name('dcgan', 'd', 2) -> 'space/dcgan_d_2'."""
    return f"{SPACE_KEY}/" + "_".join(str(p) for p in parts)


def suggest_widths(trial, prefix: str, seed_widths: Sequence[int], options: SpaceOptions) -> list[int]:
    """One log-scale integer per layer, around that layer's seed width."""
    widths = []
    for i, seed_width in enumerate(seed_widths):
        low, high = options.width_bounds(seed_width)
        widths.append(trial.suggest_int(space_name(prefix, i), low, high, log=True))
    return widths


def width_point(prefix: str, seed_widths: Sequence[int], options: SpaceOptions) -> dict[str, int]:
    """The Optuna parameters of `suggest_widths` that give the (scaled) seed widths."""
    return {space_name(prefix, i): options.base_width(w) for i, w in enumerate(seed_widths)}


def geometric_widths(anchor: int, depth: int, ratio: float) -> list[int]:
    """Seed widths for a depth the seed study did not use, continuing its doubling/halving pattern:
    geometric_widths(1024, 4, 0.5) -> [1024, 512, 256, 128]."""
    return [max(1, round(anchor * ratio**i)) for i in range(depth)]


def train_config(tune_config: dict[str, Any]) -> TrainConfig:
    """A trial's config dict (from `define`, or a Ray Tune trial config) -> TrainConfig."""
    flat = {k: v for k, v in tune_config.items() if k != SPACE_KEY and not k.startswith(SPACE_KEY + "/")}
    return TrainConfig.from_dict(flat)


def family_module(family: str):
    if family not in FAMILIES:
        raise ConfigError(f"family={family!r}: choose one of {', '.join(FAMILIES)}.")
    if family == FAMILY_GAN:
        from search_spaces import gan

        return gan
    from search_spaces import vae

    return vae


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
