"""Which trials count as making digits: the one quality gate of the trade-off axes, and which trials
a report describes (`described_trials`, the trials whose costly test metrics are computed after a search).

A trial that produces grey blobs can be very small and very fast, so without a gate it wins
"size vs quality" and "training time vs quality" (issue 9: FID ~150 after 0.3 s won an axis).
`is_usable` is the only place that decides (analysis/quality.py re-exports it); Pareto fronts,
hypervolumes and the verdict's trade-off axes use only usable trials, and the hypervolume's FID
bound is the same threshold.

The rule (validation metrics only, so no test number decides what may win):
1. the trial ended with a model: not diverged or errored, with a finite final validation FID;
2. its validation FID is at most QUALITY_FACTOR times its study's seed reference: the lowest
   final validation FID among that study's seed-study configurations (the seed studies' printed,
   working models, trained under the same protocol). Being relative to the study's own seed
   configurations, the bound follows the feature network's scale when that network is retrained
   and the protocol's sample counts, instead of a number tied to one network. A study without a
   seed configuration with a finite FID falls back to its best trial as the reference;
3. every extra validation criterion in MINIMUMS whose column the rows have is at least its
   minimum. Columns not written yet are skipped, so adding a criterion is one line here:
   - class coverage >= 0.9: the samples spread over at least 9 of the 10 digit classes;
   - sample IS >= 2: the feature network's classifier reads a definite digit in the samples. A
     sample set with no digit in it gets predictions that barely change from image to image, so
     its IS stays near 1, while its class coverage can still pass (argmax jitter over near-uniform
     predictions). Seen in a quick GAN study: a grey-texture dcgan (no digit in its grid) had class
     coverage 0.9, precision 1.0 (every sample in one real k-NN ball), IS 1.09 and sat on the
     size-vs-quality front; that study's seed configurations (8 epochs on 4,000 images: textures
     too) put its FID bound at 260, above every texture. Recognisable but poor samples in the same
     studies had IS 3.4 to 7; real test digits 9.8.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.config import TrainConfig, seed_model_config
from study import results as R

SELECT = R.SELECTION_METRIC
# the trade-off axes the report draws fronts over, all minimised (analysis/tables.py front_objectives)
FRONT_COLUMNS = (R.SELECTION_METRIC, R.PARAMS_TOTAL, R.TRAIN_SECONDS)


def is_seed_config(trials: pd.DataFrame) -> pd.Series:
    """True where the launcher flagged a trial as a seed configuration (column seed_config, which
    covers seed points it ran at reduced width), or where the model part of config_json is exactly
    a seed study's printed configuration (loop settings such as epochs or subset may differ)."""
    def matches(text: str) -> bool:
        model = TrainConfig.from_json(text).model
        return model == seed_model_config(model.family, model.arch)

    printed = trials[R.CONFIG_JSON].map(matches).astype(bool)
    if R.SEED_CONFIG not in trials:
        return printed
    return printed | trials[R.SEED_CONFIG].fillna(False).astype(bool)


QUALITY_FACTOR = 1.5  # at most 50 % further from the data than the study's best seed configuration
# Extra validation criteria, {column: minimum}; applied only where the rows have the column.
VAL_CLASS_COVERAGE = R.VAL_CLASS_COVERAGE  # the fraction of the 10 digit classes with >= 1 % of samples
VAL_SAMPLE_IS = R.VAL_SAMPLE_IS  # IS of the samples under the feature network's classifier (1..10)
MINIMUMS: dict[str, float] = {
    VAL_CLASS_COVERAGE: 0.9,  # at least 9 of the 10 digit classes
    VAL_SAMPLE_IS: 2.0,  # the classifier reads definite digits (no-digit textures: ~1.0-1.2)
}


def fid_bounds(rows: pd.DataFrame, reference: pd.DataFrame | None = None, select: str = SELECT) -> pd.Series:
    """Per row, the largest `select` it may have to be usable: QUALITY_FACTOR times the seed
    reference of its study, computed from `reference` (default: the rows themselves)."""
    reference = rows if reference is None else reference
    ref_study = reference[R.STUDY] if R.STUDY in reference else pd.Series("", index=reference.index)
    seeds = seed_mask(reference)
    values = reference[select].to_numpy(dtype=float, na_value=np.nan)
    values = pd.Series(np.where(np.isfinite(values), values, np.nan), index=reference.index)
    seed_ref = values[seeds.to_numpy()].groupby(ref_study[seeds.to_numpy()]).min()
    best_ref = values.groupby(ref_study).min()
    per_study = seed_ref.reindex(best_ref.index).fillna(best_ref)
    row_study = rows[R.STUDY] if R.STUDY in rows else pd.Series("", index=rows.index)
    return QUALITY_FACTOR * row_study.map(per_study).astype(float)


def seed_mask(frame: pd.DataFrame) -> pd.Series:
    """The seed-study configurations among the rows (by config_json, else the seed_config flag)."""
    if R.CONFIG_JSON in frame:
        return is_seed_config(frame)
    if R.SEED_CONFIG in frame:
        return frame[R.SEED_CONFIG].fillna(False).astype(bool)
    return pd.Series(False, index=frame.index)


def is_usable(rows: pd.DataFrame, reference: pd.DataFrame | None = None, select: str = SELECT) -> pd.Series:
    """True for the rows whose samples count as digits under the rule in the module docstring."""
    values = rows[select].to_numpy(dtype=float, na_value=np.nan)
    usable = np.isfinite(values)
    if R.STOP_REASON in rows:
        usable &= ~rows[R.STOP_REASON].isin([R.STOP_DIVERGED, R.STOP_ERROR, R.STOP_OOM]).to_numpy()
    bounds = fid_bounds(rows, reference, select).to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        usable &= np.isfinite(bounds) & (values <= bounds)
    for column, minimum in MINIMUMS.items():
        if column in rows:
            extra = rows[column].to_numpy(dtype=float, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                usable &= extra >= minimum
    return pd.Series(usable, index=rows.index, name="usable")


def described_trials(trials: pd.DataFrame, select: str = SELECT) -> list:
    """Index labels of the trials of ONE study that a report can describe with test metrics: its best
    (R.best_trial), its seed configurations, and the usable trials on a front of `select` vs size, vs
    training time, or vs both (the comparison table's roles, analysis/tables.py). A report over
    several studies describes a subset of the union of its studies' sets: usability is per study, and
    a trial dominated within its study is dominated among more trials."""
    labels: list = []
    best = R.best_trial(trials, select)
    if best is not None:
        labels.append(best.name)
    labels += list(trials.index[is_seed_config(trials).to_numpy()])
    usable = trials[is_usable(trials, select=select).to_numpy()]
    columns = (select, *FRONT_COLUMNS[1:])
    for axes in ((0, 1), (0, 2), (0, 1, 2)):
        points = usable[[columns[i] for i in axes]].apply(pd.to_numeric, errors="coerce")
        points = points.to_numpy(dtype=float)
        labels += list(usable.index[R.non_dominated(points)]) if len(usable) else []
    return list(dict.fromkeys(labels))
