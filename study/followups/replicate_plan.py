"""Which replicates a study gets: its best configurations and its seed configurations, the new seeds,
the spec a second call must match; checked before Ray starts (study/followups/replicate_run.py runs them;
`python -m study.replicate`, study/replicate.py, is the command).

    python -m study.replicate results/gan-quick --top 3 --seeds 5
    python -m study.launch --family gan --quick --replicate-top 2 --replicate-seeds 3   # right after a search

Which configurations: the K trials with the lowest final validation FID (R.SELECTION_METRIC, the
selection rule of R.best_trial; ties keep trial order), plus the study's seed-configuration trials
(R.SEED_CONFIG), each configuration once (a trial identical to one already chosen is skipped, and
the K are K distinct configurations).
Which seeds: study seed + 1, ..., study seed + S (the study trained every trial with its own seed,
study.json's `seed`, so every replicate seed is new; the same S seeds for every configuration, so
configurations are compared on common seeds). Every run goes to the end: FIFO scheduler, no early
stopping, the configuration's epochs (the study's --max-epochs) unless --epochs overrides them.
It runs through Ray Tune with the study's resources, retries and storage (study.json): the Ray
experiment is STUDY_DIR/replicates/ (one trial directory per run, the artifacts of a search trial).

Resuming is automatic: run the same command again after an interruption (Ctrl-C, a crash) and
it continues the experiment in STUDY_DIR/replicates/, re-running nothing that finished; a run that
was cut short continues from its last checkpoint. STUDY_DIR/replicates/replicates.json records the
runs; a second call that asks for other runs (other --top/--seeds/--epochs) is refused (exit 2)
rather than mixed in.

Output: STUDY_DIR/replicates.parquet, one row per (configuration, seed) with the columns of
trials.parquet (the same row building, study.export.trial_rows), plus R.SOURCE_TRIAL_ID (the
trials.parquet trial re-trained) and R.REPLICATE_SEED; its TRIAL_ID is the run's own Tune id,
SEED the replicate seed, SEED_CONFIG the source trial's. `finalise_replicates` is the one place
the rows are completed before they are written (later metrics, e.g. Inception FID, hook in there).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from models.config import ConfigError, TrainConfig
from study import results as R
from study.engine.plan import StudyPlan
from study.engine.spec import RunSpec
from study.store import StudyStore, normalize_storage_path

DEFAULT_TOP = 3
DEFAULT_SEEDS = 5
REPLICATE_DIR_PREFIX = "replicate"  # STUDY_DIR/replicates/replicate_0001_<id>/
EPOCHS = "epochs"  # TrainConfig's epoch field


@dataclass(frozen=True, kw_only=True)
class ReplicatePlan(RunSpec):
    """The replicates of one finished search, a run of their own (a RunSpec, study/engine/spec.py): Ray's
    experiment STUDY_DIR/replicates/ (storage_path: the study directory as given now, name:
    R.REPLICATES_DIR, so `study_dir` is the experiment's), with the search's data, evaluation,
    resources and retries (its study.json) and the configurations' epochs (--epochs, else the search's
    max_epochs); which runs: the `top` best configurations and the seed configurations, `seeds` new
    seeds each. Never saved: replicates.json records the runs (replicates_spec)."""

    study: str  # the search's name (the rows' study column)
    family: str
    study_seed: int  # the search's seed; the replicate seeds follow it (replicate_seeds)
    expect_gpus: int | None
    suite_every: int
    top: int
    seeds: int
    epochs: int | None  # --epochs (None: the configurations' own)

    @property
    def source_dir(self) -> str:
        """The searched study's directory (trials.parquet, study.json, replicates.parquet)."""
        return self.storage_path

    @functools.cached_property
    def source(self) -> StudyStore:
        """The searched study's directory, whose replicates.parquet the rows go to (`store`, the
        replicates' Ray experiment, is its replicates/)."""
        return StudyStore(self.storage_path)

    @classmethod
    def of(cls, search: StudyPlan, study: StudyStore, top: int, seeds: int,
           epochs: int | None) -> ReplicatePlan:
        """The replicates of `search`, the study found at `study`."""
        shared: dict[str, Any] = {f.name: getattr(search, f.name) for f in dataclasses.fields(RunSpec)}
        shared |= dict(name=R.REPLICATES_DIR, storage_path=normalize_storage_path(study.uri),
                       max_epochs=epochs or search.max_epochs)
        return cls(**shared, study=search.name, family=search.family, study_seed=search.seed,
                   expect_gpus=search.expect_gpus, suite_every=search.suite_every, top=top, seeds=seeds,
                   epochs=epochs)


@dataclass(frozen=True)
class ReplicateRun:
    """One replicate: a source trial's configuration, trained with a new seed."""

    source_trial_id: str
    seed: int
    seed_config: bool
    config: TrainConfig  # the source's configuration with the replicate seed (and --epochs)


def replicate_seeds(study_seed: int, seeds: int) -> list[int]:
    """The replicate seeds: study seed + 1, ..., study seed + S (never the study's own seed)."""
    return [study_seed + 1 + i for i in range(seeds)]


def _config_key(config: TrainConfig) -> str:
    """A configuration up to its seed: identical keys are the same configuration."""
    return config.replace(seed=0).to_json()


def select_sources(trials: pd.DataFrame, top: int) -> list[tuple[str, TrainConfig, bool]]:
    """(source trial id, configuration, is a seed configuration): the `top` distinct configurations
    with the lowest R.SELECTION_METRIC (finite values only, ties in trial order), then the
    seed-configuration trials not among them."""
    ranked = R.ranked(trials)
    is_seed = trials[R.SEED_CONFIG].fillna(False).astype(bool) if R.SEED_CONFIG in trials else False
    seeds = trials[is_seed] if R.SEED_CONFIG in trials else trials[:0]
    sources: list[tuple[str, TrainConfig, bool]] = []
    seen: set[str] = set()
    for rows, limit in ((ranked, top), (seeds, len(seeds))):
        taken = 0
        for row in rows.to_dict("records"):
            config = TrainConfig.from_json(row[R.CONFIG_JSON])
            if taken == limit:
                break
            if _config_key(config) in seen:  # a copy of a configuration already chosen
                continue
            seen.add(_config_key(config))
            sources.append((str(row[R.TRIAL_ID]), config, bool(row.get(R.SEED_CONFIG, False))))
            taken += 1
    return sources


def plan_runs(plan: StudyPlan, trials: pd.DataFrame, top: int, seeds: int,
              epochs: int | None = None) -> list[ReplicateRun]:
    """Every (configuration, seed) run, configurations in selection order."""
    runs = []
    for source, config, is_seed in select_sources(trials, top):
        changes: dict[str, Any] = {"seed": 0}
        if epochs is not None:
            changes[EPOCHS] = epochs
        for seed in replicate_seeds(plan.seed, seeds):
            changes["seed"] = seed
            runs.append(ReplicateRun(source, seed, is_seed, config.replace(**changes)))
    return runs


def longest_first(runs: list[ReplicateRun], trials: pd.DataFrame) -> list[ReplicateRun]:
    """The runs in the order to start them: the longest first (its source trial's training seconds per
    epoch times the run's epochs; a source without them first, as unknown), ties in planned order.
    With fewer slots than runs this keeps a slot from idling at the end while one long run finishes
    alone (longest-processing-time-first); the runs and their rows are the same, only the start
    order changes."""
    source = trials.set_index(trials[R.TRIAL_ID].astype(str))

    def expected(run: ReplicateRun) -> float:
        if run.source_trial_id not in source.index:
            return math.inf
        row = source.loc[run.source_trial_id]
        per_epoch = float(row[R.TRAIN_SECONDS]) / max(1.0, float(row[R.EPOCHS_RUN]))
        return per_epoch * run.config.epochs if math.isfinite(per_epoch) else math.inf

    return sorted(runs, key=lambda run: -expected(run))


# --- the study directory ------------------------------------------------------------------------------
def read_study(study: StudyStore | str) -> tuple[StudyStore, StudyPlan, pd.DataFrame]:
    """The study's store, plan and trials table; ConfigError naming what is missing."""
    store = StudyStore.of(study)
    for name in (R.STUDY_JSON, R.TRIALS_FILE):
        if not store.has(name):
            raise ConfigError(f"{store} holds no {name}: pass the directory of a finished study "
                              "(results/<name>/ from python -m study.launch; resume an interrupted study "
                              "with --resume first).")
    try:
        plan = StudyPlan.from_json(store.read_text(R.STUDY_JSON))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{store}/{R.STUDY_JSON} is not a study plan written by study.launch ({exc}); "
                          "replicate a search study, not e.g. a study.reproduce directory.") from None
    return store, plan, store.read_table(R.TRIALS_FILE)


def replicates_spec(top: int, seeds: int, epochs: int | None, runs: list[ReplicateRun]) -> dict[str, Any]:
    return {"top": top, "seeds": seeds, "epochs": epochs,
            "runs": [[r.source_trial_id, r.seed] for r in runs]}


def check_spec(store: StudyStore, spec: dict[str, Any]) -> None:
    """Refuse to continue replicates started with other flags (their runs would be mixed in)."""
    if not store.exists(store.replicates_spec):
        return
    saved = json.loads(store.read_bytes(store.replicates_spec))
    if (saved["runs"], saved["epochs"]) != (spec["runs"], spec["epochs"]):  # the same runs: continue them
        raise ConfigError(
            f"{store.uri}/{R.REPLICATES_DIR} holds replicates started with --top {saved['top']} --seeds "
            f"{saved['seeds']}" + (f" --epochs {saved['epochs']}" if saved["epochs"] else "")
            + f" ({len(saved['runs'])} runs), not the {len(spec['runs'])} runs asked for now. Re-run with "
            f"those flags to continue or re-export them, or delete {R.REPLICATES_DIR}/ and "
            f"{R.REPLICATES_FILE} in the study directory to start over.")


def validate(top: int, seeds: int, epochs: int | None, flag: str = "--") -> None:
    """ConfigError for impossible counts; `flag` prefixes the flag names (study.launch: --replicate-)."""
    if top < 0:
        raise ConfigError(f"{flag}top {top}: give 0 or more (0 replicates only the seed configurations).")
    if seeds < 1:
        raise ConfigError(f"{flag}seeds {seeds}: give at least 1 seed per configuration, e.g. {flag}seeds 5.")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"{flag}epochs {epochs}: give at least 1 epoch (or leave it out for the study's "
                          "own).")


def prepare(study: StudyStore | str, top: int, seeds: int,
            epochs: int | None = None) -> tuple[ReplicatePlan, StudyPlan, list[ReplicateRun]]:
    """Everything checked before Ray starts: (the replicates' spec, the searched study's plan, the runs).
    ConfigError on bad input."""
    validate(top, seeds, epochs)
    store, search, trials = read_study(study)
    runs = plan_runs(search, trials, top, seeds, epochs)
    if not runs:
        raise ConfigError(f"{store}: no trial has a finite {R.SELECTION_METRIC} and none is a seed "
                          "configuration, so there is nothing to replicate.")
    check_spec(store, replicates_spec(top, seeds, epochs, runs))
    return ReplicatePlan.of(search, store, top, seeds, epochs), search, runs


def summary_table(rows: pd.DataFrame) -> str:
    """Per source configuration: seeds, and mean +- sd of the final validation FID and test FID."""
    def fmt(values: pd.Series) -> str:
        values = pd.to_numeric(values, errors="coerce").dropna()
        if values.empty:
            return "-"
        sd = values.std(ddof=1) if len(values) > 1 else math.nan
        return f"{values.mean():.4g}" + (f" ± {sd:.2g}" if math.isfinite(sd) else "")

    lines = []
    for source, group in rows.groupby(R.SOURCE_TRIAL_ID, sort=False):
        lines.append({"source_trial": source, R.ARCH: group[R.ARCH].iloc[0],
                      R.SEED_CONFIG: bool(group[R.SEED_CONFIG].iloc[0]), "seeds": len(group),
                      f"{R.FINAL_VAL_FID} (mean ± sd)": fmt(group[R.FINAL_VAL_FID]),
                      f"{R.TEST_FID} (mean ± sd)": fmt(group[R.TEST_FID]),
                      "stop reasons": ", ".join(sorted(set(group[R.STOP_REASON])))})
    return pd.DataFrame(lines).to_string(index=False)
