"""The seed studies' table, reproduced: our best, seed-configuration and Pareto trials per family,
side by side with the numbers the seed studies printed, and which of those are comparable.

Validation chooses (best trial, Pareto membership, through analysis.selection.SELECT); test
columns only describe the chosen trials. The headline table gives each group's best
configuration and seed configurations as mean +- 95 % CI over seeds where replicates exist.
The report's overview (per study and group) and front tables are here too.

Pure functions over the loaded trials/history frames; the report renders what they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis import columns as C
from analysis import stats
from analysis.load import search_rows
from analysis.pareto import MINIMIZE, Objective, pareto_front
from analysis.quality import is_usable
from analysis.selection import SELECT, best_label, best_per_group, group_column, is_seed_config
from models.config import (
    ARCH_CONV,
    ARCH_DCGAN,
    ARCH_MLP,
    FAMILY_GAN,
    FAMILY_VAE,
)
from study import results as R

ROLE_BEST = "best"  # lowest validation FID of the family (selection never looks at test numbers)
ROLE_SEED = "seed config"  # the model configuration a seed study printed
ROLE_PARETO = "Pareto"  # usable and non-dominated in (validation FID, total parameters, training seconds)

COMPARABLE_YES = "yes"
COMPARABLE_CAVEATS = "with caveats"
COMPARABLE_NO = "no"

SEED_STUDY_1 = "seed study 1 (TensorFlow DCGAN vs conv VAE)"
SEED_STUDY_2 = "seed study 2 (PyTorch MLP GAN vs MLP VAE)"
SEED_STUDY_NUMBER = {SEED_STUDY_1: 1, SEED_STUDY_2: 2}  # the value of a reproduction's reproduces_seed_study

# The comparison table's columns, in order.
TABLE_COLUMNS = (R.FAMILY, C.ROLE, R.TRIAL_ID, R.ARCH, R.PARAMS_TOTAL, R.TRAIN_SECONDS, R.EPOCHS_RUN,
                 R.STOP_REASON, R.FINAL_VAL_FID, R.TEST_FID, R.TEST_INCEPTION_FID, R.TEST_KID,
                 R.TEST_PRECISION, R.TEST_RECALL, R.TEST_SAMPLE_IS, R.TEST_RECON_MSE, R.TEST_BCE_NELBO,
                 R.TEST_BINARIZED_NLL)


class PublishedFigure(NamedTuple):
    quantity: str
    family: str
    arch: str  # the architecture the seed study used
    value: float
    source: str
    column: str  # our column it is set against
    epoch: int | None  # for a training loss read from the history at that epoch; None: a trial column
    comparable: str
    note: str


INCEPTION_PROTOCOL_IMAGES = 10_000  # generated and test images of the comparable Inception FID
_INCEPTION_NOTE = ("Inception FID on both sides, but the seed study states neither its sample counts nor "
                   "its reference images (ours: 10,000 generated vs the 10,000 test images, as Lucic et al. "
                   "2018)")
_DOMAIN_NOTE = ("domain FID uses our MNIST feature network: a different feature space and scale, never "
                "comparable")
_LOSS_NOTE = ("training loss in nats per image (BCE summed over pixels + KL), the quantity the seed study "
              "printed; its batch size and data order are unknown and the figure is approximate")

PUBLISHED_FIGURES: tuple[PublishedFigure, ...] = (
    PublishedFigure("FID", FAMILY_GAN, ARCH_DCGAN, 18.24, SEED_STUDY_1, R.TEST_INCEPTION_FID, None,
                    COMPARABLE_CAVEATS, _INCEPTION_NOTE),
    PublishedFigure("FID", FAMILY_GAN, ARCH_DCGAN, 18.24, SEED_STUDY_1, R.TEST_FID, None, COMPARABLE_NO,
                    _DOMAIN_NOTE),
    PublishedFigure("FID", FAMILY_VAE, ARCH_CONV, 28.56, SEED_STUDY_1, R.TEST_INCEPTION_FID, None,
                    COMPARABLE_CAVEATS, _INCEPTION_NOTE),
    PublishedFigure("FID", FAMILY_VAE, ARCH_CONV, 28.56, SEED_STUDY_1, R.TEST_FID, None, COMPARABLE_NO,
                    _DOMAIN_NOTE),
    PublishedFigure("Inception Score", FAMILY_GAN, ARCH_DCGAN, 2.76, SEED_STUDY_1, R.TEST_SAMPLE_IS,
                    None, COMPARABLE_NO, "our IS of the samples uses an MNIST classifier (scale 1..10, real "
                    "test digits score about 10); the seed study does not say which classifier gave 2.76"),
    PublishedFigure("reconstruction error", FAMILY_VAE, ARCH_CONV, 0.092, SEED_STUDY_1, R.TEST_RECON_MSE,
                    None, COMPARABLE_CAVEATS, "ours is per-pixel MSE in [0, 1] pixel units on the test set; "
                    "the seed study does not define its error"),
    PublishedFigure("VAE loss, first epoch", FAMILY_VAE, ARCH_MLP, 178.0, SEED_STUDY_2, R.LOSS_NELBO, 1,
                    COMPARABLE_CAVEATS, _LOSS_NOTE),
    PublishedFigure("VAE loss after 50 epochs", FAMILY_VAE, ARCH_MLP, 135.0, SEED_STUDY_2, R.LOSS_NELBO, 50,
                    COMPARABLE_CAVEATS, _LOSS_NOTE + "; blank when our trial stopped before epoch 50"),
)


def best_trials(trials: pd.DataFrame, select: str = SELECT) -> dict[str, object]:
    """Per group (family, or study where a family has two), the index label of the trial with the
    lowest finite `select` (first on ties); a validation column, never a test one."""
    return best_per_group(trials, group_column(trials), select)


def front_objectives(select: str = SELECT) -> tuple[Objective, ...]:
    """The three study objectives, all minimised: validation quality (it chooses), size, time."""
    return (Objective(select, MINIMIZE), Objective(R.PARAMS_TOTAL, MINIMIZE),
            Objective(R.TRAIN_SECONDS, MINIMIZE))


def usable_front(group: pd.DataFrame, objectives: Sequence[Objective], select: str = SELECT) -> list:
    """Index labels of a group's Pareto front among its usable trials (analysis.quality)."""
    usable = group[is_usable(group, select=select).to_numpy()]
    return list(pareto_front(usable, objectives).front)


def comparison_table(trials: pd.DataFrame, quality: str = R.TEST_FID, select: str = SELECT) -> pd.DataFrame:
    """One row per (group, trial) that is the best, a seed configuration or Pareto-optimal.

    A trial with several roles appears once with its roles joined ('best, Pareto'). Rows are
    ordered by group, then best, seed configs and Pareto trials, each by `select`. `quality` is
    the test column shown beside (it chooses nothing).
    """
    by = group_column(trials)
    roles: dict[object, list[str]] = {}
    for label in best_trials(trials, select).values():
        roles.setdefault(label, []).append(ROLE_BEST)
    for label in trials.index[is_seed_config(trials)]:
        roles.setdefault(label, []).append(ROLE_SEED)
    for _, group in trials.groupby(by, sort=True):
        for label in usable_front(group, front_objectives(select), select):
            roles.setdefault(label, []).append(ROLE_PARETO)
    order = {ROLE_BEST: 0, ROLE_SEED: 1, ROLE_PARETO: 2}
    columns = [c for c in TABLE_COLUMNS if c != C.ROLE]
    if quality not in columns:
        columns.append(quality)
    table = trials.loc[list(roles), columns].copy()
    if by == C.GROUP:
        table.insert(0, C.GROUP, trials.loc[list(roles), C.GROUP])
    table.insert(columns.index(R.FAMILY) + 1 + (by == C.GROUP), C.ROLE,
                 [", ".join(roles[label]) for label in table.index])
    table["_rank"] = [order[roles[label][0]] for label in table.index]
    table = table.sort_values([by, "_rank", select], kind="stable", na_position="last")
    return table.drop(columns="_rank").reset_index(drop=True)


def headline_table(trials: pd.DataFrame, replicates: pd.DataFrame | None = None, quality: str = R.TEST_FID,
                   select: str = SELECT) -> pd.DataFrame:
    """Per group: its best configuration and its seed configurations, each as `quality` mean +- 95 %
    CI over seeds (replicates.parquet) with the number of seeds, or the single trial (n = 1)."""
    from analysis.verdict import best_configuration  # verdict imports this module

    by = group_column(trials)
    replicates = replicates if replicates is not None else pd.DataFrame(columns=[by, R.SOURCE_TRIAL_ID])
    rows = []
    for name, group in trials.groupby(by, sort=True):
        reps = replicates[replicates[by] == name] if by in replicates else replicates.iloc[:0]
        source, interval, _ = best_configuration(group, reps, quality, select)
        entries = [(ROLE_BEST, source)] if source is not None else []
        entries += [(ROLE_SEED, str(t)) for t in group.loc[is_seed_config(group), R.TRIAL_ID]]
        for role, trial_id in entries:
            own = reps[reps[R.SOURCE_TRIAL_ID] == trial_id] if len(reps) else reps
            rows_ = own if len(own) else group[group[R.TRIAL_ID] == trial_id]
            values = stats.mean_ci(rows_[quality].to_numpy(dtype=float, na_value=np.nan))
            chosen = stats.mean_ci(rows_[select].to_numpy(dtype=float, na_value=np.nan))
            arch = group.loc[group[R.TRIAL_ID] == trial_id, R.ARCH]
            rows.append({by: name, C.ROLE: role, R.TRIAL_ID: trial_id,
                         R.ARCH: arch.iloc[0] if len(arch) else "", select: chosen.estimate,
                         C.MEAN: values.estimate, C.CI_LOW: values.low, C.CI_HIGH: values.high,
                         C.N_SEEDS: values.n})
    return pd.DataFrame(rows, columns=[by, C.ROLE, R.TRIAL_ID, R.ARCH, select, C.MEAN, C.CI_LOW, C.CI_HIGH,
                                       C.N_SEEDS])


def published_comparison(trials: pd.DataFrame, history: pd.DataFrame, select: str = SELECT,
                         figures: Sequence[PublishedFigure] = PUBLISHED_FIGURES,
                         replicates: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each printed seed-study number beside ours: the same configuration (the seed config of the
    seed study's architecture, mean over its search trials), the family's best trial (lowest
    `select`), and, where a study re-ran that seed study's own experiment (study.reproduce), the
    reproduced value: mean +- 95 % CI over its runs at its longest epoch count (trials and replicates)."""
    search = search_rows(trials)
    seed_mask = is_seed_config(search)
    best = best_per_group(search, R.FAMILY, select)
    rows = []
    for fig in figures:
        seed_rows = search[seed_mask & (search[R.FAMILY] == fig.family) & (search[R.ARCH] == fig.arch)]
        best_rows = search.loc[[best[fig.family]]] if fig.family in best else search.iloc[:0]
        reproduced = stats.mean_ci(_reproduced_values(fig, trials, history, replicates))
        rows.append({
            C.QUANTITY: fig.quantity,
            R.FAMILY: fig.family,
            C.PUBLISHED: fig.value,
            C.SOURCE: fig.source,
            C.OURS_SEED_CONFIG: _value(fig, seed_rows, history),
            C.OURS_BEST: _value(fig, best_rows, history),
            C.REPRODUCED: reproduced.estimate,
            C.REPRODUCED_LOW: reproduced.low,
            C.REPRODUCED_HIGH: reproduced.high,
            C.REPRODUCED_N: reproduced.n,
            **_comparability(fig, pd.concat([seed_rows, best_rows])),
        })
    return pd.DataFrame(rows, columns=[C.QUANTITY, R.FAMILY, C.PUBLISHED, C.SOURCE, C.OURS_SEED_CONFIG,
                                       C.OURS_BEST, C.REPRODUCED, C.REPRODUCED_LOW, C.REPRODUCED_HIGH,
                                       C.REPRODUCED_N, C.COMPARABLE, C.NOTE])


def _comparability(fig: PublishedFigure, rows: pd.DataFrame) -> dict[str, str]:
    """The comparable call and note of `fig` for our `rows`: an Inception FID on fewer than
    INCEPTION_PROTOCOL_IMAGES images (--inception-images) is biased upward and compares with nothing."""
    note = f"ours: {fig.column}" + (f" at epoch {fig.epoch}" if fig.epoch else "") + f"; {fig.note}"
    if fig.column != R.TEST_INCEPTION_FID or R.INCEPTION_SAMPLES not in rows:
        return {C.COMPARABLE: fig.comparable, C.NOTE: note}
    scored = rows[np.isfinite(rows[fig.column].to_numpy(dtype=float, na_value=np.nan))]
    counts = scored[R.INCEPTION_SAMPLES].to_numpy(dtype=float, na_value=np.nan)
    if len(counts) and np.nanmin(counts) < INCEPTION_PROTOCOL_IMAGES:
        n = int(np.nanmin(counts))
        return {C.COMPARABLE: COMPARABLE_NO,
                C.NOTE: f"ours: {fig.column} on {n:,} generated vs {n:,} test images, fewer than the "
                        f"{INCEPTION_PROTOCOL_IMAGES:,} of the protocol: FID is biased upward at small N, "
                        "so this value compares with no published one"}
    return {C.COMPARABLE: fig.comparable, C.NOTE: note}


def _reproduced_values(fig: PublishedFigure, trials: pd.DataFrame, history: pd.DataFrame,
                       replicates: pd.DataFrame | None) -> np.ndarray:
    """`fig`'s values over the runs of the studies reproducing its seed study, at their longest epochs."""
    number = SEED_STUDY_NUMBER.get(fig.source)
    if C.REPRODUCES not in trials or number is None:
        return np.zeros(0)
    mine = trials[(trials[C.REPRODUCES] == number) & (trials[R.FAMILY] == fig.family)
                  & (trials[R.ARCH] == fig.arch)]
    if replicates is not None and len(replicates) and R.STUDY in replicates and fig.epoch is None:
        reps = replicates[replicates[R.STUDY].isin(set(mine[R.STUDY])) & (replicates[R.FAMILY] == fig.family)
                          & (replicates[R.ARCH] == fig.arch)] if R.ARCH in replicates else replicates.iloc[:0]
        mine = pd.concat([mine, reps], ignore_index=True)
    epochs = R.hp_column("epochs")
    if epochs in mine and mine[epochs].notna().any():
        mine = mine[mine[epochs] == mine[epochs].max()]
    return _values(fig, mine, history)


def _value(fig: PublishedFigure, rows: pd.DataFrame, history: pd.DataFrame) -> float:
    """Mean of our finite values for `fig` over `rows` (NaN when none has one)."""
    values = _values(fig, rows, history)
    return float(values.mean()) if len(values) else float("nan")


def _values(fig: PublishedFigure, rows: pd.DataFrame, history: pd.DataFrame) -> np.ndarray:
    """Our finite values for `fig` over `rows`."""
    if fig.epoch is None:
        values = rows[fig.column].to_numpy(dtype=float, na_value=np.nan)
    else:
        if fig.column not in history.columns:
            return np.zeros(0)
        keys = set(zip(rows[R.STUDY], rows[R.TRIAL_ID], strict=True))
        at_epoch = history[history[R.EPOCH] == fig.epoch]
        mine = [(s, t) in keys for s, t in zip(at_epoch[R.STUDY], at_epoch[R.TRIAL_ID], strict=True)]
        values = at_epoch.loc[mine, fig.column].to_numpy(dtype=float, na_value=np.nan)
    return values[np.isfinite(values)]


def study_overview(trials: pd.DataFrame, quality: str, select: str = SELECT) -> pd.DataFrame:
    """Per study and group: trial counts by stop reason, usable trials, epochs, training time, and the
    best trial's `select` with the `quality` that describes it (the trial chosen on `select`)."""
    rows = []
    usable = is_usable(trials, select=select)
    for (study, group_name), group in trials.groupby([R.STUDY, group_column(trials)], sort=True):
        row = {R.STUDY: study, C.GROUP: group_name, C.N_TRIALS: len(group)}
        row.update({reason: int((group[R.STOP_REASON] == reason).sum()) for reason in R.STOP_REASONS})
        row[C.USABLE] = int(usable[group.index].sum())
        row[R.EPOCHS_RUN] = int(group[R.EPOCHS_RUN].fillna(0).sum())
        row[R.TRAIN_SECONDS] = float(group[R.TRAIN_SECONDS].sum(min_count=1))
        best = best_label(group, select)
        row[select] = float(group.loc[best, select]) if best is not None else float("nan")
        row[quality] = float(group.loc[best, quality]) if best is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def front_table(trials: pd.DataFrame, select: str = SELECT) -> pd.DataFrame:
    """Per group, which usable trials are on each front (validation quality vs size, vs time, vs both)."""
    rows = []
    objectives = front_objectives(select)
    usable = is_usable(trials, select=select)
    for group_name, group in trials.groupby(group_column(trials), sort=True):
        for objs in (objectives[:2], (objectives[0], objectives[2]), objectives):
            front = usable_front(group, objs, select)
            rows.append({C.GROUP: group_name, C.AXIS: " vs ".join(o.column for o in objs),
                         C.N_TRIALS: len(front),
                         R.TRIAL_ID: ", ".join(map(str, group.loc[front, R.TRIAL_ID])),
                         C.NOTE: f"{int((~usable[group.index]).sum())} trial(s) not usable (failed, no "
                                 f"finite {select}, or above the quality threshold) excluded"})
    return pd.DataFrame(rows)
