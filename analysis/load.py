"""Study directories -> tidy pandas DataFrames (one row per trial, one row per trial-epoch).

A study directory `results/<name>/` holds trials.parquet and history.parquet with the columns
of study/results.py. Every loaded trial row keeps its full configuration (config_json and the
hp_* columns) and family; every history row gets its trial's configuration columns joined on,
so per-epoch rows can be grouped by any hyperparameter. Metric columns a study did not write
(e.g. test_inception_fid without the `inception` extra) are added as NaN so downstream code
can rely on them.

Pooling is refused unless the studies share one protocol (`check_protocols`): the feature network
behind every FID, the generated samples per FID, the training subset and the epoch budget. A
study that re-runs a seed study's own experiment (study.json: reproduces_seed_study) is loaded
beside the others but kept out of that check and of the verdict: it only feeds the seed table.
Two studies of one family become two groups (C.GROUP = the study name), never one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import columns as C
from study import results as R

REQUIRED_TRIAL_COLUMNS = (R.TRIAL_ID, R.FAMILY, R.ARCH, R.CONFIG_JSON, R.PARAMS_TOTAL, R.TRAIN_SECONDS,
                          R.EPOCHS_RUN, R.STOP_REASON)
REQUIRED_HISTORY_COLUMNS = (R.TRIAL_ID, R.EPOCH)
METRIC_COLUMNS = (R.BEST_VAL_FID, R.FINAL_VAL_FID, *R.TEST_METRICS, R.FEATURENET_SHA256, R.TRIAL_DIR)
HISTORY_METRIC_COLUMNS = (*R.VALIDATION_METRICS, R.TRAIN_SECONDS)


class StudyLoadError(ValueError):
    """A study directory that cannot be analysed; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Studies:
    """One or many loaded studies. `trials`: one row per trial; `history`: one row per trial-epoch."""

    trials: pd.DataFrame
    history: pd.DataFrame
    paths: tuple[Path, ...]
    replicates: pd.DataFrame = field(default_factory=pd.DataFrame)  # replicates.parquet rows, if any
    protocols: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per study (PROTOCOL_COLUMNS)

    def search(self) -> pd.DataFrame:
        """The trials that enter the verdict: every study but the seed-study reproductions."""
        return search_rows(self.trials)


def search_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of the search studies (seed-study reproductions left out)."""
    return trials[trials[C.REPRODUCES].isna()] if C.REPRODUCES in trials else trials


def check_study_dir(path: str | Path) -> Path:
    """The resolved study directory, or StudyLoadError when it holds no trials.parquet."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise StudyLoadError(
            f"study directory {path} does not exist. Pass the directory a study wrote, e.g. "
            f"results/<name>/ from `python -m study.launch --name <name>`, which holds {R.TRIALS_FILE}."
        )
    if not (path / R.TRIALS_FILE).is_file():
        raise StudyLoadError(
            f"{path} holds no {R.TRIALS_FILE}, so it is not a finished study directory. Pass the "
            f"results/<name>/ directory of a study; if the study is still running or was interrupted, "
            f"finish it (or resume it with `python -m study.launch --name <name> --resume`) first."
        )
    return path.resolve()


def load_study(path: str | Path) -> Studies:
    """Load one study directory."""
    path = check_study_dir(path)
    trials = _read(path / R.TRIALS_FILE)
    _require(trials, REQUIRED_TRIAL_COLUMNS, path / R.TRIALS_FILE)
    if R.STUDY not in trials.columns:
        trials[R.STUDY] = path.name
    trials[C.STUDY_PATH] = str(path)
    _add_missing(trials, METRIC_COLUMNS)
    history_file = path / R.HISTORY_FILE
    history = (_read(history_file) if history_file.is_file()
               else pd.DataFrame(columns=list(REQUIRED_HISTORY_COLUMNS)))
    _require(history, REQUIRED_HISTORY_COLUMNS, history_file)
    _add_missing(history, HISTORY_METRIC_COLUMNS)
    if R.STUDY not in history.columns:
        history[R.STUDY] = trials[R.STUDY].iloc[0] if len(trials) else path.name
    history = _join_config(history, trials)
    plan = read_plan(path)
    reproduces = plan.get(C.REPRODUCES)
    trials[C.REPRODUCES] = float(reproduces) if reproduces is not None else np.nan
    replicates = _load_replicates(path, trials)
    protocol = study_protocol(trials, plan, path)
    protocol[C.N_TRIALS] = len(trials)
    protocol[REPLICATE_ROWS] = len(replicates)
    frames = _with_groups(trials, history, replicates)
    return Studies(*frames[:2], paths=(path,), replicates=frames[2],
                   protocols=pd.DataFrame([protocol], columns=list(PROTOCOL_COLUMNS)))


def load_studies(paths: Iterable[str | Path], allow_mixed: bool = False) -> Studies:
    """Load and stack many study directories (e.g. a GAN study and a VAE study).

    Refuses a trial that appears twice (the same directory passed twice), and studies run under
    different protocols (`check_protocols`) unless `allow_mixed`.
    """
    loaded = [load_study(p) for p in paths]
    if not loaded:
        raise StudyLoadError("no study directories given: pass at least one results/<name>/ directory.")
    trials = pd.concat([s.trials for s in loaded], ignore_index=True)
    history = pd.concat([s.history for s in loaded], ignore_index=True)
    replicates = pd.concat([s.replicates for s in loaded], ignore_index=True)
    protocols = pd.concat([s.protocols for s in loaded], ignore_index=True)
    duplicated = trials.duplicated([R.STUDY, R.TRIAL_ID], keep=False)
    if duplicated.any():
        twice = trials.loc[duplicated]
        pairs = sorted(set(zip(twice[R.STUDY], twice[R.TRIAL_ID], strict=True)))
        raise StudyLoadError(
            f"the same (study, trial) appears more than once: {pairs[:3]}. Pass each study directory once; "
            "two different studies must have different names."
        )
    if not allow_mixed:
        check_protocols(protocols)
    trials, history, replicates = _with_groups(trials, history, replicates)
    return Studies(trials=trials, history=history, paths=tuple(p for s in loaded for p in s.paths),
                   replicates=replicates, protocols=protocols)


# --- protocols -----------------------------------------------------------------------------------
PROTOCOL_KEYS = (R.FEATURENET_SHA256, C.PLAN_EVAL_SAMPLES, C.PLAN_TRAIN_SUBSET, C.PLAN_MAX_EPOCHS)
REPLICATE_ROWS = "replicate_rows"
PROTOCOL_COLUMNS = (R.STUDY, R.FAMILY, *PROTOCOL_KEYS, C.PLAN_SAMPLER, C.PLAN_SCHEDULER, C.REPRODUCES,
                    C.N_TRIALS, REPLICATE_ROWS)
_PROTOCOL_NAMES = {R.FEATURENET_SHA256: "feature network", C.PLAN_EVAL_SAMPLES: "generated samples per FID",
                   C.PLAN_TRAIN_SUBSET: "training subset", C.PLAN_MAX_EPOCHS: "max epochs"}
FULL_SPLIT = "full"


def read_plan(path: Path) -> dict:
    """study.json's settings ({} for a study directory without one, e.g. written by the tests)."""
    file = path / R.STUDY_JSON
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except ValueError as exc:
        raise StudyLoadError(f"{file} is not valid JSON ({exc}); restore it from the study's storage or "
                             "resume the study to rewrite it.") from None


def _distinct(values: pd.Series) -> str:
    """The distinct non-missing values as one sorted, comma-joined string ('' when none)."""
    return ", ".join(sorted({str(v) for v in values.dropna()}))


def study_protocol(trials: pd.DataFrame, plan: dict, path: Path) -> dict:
    """One study's protocol: study.json's settings where it has them, else what its rows say."""
    def from_rows(field_name: str, reduce=_distinct) -> str:
        column = R.hp_column(field_name)
        return reduce(trials[column]) if column in trials else ""

    def plan_or_rows(key: str, field_name: str, reduce=_distinct) -> str:
        if key in plan:
            return FULL_SPLIT if plan[key] is None and key == C.PLAN_TRAIN_SUBSET else str(plan[key])
        value = from_rows(field_name, reduce)
        all_data = value == "" and key == C.PLAN_TRAIN_SUBSET and R.hp_column(field_name) in trials
        return FULL_SPLIT if all_data else value

    def max_epochs(values: pd.Series) -> str:
        values = values.dropna()
        return str(int(values.max())) if len(values) else ""

    return {
        R.STUDY: str(trials[R.STUDY].iloc[0]) if len(trials) else path.name,
        R.FAMILY: _distinct(trials[R.FAMILY]),
        R.FEATURENET_SHA256: _distinct(trials[R.FEATURENET_SHA256]),
        C.PLAN_EVAL_SAMPLES: plan_or_rows(C.PLAN_EVAL_SAMPLES, "eval_samples"),
        C.PLAN_TRAIN_SUBSET: plan_or_rows(C.PLAN_TRAIN_SUBSET, "train_subset"),
        C.PLAN_MAX_EPOCHS: plan_or_rows(C.PLAN_MAX_EPOCHS, "epochs", max_epochs),
        C.PLAN_SAMPLER: str(plan.get(C.PLAN_SAMPLER, "unknown")),
        C.PLAN_SCHEDULER: scheduler_text(plan),
        C.REPRODUCES: plan.get(C.REPRODUCES),
    }


def scheduler_text(plan: dict) -> str:
    """The scheduler and, when it stops trials, what it decides on: 'asha (first rung epoch 2,
    factor 2, signal raw)'; signal raw is the epoch's validation FID, best the trial's best so far."""
    scheduler = str(plan.get(C.PLAN_SCHEDULER, "unknown"))
    if scheduler in ("none", "unknown") or "grace_period" not in plan:
        return scheduler
    factor = float(plan["reduction_factor"])
    return (f"{scheduler} (first rung epoch {plan['grace_period']}, factor {factor:g}, "
            f"signal {plan.get('stop_signal', 'raw')})")


def check_protocols(protocols: pd.DataFrame) -> None:
    """StudyLoadError naming every protocol field that differs between the studies that enter the
    verdict (seed-study reproductions are exempt: they run the seed studies' protocol on purpose)."""
    pooled = protocols[protocols[C.REPRODUCES].isna()]
    differences = []
    for key in PROTOCOL_KEYS:
        values = {str(study): str(value) for study, value in zip(pooled[R.STUDY], pooled[key], strict=True)}
        if key == R.FEATURENET_SHA256:
            hashes = sorted({h for v in values.values() for h in v.split(", ") if h})
            if len(hashes) > 1:
                differences.append(f"{len(hashes)} different feature networks ("
                                   + "; ".join(f"{s}: {v[:12] or 'none'}" for s, v in values.items()) + ")")
            continue
        if len(set(values.values())) > 1:
            differences.append(f"{_PROTOCOL_NAMES[key]} differs ("
                               + "; ".join(f"{s}: {v or 'unknown'}" for s, v in values.items()) + ")")
    if differences:
        raise StudyLoadError(
            "these studies were run under different protocols, so their FIDs, sizes and times are not "
            f"comparable: {'; '.join(differences)}. FIDs from different feature networks are on different "
            "scales, and more samples, more data or more epochs change every number. Analyse studies run "
            "with the same settings (re-run one with the other's --eval-samples/--train-subset/--max-epochs, "
            "or re-evaluate checkpoints with `python -m study.evaluate --checkpoint PATH`), or pass "
            "--allow-mixed (allow_mixed=True) to pool them anyway; the report then lists each protocol."
        )


# --- replicates and groups -------------------------------------------------------------------------
def _load_replicates(path: Path, trials: pd.DataFrame) -> pd.DataFrame:
    """STUDY_DIR/replicates.parquet with the study's name and path, metric columns completed;
    an empty frame when the study has no replicates."""
    file = path / R.REPLICATES_FILE
    if not file.is_file():
        return pd.DataFrame(columns=[R.STUDY, R.FAMILY, R.TRIAL_ID, R.SOURCE_TRIAL_ID, R.REPLICATE_SEED])
    replicates = _read(file)
    _require(replicates, (R.TRIAL_ID, R.FAMILY, R.SOURCE_TRIAL_ID, R.REPLICATE_SEED), file)
    if R.STUDY not in replicates:
        replicates[R.STUDY] = trials[R.STUDY].iloc[0] if len(trials) else path.name
    replicates[C.STUDY_PATH] = str(path)
    _add_missing(replicates, METRIC_COLUMNS)
    return replicates


def _with_groups(trials: pd.DataFrame, history: pd.DataFrame, replicates: pd.DataFrame):
    """Adds C.GROUP to every frame: the family, or the study name where a family has several
    studies (or the study re-runs a seed study); so two studies of one family stay apart."""
    search = search_rows(trials)
    studies_per_family = search.groupby(R.FAMILY)[R.STUDY].nunique()
    names = {}
    for study, family in trials[[R.STUDY, R.FAMILY]].drop_duplicates().itertuples(index=False):
        reproduction = (C.REPRODUCES in trials
                        and trials.loc[trials[R.STUDY] == study, C.REPRODUCES].notna().any())
        alone = studies_per_family.get(family, 0) == 1 and not reproduction
        names[(study, family)] = str(family) if alone else str(study)
    out = []
    for frame in (trials, history, replicates):
        frame = frame.copy()
        if len(frame):
            frame[C.GROUP] = [names.get((s, f), str(s))
                              for s, f in zip(frame[R.STUDY], frame[R.FAMILY], strict=True)]
        else:
            frame[C.GROUP] = pd.Series(dtype=object)
        out.append(frame)
    return tuple(out)


def trial_path(row: pd.Series) -> Path:
    """A trial's artifact directory (samples/, checkpoints/) from its loaded row."""
    return Path(row[C.STUDY_PATH]) / str(row[R.TRIAL_DIR])


def final_checkpoint(row: pd.Series) -> Path | None:
    """The trial's final model: checkpoints/final.pt (study.train's layout), else the highest-epoch
    epoch_NNN.pt anywhere in the trial directory (a Ray trial keeps them in checkpoint_NNNNNN/)."""
    if pd.isna(row.get(R.TRIAL_DIR)):
        return None
    directory = trial_path(row)
    final = directory / R.CHECKPOINTS_DIR / R.FINAL_CHECKPOINT
    if final.is_file():
        return final
    epochs = {}
    # R.checkpoint_name(epoch), as study.train.latest_checkpoint globs
    for path in directory.rglob(R.CHECKPOINT_GLOB):
        digits = path.stem.rpartition("_")[2]
        if digits.isdigit():
            epochs[int(digits)] = path
    return epochs[max(epochs)] if epochs else None


def _read(file: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(file)
    except Exception as exc:  # pyarrow raises several types for a truncated or foreign file
        raise StudyLoadError(
            f"cannot read {file} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}). The file is "
            "damaged or not a parquet table written by the study; re-export it by resuming the study."
        ) from None


def _add_missing(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    """Adds each of `columns` that `frame` lacks, as NaN (a study that measured fewer metrics)."""
    for column in columns:
        if column not in frame.columns:
            frame[column] = np.nan


def _require(frame: pd.DataFrame, columns: Iterable[str], file: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StudyLoadError(
            f"{file} lacks the columns {missing}; it was not written by this project's study launcher "
            "(or by an older version of it). Re-run or resume the study with the current code."
        )


def _join_config(history: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Each history row gets its trial's configuration (family, arch, seed, hp_*, params_*)."""
    config_columns = [R.FAMILY, R.ARCH, R.SEED, R.CONFIG_JSON]
    config_columns += [c for c in trials.columns if c.startswith((R.HP_PREFIX, R.PARAMS_PREFIX))]
    config_columns += [C.STUDY_PATH]
    keep = [c for c in history.columns if c not in config_columns]
    right = trials[[R.STUDY, R.TRIAL_ID] + [c for c in config_columns if c in trials.columns]]
    return history[keep].merge(right, on=[R.STUDY, R.TRIAL_ID], how="left", validate="many_to_one")


def epoch_curves(trials: pd.DataFrame, history: pd.DataFrame, metric: str = R.VAL_FID) -> pd.DataFrame:
    """History rows with a finite `metric`, each with its trial's stop reason and epochs run,
    sorted by (family, study, trial, epoch): a trial's last row is where it stopped."""
    ends = trials[[R.STUDY, R.TRIAL_ID, R.STOP_REASON, R.EPOCHS_RUN]]
    rows = history.drop(columns=[R.STOP_REASON], errors="ignore")
    rows = rows.merge(ends, on=[R.STUDY, R.TRIAL_ID], how="inner")
    rows = rows[np.isfinite(rows[metric].to_numpy(dtype=float, na_value=np.nan))]
    return rows.sort_values([R.FAMILY, R.STUDY, R.TRIAL_ID, R.EPOCH], kind="stable").reset_index(drop=True)
