"""Replicates: re-train a study's best configurations and its seed configurations with new seeds, to
their last epoch (the library half of `python -m study.replicate`, study/replicate.py).

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

import io
import json
import math
import posixpath
from dataclasses import dataclass
from typing import Any

import pandas as pd
from ray import tune
from ray.tune import ExperimentAnalysis

from models.config import ConfigError, TrainConfig
from study import results as R
from study.data import load_splits
from study.devices import pick_device
from study.metrics.evaluator import prepare_evaluation
from study.store import StudyStore, normalize_storage_path
from study.tune.cluster import resolve_gpus
from study.tune.export import TRIAL_COLUMNS, trial_rows, trials_frame
from study.tune.fixed import run_fixed_configs
from study.tune.plan import StudyPlan
from study.tune.trainable import TrialSetup, with_setup

DEFAULT_TOP = 3
DEFAULT_SEEDS = 5
REPLICATE_DIR_PREFIX = "replicate"  # STUDY_DIR/replicates/replicate_0001_<id>/
EPOCHS = "epochs"  # TrainConfig's epoch field


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


# --- the study directory ------------------------------------------------------------------------------
def read_study(study_dir: str) -> tuple[StudyStore, StudyPlan, pd.DataFrame]:
    """The study's store, plan and trials table; ConfigError naming what is missing."""
    store = StudyStore(study_dir)
    for name in (R.STUDY_JSON, R.TRIALS_FILE):
        if not store.exists(store.path(name)):
            raise ConfigError(f"{study_dir} holds no {name}: pass the directory of a finished study "
                              "(results/<name>/ from python -m study.launch; resume an interrupted study "
                              "with --resume first).")
    try:
        plan = StudyPlan.from_json(store.read_bytes(store.path(R.STUDY_JSON)).decode())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{study_dir}/{R.STUDY_JSON} is not a study plan written by study.launch ({exc}); "
                          "replicate a search study, not e.g. a study.reproduce directory.") from None
    trials = pd.read_parquet(io.BytesIO(store.read_bytes(store.path(R.TRIALS_FILE))))
    return store, plan, trials


def _spec(top: int, seeds: int, epochs: int | None, runs: list[ReplicateRun]) -> dict[str, Any]:
    return {"top": top, "seeds": seeds, "epochs": epochs,
            "runs": [[r.source_trial_id, r.seed] for r in runs]}


def check_spec(store: StudyStore, spec: dict[str, Any]) -> None:
    """Refuse to continue replicates started with other flags (their runs would be mixed in)."""
    path = store.path(R.REPLICATES_DIR, R.REPLICATES_SPEC)
    if not store.exists(path):
        return
    saved = json.loads(store.read_bytes(path))
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


def prepare(study_dir: str, top: int, seeds: int, epochs: int | None = None):
    """Everything checked before Ray starts: (store, plan, runs). ConfigError on bad input."""
    validate(top, seeds, epochs)
    store, plan, trials = read_study(study_dir)
    runs = plan_runs(plan, trials, top, seeds, epochs)
    if not runs:
        raise ConfigError(f"{study_dir}: no trial has a finite {R.SELECTION_METRIC} and none is a seed "
                          "configuration, so there is nothing to replicate.")
    check_spec(store, _spec(top, seeds, epochs, runs))
    return store, plan, runs


# --- running ------------------------------------------------------------------------------------------
def run_replicates(study_dir: str, top: int = DEFAULT_TOP, seeds: int = DEFAULT_SEEDS,
                   epochs: int | None = None, *, data=None, assets=None) -> pd.DataFrame | None:
    """Run (or continue) the replicates on an initialised Ray and write replicates.parquet; returns
    its rows, or None if the run was interrupted. `data`/`assets`: the study's splits and evaluation
    assets when the caller has them (study.launch), else loaded here."""
    store, plan, runs = prepare(study_dir, top, seeds, epochs)
    if data is None:
        data = load_splits(plan.data_dir, train_subset=plan.train_subset, download=False)
    if assets is None and plan.eval_samples > 0:
        assets = prepare_evaluation(data, pick_device(), iw_images=plan.iw_images)
    gpus = resolve_gpus(plan.cpus_per_trial, plan.gpus_per_trial, plan.expect_gpus)
    setup = TrialSetup(data=data, assets=assets, threads=max(1, int(plan.cpus_per_trial)),
                       gpus_per_trial=gpus)
    trainable = tune.with_resources(with_setup(setup), {"cpu": plan.cpus_per_trial, "gpu": gpus})
    n_configs = len({r.source_trial_id for r in runs})
    print(f"replicating {n_configs} configurations of study {plan.name} x {seeds} seeds "
          f"({len(runs)} runs, seeds {replicate_seeds(plan.seed, seeds)}, "
          f"{runs[0].config.epochs if epochs else 'their'} epochs, no early stopping) -> "
          f"{store.uri}/{R.REPLICATES_DIR}", flush=True)
    store.write_bytes(store.path(R.REPLICATES_DIR, R.REPLICATES_SPEC),
                      json.dumps(_spec(top, seeds, epochs, runs), indent=1).encode())
    results, finished = run_fixed_configs(
        # the directory as given now (study.json's storage path is where the study was first written)
        trainable, [r.config.to_dict() for r in runs], storage_path=normalize_storage_path(study_dir),
        name=R.REPLICATES_DIR,
        max_failures=plan.max_failures, keep_checkpoints=plan.keep_checkpoints,
        dirname_prefix=REPLICATE_DIR_PREFIX)
    if not finished:
        return None
    ended = [results[i] for i in range(len(results))]
    errored = {posixpath.basename(r.path) for r in ended if r.error is not None}
    rows = replicate_rows(store, plan, runs, errored)
    store.write_table(rows, R.REPLICATES_FILE)
    return rows


def replicate_rows(store: StudyStore, plan: StudyPlan, runs: list[ReplicateRun],
                   errored: set[str] | None = None) -> pd.DataFrame:
    """The rows of replicates.parquet from the finished Ray experiment STUDY_DIR/replicates/."""
    analysis = ExperimentAnalysis(store.path(R.REPLICATES_DIR), storage_filesystem=store.fs)
    rows, _ = trial_rows(store, plan.name, analysis.trials, errored=errored)
    by_config = {r.config.to_json(): r for r in runs}
    for row in rows:
        run = by_config[row[R.CONFIG_JSON]]
        row[R.SOURCE_TRIAL_ID], row[R.REPLICATE_SEED] = run.source_trial_id, run.seed
        row[R.SEED_CONFIG] = run.seed_config
    return finalise_replicates(rows, runs)


def finalise_replicates(rows: list[dict[str, Any]], runs: list[ReplicateRun]) -> pd.DataFrame:
    """The one place replicate rows are completed before replicates.parquet is written: the
    trials.parquet columns, source and seed after the trial id, one row per planned run (checked),
    ordered by the selection order of the configurations, then seed. Metrics added to replicates
    later (e.g. study.inception's Inception FID of chosen runs) belong here."""
    frame = trials_frame(rows)
    keys = list(zip(frame[R.SOURCE_TRIAL_ID], frame[R.REPLICATE_SEED], strict=True))
    planned = [(r.source_trial_id, r.seed) for r in runs]
    if len(set(keys)) != len(keys) or set(keys) != set(planned):
        raise RuntimeError(f"the replicate experiment holds runs {sorted(keys)}, not the planned {planned}")
    frame = frame.iloc[sorted(range(len(frame)), key=lambda i: planned.index(keys[i]))]
    first = [R.STUDY, R.TRIAL_ID, R.SOURCE_TRIAL_ID, R.REPLICATE_SEED]
    order = first + [c for c in TRIAL_COLUMNS if c not in first]
    order += [c for c in frame.columns if c not in order]
    return frame[order].reset_index(drop=True)


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
