"""A configuration of a family's space as a numeric vector, read off the space's table.

`space_features(family, options)` walks the family's table (`search_spaces.common.Space`) once per
architecture at the low corner (every active row at its lowest value, a categorical at its first
choice) and once at the high corner, and reads off what the space searches: the architectures, each
searched scalar with its range and scale (log or linear), and each per-layer width stack with its
depths and widths (from the smallest depth at its low bounds to the largest at its high bounds).
Nothing about the space is written here twice: a new row in `gan.py` or `vae.py` becomes a new feature.

`encode(features, config) -> vector` maps a flat TrainConfig dict (what `define` returns, or a
trial's `config_json`) to [0, 1] features: one-hot architecture, each scalar on its scale, and per
width stack its depth and mean log width. A stack the architecture does not use reads UNUSED,
apart from every real value. The search lab's surrogate (benchmarks/lab_surrogate.py) is fitted on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.config import FAMILY_GAN, FAMILY_VAE
from search_spaces.common import ARCH_PARAM, CATEGORICAL, VALUE, Space, SpaceOptions
from search_spaces.gan import space as gan_space
from search_spaces.vae import space as vae_space

SPACES = {FAMILY_GAN: gan_space, FAMILY_VAE: vae_space}
UNUSED = -1.0  # a feature the configuration's architecture does not have


@dataclass(frozen=True)
class Scalar:
    """A searched TrainConfig field with one value: its range and scale."""

    field: str
    low: float
    high: float
    log: bool


@dataclass(frozen=True)
class Stack:
    """A searched per-layer width field (a tuple of widths): its depth and log-width ranges."""

    field: str
    depths: tuple[int, int]
    log_widths: tuple[float, float]


@dataclass(frozen=True)
class SpaceFeatures:
    """What `encode` needs of a family's space (from `space_features`)."""

    family: str
    archs: tuple[str, ...]
    scalars: tuple[Scalar, ...]
    stacks: tuple[Stack, ...]
    stacks_of: Mapping[str, frozenset[str]]  # arch -> the stack fields it searches

    @property
    def names(self) -> list[str]:
        return ([f"{ARCH_PARAM}={a}" for a in self.archs] + [s.field for s in self.scalars]
                + [f"{s.field}:{part}" for s in self.stacks for part in ("depth", "log_width")])


def _mean_log(widths: Sequence[int]) -> float:
    return float(np.mean(np.log(np.asarray(widths, dtype=float))))


def _corner(space: Space, arch: str, high: bool) -> dict[str, Any]:
    """The flat config of `arch` with every other active row at its lowest (or highest) value."""
    return space.config(space.walk(lambda row: arch if row.name == ARCH_PARAM else row.end(high)))


def space_features(family: str, options: SpaceOptions) -> SpaceFeatures:
    """The family's table at its low and high corners, per architecture."""
    space: Space = SPACES[family](options)
    values = {row.field: row for row in space.params if row.role == VALUE}
    scalars: dict[str, Scalar] = {}
    stacks: dict[str, dict[str, list[float]]] = {}
    stacks_of: dict[str, frozenset[str]] = {}
    for arch in space.archs:
        low, high = _corner(space, arch, high=False), _corner(space, arch, high=True)
        used = set()
        for field in sorted(low):
            if field == ARCH_PARAM or low[field] == high[field]:
                continue  # not searched (for this architecture)
            if isinstance(low[field], list | tuple):
                used.add(field)
                entry = stacks.setdefault(field, {"depth": [], "log_width": []})
                for widths in (low[field], high[field]):
                    entry["depth"].append(len(widths))
                    entry["log_width"].append(_mean_log(widths))
                    entry["log_width"] += [math.log(min(widths)), math.log(max(widths))]
                continue
            row = values[field]
            lo, hi, log = row.low, row.high, row.log
            if row.kind == CATEGORICAL:  # numeric choices (batch size): on a log scale
                lo, hi, log = min(row.choices), max(row.choices), all(c > 0 for c in row.choices)
            scalars[field] = Scalar(field, float(lo), float(hi), bool(log))
        stacks_of[arch] = frozenset(used)
    return SpaceFeatures(
        family=family, archs=tuple(space.archs), scalars=tuple(scalars.values()),
        stacks=tuple(Stack(f, (min(e["depth"]), max(e["depth"])), (min(e["log_width"]), max(e["log_width"])))
                     for f, e in stacks.items()),
        stacks_of=stacks_of)


def _unit(value: float, low: float, high: float) -> float:
    return 0.5 if high <= low else float(np.clip((value - low) / (high - low), 0.0, 1.0))


def encode(features: SpaceFeatures, config: Mapping[str, Any]) -> np.ndarray:
    """A flat TrainConfig dict -> its feature vector [len(features.names)] in [0, 1] (UNUSED: -1)."""
    arch = config[ARCH_PARAM]
    vector = [1.0 if arch == a else 0.0 for a in features.archs]
    for s in features.scalars:
        value = float(config[s.field])
        vector.append(_unit(math.log(value), math.log(s.low), math.log(s.high)) if s.log
                      else _unit(value, s.low, s.high))
    for st in features.stacks:
        if st.field not in features.stacks_of.get(arch, frozenset()):
            vector += [UNUSED, UNUSED]
            continue
        widths = config[st.field]
        vector += [_unit(len(widths), *st.depths), _unit(_mean_log(widths), *st.log_widths)]
    return np.asarray(vector, dtype=float)
