"""What both families' spaces share: the ranges, `SpaceOptions`, depth-keyed width names, the
TPE start-up rule and `train_config`. The family modules import from here, never from the
package, so `search_spaces/__init__.py` can import them at the top without an import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models.config import ConfigError, TrainConfig

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

# TPE start-up: random trials after the seed points, as a share of the rest of the study
TPE_RANDOM_SHARE = 0.25
TPE_RANDOM_MIN = 2
TPE_RANDOM_MAX = 10  # Optuna's own default n_startup_trials


@dataclass(frozen=True)
class SpaceOptions:
    """What a study varies, and the loop settings every trial shares."""

    width_scale: float = 1.0  # base width of each layer = seed width x width_scale
    width_range: tuple[float, float] = DEFAULT_WIDTH_RANGE  # searched: base x [low, high], log scale
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    # TrainConfig loop fields fixed for the whole study (epochs, seed, eval_samples, ...)
    loop: dict[str, Any] = field(default_factory=dict)
    # model config fields fixed for the whole study (the GAN's ema_decay)
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        low, high = self.width_range
        if not (self.width_scale > 0 and 0 < low <= 1.0 <= high):
            raise ConfigError(
                f"width_scale={self.width_scale}, width_range={self.width_range}: the scale must be > 0 "
                "and the range must contain 1.0 (the seed width), e.g. (0.25, 4.0)."
            )
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise ConfigError(
                f"batch_sizes={self.batch_sizes!r}: give positive integers, e.g. (32, 64, 128)."
            )

    def base_width(self, seed_width: int) -> int:
        return max(1, round(seed_width * self.width_scale))

    def width_bounds(self, seed_width: int) -> tuple[int, int]:
        base = self.base_width(seed_width)
        low = max(1, math.floor(base * self.width_range[0]))
        return low, max(low, math.ceil(base * self.width_range[1]))


def space_name(*parts: object) -> str:
    """The Optuna name of a layer parameter: space_name('dcgan_d', 'depth') -> 'space/dcgan_d_depth'."""
    return f"{SPACE_KEY}/" + "_".join(str(p) for p in parts)


def width_name(prefix: str, depth: int, position: int) -> str:
    """The width of layer `position` of a `depth`-layer stack: width_name('mlp_g', 3, 0) ->
    'space/mlp_g_d3_w0'. Keyed by depth, so one name is always one layer (and one range)."""
    return space_name(prefix, f"d{depth}", f"w{position}")


def suggest_widths(trial, prefix: str, seed_widths: Sequence[int], options: SpaceOptions) -> list[int]:
    """One log-scale integer per layer, around that layer's seed width."""
    widths = []
    for i, seed_width in enumerate(seed_widths):
        low, high = options.width_bounds(seed_width)
        widths.append(trial.suggest_int(width_name(prefix, len(seed_widths), i), low, high, log=True))
    return widths


def width_point(prefix: str, seed_widths: Sequence[int], options: SpaceOptions) -> dict[str, int]:
    """The Optuna parameters of `suggest_widths` that give the (scaled) seed widths."""
    depth = len(seed_widths)
    return {width_name(prefix, depth, i): options.base_width(w) for i, w in enumerate(seed_widths)}


def geometric_widths(anchor: int, depth: int, ratio: float) -> list[int]:
    """Seed widths for a depth the seed study did not use, continuing its doubling/halving pattern:
    geometric_widths(1024, 4, 0.5) -> [1024, 512, 256, 128]."""
    return [max(1, round(anchor * ratio**i)) for i in range(depth)]


def tpe_startup_trials(n_trials: int, n_seed_points: int) -> int:
    """TPESampler's `n_startup_trials` for a study of `n_trials` whose first `n_seed_points` trials
    are the enqueued seed configurations (Optuna counts those among the start-up trials).

    After the seeds, r = clamp(round(0.25 * (n_trials - n_seed_points)), 2, 10) random trials,
    never more than the trials left: a quarter of the guided budget explores, at least 2 so that
    TPE's first model rests on the 2 seeds plus 2 unbiased draws, and at most Optuna's default 10,
    beyond which TPE's Parzen estimators gain little from more random points. Optuna's fixed 10
    would leave an 8-trial study no guided trial at all; this gives it 4 (2 seeds, 2 random, 4 TPE),
    a 16-trial study 10 (14 left -> 4 random), a 64-trial study 52.
    """
    if n_trials < 0 or n_seed_points < 0:
        raise ValueError(f"n_trials={n_trials}, n_seed_points={n_seed_points}: both must be >= 0.")
    left = max(0, n_trials - n_seed_points)
    share = math.floor(TPE_RANDOM_SHARE * left + 0.5)  # round half up (Python's round is half-even)
    return n_seed_points + min(left, max(TPE_RANDOM_MIN, min(TPE_RANDOM_MAX, share)))


def train_config(tune_config: dict[str, Any]) -> TrainConfig:
    """A trial's config dict (from `define`, or a Ray Tune trial config) -> TrainConfig."""
    flat = {k: v for k, v in tune_config.items() if k != SPACE_KEY and not k.startswith(SPACE_KEY + "/")}
    return TrainConfig.from_dict(flat)
