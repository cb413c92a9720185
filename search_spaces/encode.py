"""A configuration of a family's space as a numeric vector, derived from the space itself.

`space_features(family, options)` runs the family's define-by-run `define` on a probe trial that
answers every `suggest_*` with its lowest (then its highest) value, once per architecture, and
reads off what the space searches: the architectures, each searched scalar with its range and
scale (log or linear), and each per-layer width stack with its depths and widths. Nothing about the
space is written here twice: a new parameter in `gan.py` or `vae.py` becomes a new feature.

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
from search_spaces.common import SpaceOptions
from search_spaces.gan import define as gan_define
from search_spaces.vae import define as vae_define

ARCH_PARAM = "arch"
UNUSED = -1.0  # a feature the configuration's architecture does not have


class _Probe:
    """An Optuna-like trial answering every suggestion at one end of its range; records the calls."""

    def __init__(self, end: str, arch: str | None = None) -> None:
        self.end, self.arch = end, arch
        self.calls: dict[str, tuple[str, Any, Any, bool]] = {}  # name -> (kind, low, high, log)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.calls[name] = ("categorical", tuple(choices), None, False)
        if name == ARCH_PARAM and self.arch is not None:
            return self.arch
        return choices[0] if self.end == "low" else choices[-1]

    def suggest_int(self, name: str, low: int, high: int, log: bool = False, step: int = 1) -> int:
        self.calls[name] = ("int", low, high, log)
        return low if self.end == "low" else high

    def suggest_float(self, name: str, low: float, high: float, log: bool = False, step: float | None = None
                      ) -> float:
        self.calls[name] = ("float", low, high, log)
        return low if self.end == "low" else high


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


def space_features(family: str, options: SpaceOptions) -> SpaceFeatures:
    """Probe the family's `define` at both ends of every range, per architecture."""
    define = {FAMILY_GAN: gan_define, FAMILY_VAE: vae_define}[family]
    probe = _Probe("low")
    define(probe, options)
    archs = probe.calls[ARCH_PARAM][1]
    scalars: dict[str, Scalar] = {}
    stacks: dict[str, dict[str, list[float]]] = {}
    stacks_of: dict[str, frozenset[str]] = {}
    for arch in archs:
        low_probe, high_probe = _Probe("low", arch), _Probe("high", arch)
        low, high = define(low_probe, options), define(high_probe, options)
        calls = {**low_probe.calls, **high_probe.calls}
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
            kind, lo, hi, log = calls.get(field, ("", low[field], high[field], False))
            if kind == "categorical":  # numeric choices (batch size): on a log scale
                lo, hi, log = min(lo), max(lo), all(c > 0 for c in lo)
            scalars[field] = Scalar(field, float(lo), float(hi), bool(log))
        stacks_of[arch] = frozenset(used)
    return SpaceFeatures(
        family=family, archs=tuple(archs), scalars=tuple(scalars.values()),
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
