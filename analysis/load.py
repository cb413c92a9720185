"""Study directories -> tidy pandas DataFrames (one row per trial, one row per trial-epoch).

A study directory `results/<name>/` holds trials.parquet and history.parquet with the columns
of study/results.py. Every loaded trial row keeps its full configuration (config_json and the
hp_* columns) and family; every history row gets its trial's configuration columns joined on,
so per-epoch rows can be grouped by any hyperparameter. Metric columns a study did not write
(e.g. test_inception_fid without the `inception` extra) are added as NaN so downstream code
can rely on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import columns as C
from study import results as R

REQUIRED_TRIAL_COLUMNS = (R.TRIAL_ID, R.FAMILY, R.ARCH, R.CONFIG_JSON, R.PARAMS_TOTAL, R.TRAIN_SECONDS,
                          R.EPOCHS_RUN, R.STOP_REASON)
REQUIRED_HISTORY_COLUMNS = (R.TRIAL_ID, R.EPOCH)
METRIC_COLUMNS = (R.BEST_VAL_FID, R.FINAL_VAL_FID, R.TEST_FID, R.TEST_KID, R.TEST_IS, R.TEST_INCEPTION_FID,
                  R.TEST_RECON_MSE, R.TEST_NELBO, R.TEST_IW_NLL, R.FEATURENET_SHA256, R.TRIAL_DIR)
HISTORY_METRIC_COLUMNS = (R.VAL_FID, R.VAL_KID, R.VAL_IS, R.TRAIN_SECONDS)


class StudyLoadError(ValueError):
    """A study directory that cannot be analysed; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Studies:
    """One or many loaded studies. `trials`: one row per trial; `history`: one row per trial-epoch."""

    trials: pd.DataFrame
    history: pd.DataFrame
    paths: tuple[Path, ...]


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
    for column in METRIC_COLUMNS:
        if column not in trials.columns:
            trials[column] = np.nan
    history_file = path / R.HISTORY_FILE
    history = _read(history_file) if history_file.is_file() else pd.DataFrame(columns=list(REQUIRED_HISTORY_COLUMNS))
    _require(history, REQUIRED_HISTORY_COLUMNS, history_file)
    for column in HISTORY_METRIC_COLUMNS:
        if column not in history.columns:
            history[column] = np.nan
    if R.STUDY not in history.columns:
        history[R.STUDY] = trials[R.STUDY].iloc[0] if len(trials) else path.name
    history = _join_config(history, trials)
    return Studies(trials=trials, history=history, paths=(path,))


def load_studies(paths: Iterable[str | Path]) -> Studies:
    """Load and stack many study directories (e.g. a GAN study and a VAE study).

    Refuses a trial that appears twice (the same directory passed twice) and FIDs measured with
    different feature networks, which are on different scales and must never be mixed.
    """
    loaded = [load_study(p) for p in paths]
    if not loaded:
        raise StudyLoadError("no study directories given: pass at least one results/<name>/ directory.")
    trials = pd.concat([s.trials for s in loaded], ignore_index=True)
    history = pd.concat([s.history for s in loaded], ignore_index=True)
    duplicated = trials.duplicated([R.STUDY, R.TRIAL_ID], keep=False)
    if duplicated.any():
        pairs = sorted(set(zip(trials.loc[duplicated, R.STUDY], trials.loc[duplicated, R.TRIAL_ID], strict=True)))
        raise StudyLoadError(
            f"the same (study, trial) appears more than once: {pairs[:3]}. Pass each study directory once; "
            "two different studies must have different names."
        )
    hashes = sorted(set(trials[R.FEATURENET_SHA256].dropna()))
    if len(hashes) > 1:
        raise StudyLoadError(
            f"these studies measured FID/KID/IS with {len(hashes)} different feature networks "
            f"({', '.join(h[:12] for h in hashes)}); their numbers are on different scales and cannot be "
            "compared. Analyse studies evaluated with the same feature network, or re-evaluate the "
            "checkpoints with `python -m study.evaluate --checkpoint PATH`."
        )
    return Studies(trials=trials, history=history, paths=tuple(p for s in loaded for p in s.paths))


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
    for path in directory.rglob("epoch_*.pt"):  # R.checkpoint_name(epoch), as study.train.latest_checkpoint globs
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
    rows = history.drop(columns=[R.STOP_REASON], errors="ignore").merge(ends, on=[R.STUDY, R.TRIAL_ID], how="inner")
    rows = rows[np.isfinite(rows[metric].to_numpy(dtype=float, na_value=np.nan))]
    return rows.sort_values([R.FAMILY, R.STUDY, R.TRIAL_ID, R.EPOCH], kind="stable").reset_index(drop=True)
