"""What both families' spaces share: the table's rows (`Param`) and the declarations they are
built from (`ScalarParam`, `WidthStack`), the `Space` that derives sampling, configurations and seed
points from a table, the ranges, `SpaceOptions`, width scaling, depth-keyed width names, the TPE
start-up rule and `train_config`. The family modules import from here, never from the package, so
`search_spaces/__init__.py` can import them at the top without an import cycle.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from models.config import ARCHS, ConfigError, TrainConfig, seed_model_config

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
        return scale_width(seed_width, self.width_scale)

    def width_bounds(self, seed_width: int) -> tuple[int, int]:
        base = self.base_width(seed_width)
        low = max(1, math.floor(base * self.width_range[0]))
        return low, max(low, math.ceil(base * self.width_range[1]))


def scale_width(width: int, factor: float) -> int:
    """One layer's width times `factor`, rounded, at least 1 unit: the only width scaling there is
    (a space's `width_scale`, `study.train --width-scale`, `scale_widths`, the seed depths' rule)."""
    return max(1, round(width * factor))


def space_name(*parts: object) -> str:
    """The Optuna name of a layer parameter: space_name('dcgan_d', 'depth') -> 'space/dcgan_d_depth'."""
    return f"{SPACE_KEY}/" + "_".join(str(p) for p in parts)


def width_name(prefix: str, depth: int, position: int) -> str:
    """The width of layer `position` of a `depth`-layer stack: width_name('mlp_g', 3, 0) ->
    'space/mlp_g_d3_w0'. Keyed by depth, so one name is always one layer (and one range)."""
    return space_name(prefix, f"d{depth}", f"w{position}")


def geometric_widths(anchor: int, depth: int, ratio: float) -> list[int]:
    """Seed widths for a depth the seed study did not use, continuing its doubling/halving pattern:
    geometric_widths(1024, 4, 0.5) -> [1024, 512, 256, 128]."""
    return [scale_width(anchor, ratio**i) for i in range(depth)]


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


# --- the table ------------------------------------------------------------------------------------
# A family's space is a table with one row (`Param`) per Optuna parameter, in the order `define`
# draws them. The family modules declare it (`ScalarParam`s and `WidthStack`s); `build_space`
# expands the declarations for one SpaceOptions, reading every seed value from models.config.

INT, FLOAT, CATEGORICAL = "int", "float", "categorical"  # Param.kind: Optuna's three distributions
VALUE, DEPTH, WIDTH = "value", "depth", "width"  # Param.role: what the value is in the configuration
ARCH_PARAM = "arch"  # the architecture: the first row of every table, on which the others depend
BATCH_SIZE = "batch_size"  # the last row; its choices are SpaceOptions.batch_sizes
FIRST, LAST = "first", "last"  # WidthStack.anchor: the seed layer that other depths continue from

Condition = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Param:
    """One row of a space's table: an Optuna parameter, where it goes, and when it is drawn.

    kind INT/FLOAT: `low`..`high` inclusive, on a log scale if `log`; CATEGORICAL: `choices`.
    `when`: the row is active (drawn) only if each named parameter took the given value, e.g.
    (("arch", "mlp"), ("space/mlp_g_depth", 3)) for the first layer of a 3-layer MLP generator.
    `field`/`role`: the flat TrainConfig key it sets, as its value (VALUE), as the number of layers
    (DEPTH, which the WIDTH rows of that depth then fill) or as the width of layer `position` (WIDTH).
    `seeds`: (architecture, value) for each seed configuration this row is part of, as drawn at these
    options (widths scaled by `width_scale`); read from `models.config.seed_model_config`.
    """

    name: str
    kind: str
    low: Any = None
    high: Any = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: Condition = ()
    field: str = ""
    role: str = VALUE
    position: int = 0
    seeds: tuple[tuple[str, Any], ...] = ()

    def active(self, params: Mapping[str, Any]) -> bool:
        return all(name in params and params[name] == value for name, value in self.when)

    def suggest(self, trial: Any) -> Any:
        """Draw this row from an Optuna trial (or anything with its `suggest_*` methods)."""
        if self.kind == CATEGORICAL:
            return trial.suggest_categorical(self.name, self.choices)
        if self.kind == INT:
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The distribution Optuna stores for this row (what `suggest` asks it for)."""
        if self.kind == CATEGORICAL:
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.kind == INT:
            return optuna.distributions.IntDistribution(self.low, self.high, log=self.log)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)

    def end(self, high: bool) -> Any:
        """The row's lowest (or highest) value; a categorical's first (or last) choice."""
        if self.kind == CATEGORICAL:
            return self.choices[-1] if high else self.choices[0]
        return self.high if high else self.low


@dataclass(frozen=True)
class ScalarParam:
    """A searched configuration field with one value, drawn for every architecture under its own name."""

    field: str
    kind: str
    bounds: tuple[Any, Any]
    log: bool = False


@dataclass(frozen=True)
class WidthStack:
    """A searched tuple of layer widths (`field`) of one architecture, one Optuna row per layer and depth.

    Rows are named width_name(prefix, depth, position). `depths`: inclusive range of the number of
    layers, drawn as space_name(prefix, "depth"); None keeps the seed's depth and draws no depth.
    Each layer's range is `SpaceOptions.width_bounds` of its seed width: at the seed configuration's
    depth its own widths; at another depth the seed stack continued from its `anchor` layer (FIRST or
    LAST), `ratio` times per layer away from it (geometric_widths).
    """

    prefix: str
    field: str
    arch: str
    depths: tuple[int, int] | None = None
    anchor: str = FIRST
    ratio: float = 1.0

    def seed_widths(self, seed: Sequence[int], depth: int) -> list[int]:
        """The unscaled seed width of each layer of a `depth`-layer stack, given the seed's stack."""
        if depth == len(seed):
            return list(seed)
        if self.anchor == FIRST:
            return geometric_widths(seed[0], depth, self.ratio)
        return geometric_widths(seed[-1], depth, self.ratio)[::-1]


@dataclass(frozen=True)
class Space:
    """A family's table at one SpaceOptions; everything a search needs is derived from its rows."""

    family: str
    params: tuple[Param, ...]
    options: SpaceOptions

    def row(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    @property
    def archs(self) -> tuple[str, ...]:
        return self.row(ARCH_PARAM).choices

    @property
    def width_fields(self) -> tuple[str, ...]:
        """The configuration's per-layer width fields that this space searches."""
        return tuple(dict.fromkeys(p.field for p in self.params if p.role == WIDTH))

    def walk(self, choose: Callable[[Param], Any]) -> dict[str, Any]:
        """Go through the table in order, `choose` a value for each row active so far -> the parameters."""
        params: dict[str, Any] = {}
        for row in self.params:
            if row.active(params):
                params[row.name] = choose(row)
        return params

    def define(self, trial: Any) -> dict[str, Any]:
        """Define-by-run: draw every active row from the trial -> the flat TrainConfig dict."""
        return self.config(self.walk(lambda row: row.suggest(trial)))

    def config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The flat TrainConfig dict of drawn parameters: the seed configuration of their architecture,
        with every drawn field, width and the options' fixed model and loop fields set."""
        model = seed_model_config(self.family, params[ARCH_PARAM])
        model_fields = {f.name for f in dataclasses.fields(model)}
        changes: dict[str, Any] = {}
        loop: dict[str, Any] = {}
        widths: dict[str, list[int]] = {}
        for row in self.params:
            if row.name not in params or row.role == DEPTH or row.name == ARCH_PARAM:
                continue
            value = params[row.name]
            if row.role == WIDTH:
                widths.setdefault(row.field, []).append(value)  # rows are in layer order
            elif row.field in model_fields:
                changes[row.field] = value
            else:
                loop[row.field] = value
        model = dataclasses.replace(model, **{k: tuple(v) for k, v in widths.items()}, **changes)
        model = dataclasses.replace(model, **self.options.model)
        return TrainConfig(model=model, **loop, **self.options.loop).to_dict()

    def seed_points(self) -> list[dict[str, Any]]:
        """The parameters that reproduce each architecture's seed configuration (at width_scale)."""
        return [{row.name: dict(row.seeds)[arch] for row in self.params if arch in dict(row.seeds)}
                for arch in self.archs]


def build_space(family: str, stacks: Sequence[WidthStack], scalars: Sequence[ScalarParam],
                options: SpaceOptions) -> Space:
    """The table: the architecture, each stack's depth and widths, the scalars, the batch size."""
    archs = ARCHS[family]
    seed = {arch: TrainConfig(model=seed_model_config(family, arch)).to_dict() for arch in archs}
    on_every_arch = tuple((arch, arch) for arch in archs)
    rows = [Param(ARCH_PARAM, CATEGORICAL, choices=archs, field=ARCH_PARAM, seeds=on_every_arch)]
    for stack in stacks:
        seed_stack = seed[stack.arch][stack.field]
        on_arch: Condition = ((ARCH_PARAM, stack.arch),)
        depth_name = space_name(stack.prefix, "depth")
        if stack.depths is None:
            depths = [len(seed_stack)]
        else:
            depths = list(range(stack.depths[0], stack.depths[1] + 1))
            rows.append(Param(depth_name, INT, *stack.depths, when=on_arch, field=stack.field, role=DEPTH,
                              seeds=((stack.arch, len(seed_stack)),)))
        for depth in depths:
            when = on_arch if stack.depths is None else on_arch + ((depth_name, depth),)
            for i, width in enumerate(stack.seed_widths(seed_stack, depth)):
                low, high = options.width_bounds(width)
                seeds = ((stack.arch, options.base_width(width)),) if depth == len(seed_stack) else ()
                rows.append(Param(width_name(stack.prefix, depth, i), INT, low, high, log=True, when=when,
                                  field=stack.field, role=WIDTH, position=i, seeds=seeds))
    for scalar in scalars:
        rows.append(Param(scalar.field, scalar.kind, *scalar.bounds, log=scalar.log, field=scalar.field,
                          seeds=tuple((arch, seed[arch][scalar.field]) for arch in archs)))
    rows.append(Param(BATCH_SIZE, CATEGORICAL, choices=tuple(options.batch_sizes), field=BATCH_SIZE,
                      seeds=tuple((arch, seed[arch][BATCH_SIZE]) for arch in archs)))
    return Space(family, tuple(rows), options)
