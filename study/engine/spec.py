"""What every run of the study is told, typed: the base spec of a search, a replicate set and a
reproduction (`RunSpec`, saved as study.json), the Ray connection a command runs on (`RaySettings`),
and the one table of presets with its one chooser.

A command turns its flags into a frozen spec; nothing below the commands sees argparse. A spec's JSON
carries `schema` (SPEC_SCHEMA); a study.json written before it existed (no `schema` key) is schema 0
and reads the same way, the fields added since taking their defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any, Self

from models.config import FAMILY_GAN, FAMILY_VAE
from search_spaces import DEFAULT_WIDTH_RANGE
from study import smoke as SMOKE
from study.engine.preflight import LOOPBACK_HOST
from study.store import StudyStore

SCHEMA_KEY = "schema"
SPEC_SCHEMA = 1  # 0: a study.json without the key (written before the spec had a version)


class SpecFormatError(ValueError):
    """A spec's JSON that this version cannot read (not JSON, foreign keys, missing keys, a newer schema)."""


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """The settings every run of the study has: where it is written, what data and evaluation it uses,
    its resources and retries. Extended by the search (study/engine/plan.py StudyPlan), the replicates
    (followups/replicate_plan.py ReplicatePlan) and the reproduction (followups/reproduce_plan.py
    ReproducePlan)."""

    name: str
    max_epochs: int
    train_subset: int | None
    eval_samples: int
    iw_images: int | None  # test images behind a VAE's importance-weighted NLL (None: all)
    width_scale: float
    checkpoint_every: int
    cpus_per_trial: float
    gpus_per_trial: float | None  # None: 1 per trial when the cluster has GPUs, else 0
    max_failures: int
    keep_checkpoints: int
    data_dir: str
    storage_path: str  # absolute local path or URI
    preset: str

    @property
    def study_dir(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    @functools.cached_property
    def store(self) -> StudyStore:
        """The study directory (the run's Ray experiment) as the one object that owns its files, made
        once per spec (not a field: study.json holds the settings, not where they are read from)."""
        return StudyStore(self.study_dir)

    def to_json(self) -> str:
        return json.dumps({SCHEMA_KEY: SPEC_SCHEMA, **dataclasses.asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """The spec of `text`; SpecFormatError (a ValueError) naming what does not fit. JSON lists
        become tuples (the only sequences a spec holds)."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise SpecFormatError(f"not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise SpecFormatError(f"a JSON {type(raw).__name__}, not an object of settings")
        schema = raw.pop(SCHEMA_KEY, 0)
        if not isinstance(schema, int) or schema > SPEC_SCHEMA:
            raise SpecFormatError(f"{SCHEMA_KEY} {schema!r}: written by a newer ganvae-study (this one reads "
                                  f"up to {SPEC_SCHEMA})")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if foreign := sorted(set(raw) - set(fields)):
            raise SpecFormatError(f"settings a {cls.__name__} does not have: {', '.join(foreign)}")
        required = {name for name, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if missing := sorted(required - set(raw)):
            raise SpecFormatError(f"{cls.__name__} settings missing: {', '.join(missing)}")
        values: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value
                                  for key, value in raw.items()}
        return cls(**values)


@dataclass(frozen=True)
class RaySettings:
    """How a command runs on Ray, not what it runs: the cluster to join (None: start a local one),
    the local Ray's CPUs and dashboard, the console and the experiment trackers. Never saved: a
    resumed study may run on another cluster."""

    address: str | None = None
    num_cpus: int | None = None
    dashboard_host: str = LOOPBACK_HOST
    dashboard_port: int | None = None  # None: the default port, or the next free one
    trackers: tuple[str, ...] = ()
    verbose: bool = False

    @property
    def local(self) -> bool:
        """This command starts its own Ray (no --address)."""
        return not self.address


# --- the presets --------------------------------------------------------------------------------------
# Flags left unset take their value from the preset. "full" is the real study; "quick" a laptop
# CPU finishes in minutes (seed-width networks at most, a 4,000-image subset, at most 8 epochs,
# 1,000 FID samples, the VAE's binarized NLL on the first 500 test images);
# "smoke" is what the tests run (study/smoke.py: 1/8-width networks, 2,000 images, seconds per trial).
# A row's REPRODUCTION entry holds what a reproduction (study.reproduce) takes differently from the
# search, and its own settings (seeds, epoch counts); the rest of REPRODUCTION_KEYS it shares.
FULL_PRESET, QUICK_PRESET, SMOKE_PRESET = "full", "quick", "smoke"
REPRODUCTION = "reproduction"
REPRODUCTION_KEYS = ("train_subset", "eval_samples", "iw_images", "width_scale")
REPRODUCTION_SEEDS = 3  # seeds per configuration of a reproduction (--seeds)
PRESETS: dict[str, dict[str, Any]] = {
    FULL_PRESET: dict(trials=16, max_epochs=20, grace_period=2, reduction_factor=3, stop_signal="raw",
                      train_subset=None,
                      eval_samples=10_000, iw_images=None, width_scale=1.0, width_range=DEFAULT_WIDTH_RANGE,
                      batch_sizes=(32, 64, 128, 256),
                      reproduction=dict(seeds=REPRODUCTION_SEEDS)),
    # quick: the search lab's design for the time the 8-trial, first-rung-4 search took on 2 cores
    # (docs/search.md, "The quick preset's own design"): more trials, ASHA rungs at epochs 1 and 3 (factor
    # 3, raw FID); per family the trial count whose pick was best at about that compute (TPE, 2 at once)
    QUICK_PRESET: dict(trials={FAMILY_GAN: 12, FAMILY_VAE: 16}, max_epochs=8, grace_period=1,
                       reduction_factor=3, stop_signal="raw",
                       train_subset=4_000,
                       eval_samples=1_000, iw_images=500, width_scale=1.0, width_range=(0.25, 1.0),
                       batch_sizes=(32, 64, 128),
                       reproduction=dict(iw_images=2_000, seeds=REPRODUCTION_SEEDS)),
    SMOKE_PRESET: dict(trials=4, max_epochs=4, grace_period=1, reduction_factor=2, stop_signal="raw",
                       train_subset=SMOKE.STUDY_TRAIN_IMAGES, eval_samples=SMOKE.STUDY_EVAL_SAMPLES,
                       iw_images=SMOKE.IW_IMAGES, width_scale=SMOKE.WIDTH_SCALE, width_range=(0.5, 1.0),
                       batch_sizes=(64, 128),
                       # a reproduction's single runs: study/smoke.py's single-run numbers, 2 seeds
                       reproduction=dict(train_subset=SMOKE.TRAIN_IMAGES, eval_samples=SMOKE.EVAL_SAMPLES,
                                         seeds=2, epochs=tuple(range(1, SMOKE.EPOCHS + 1)))),
}


def choose_preset(quick: bool, smoke_test: bool) -> str:
    """The preset of a command's --quick / --smoke-test (mutually exclusive flags): else full."""
    return SMOKE_PRESET if smoke_test else QUICK_PRESET if quick else FULL_PRESET


def search_preset(name: str, family: str | None = None) -> dict[str, Any]:
    """A search's values of preset `name` (study.launch); with `family`, a per-family value (a dict by
    family, as the quick preset's trials) is that family's."""
    values = {key: value for key, value in PRESETS[name].items() if key != REPRODUCTION}
    if family is not None:
        values = {key: value[family] if isinstance(value, dict) else value for key, value in values.items()}
    return values


def preset_text(name: str) -> str:
    """Preset `name` in one line (--help): key=value, a per-family value as gan 12 / vae 16."""
    def shown(value: Any) -> str:
        return " / ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
    return ", ".join(f"{key}={shown(value)}" for key, value in search_preset(name).items())


def reproduction_preset(name: str) -> dict[str, Any]:
    """A reproduction's values of preset `name` (study.reproduce): the search's REPRODUCTION_KEYS,
    then what the row's REPRODUCTION entry says."""
    return {**{key: PRESETS[name][key] for key in REPRODUCTION_KEYS}, **PRESETS[name][REPRODUCTION]}
