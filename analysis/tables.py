"""The seed studies' table, reproduced: our best, seed-configuration and Pareto trials per family,
side by side with the numbers the seed studies printed, and which of those are comparable.

Pure functions over the loaded trials/history frames; the report renders what they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis import columns as C
from analysis.pareto import MINIMIZE, Objective, pareto_front
from models.config import (
    ARCH_CONV,
    ARCH_DCGAN,
    ARCH_MLP,
    FAMILY_GAN,
    FAMILY_VAE,
    TrainConfig,
    seed_model_config,
)
from study import results as R

ROLE_BEST = "best"  # lowest validation FID of the family (selection never looks at test numbers)
ROLE_SEED = "seed config"  # the model configuration a seed study printed
ROLE_PARETO = "Pareto"  # non-dominated in (FID, total parameters, training seconds)

COMPARABLE_YES = "yes"
COMPARABLE_CAVEATS = "with caveats"
COMPARABLE_NO = "no"

SEED_STUDY_1 = "seed study 1 (TensorFlow DCGAN vs conv VAE)"
SEED_STUDY_2 = "seed study 2 (PyTorch MLP GAN vs MLP VAE)"

# The comparison table's columns, in order.
TABLE_COLUMNS = (R.FAMILY, C.ROLE, R.TRIAL_ID, R.ARCH, R.PARAMS_TOTAL, R.TRAIN_SECONDS, R.EPOCHS_RUN, R.STOP_REASON,
                 R.FINAL_VAL_FID, R.TEST_FID, R.TEST_INCEPTION_FID, R.TEST_KID, R.TEST_IS, R.TEST_RECON_MSE,
                 R.TEST_NELBO)


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


_INCEPTION_NOTE = ("Inception FID on both sides, but the seed study states neither its sample counts nor its "
                   "reference images (ours: 10,000 generated vs the 10,000 test images, as Lucic et al. 2018)")
_DOMAIN_NOTE = "domain FID uses our MNIST feature network: a different feature space and scale, never comparable"
_LOSS_NOTE = ("training loss in nats per image (BCE summed over pixels + KL), the quantity the seed study "
              "printed; its batch size and data order are unknown and the figure is approximate")

PUBLISHED_FIGURES: tuple[PublishedFigure, ...] = (
    PublishedFigure("FID", FAMILY_GAN, ARCH_DCGAN, 18.24, SEED_STUDY_1, R.TEST_INCEPTION_FID, None,
                    COMPARABLE_CAVEATS, _INCEPTION_NOTE),
    PublishedFigure("FID", FAMILY_GAN, ARCH_DCGAN, 18.24, SEED_STUDY_1, R.TEST_FID, None, COMPARABLE_NO, _DOMAIN_NOTE),
    PublishedFigure("FID", FAMILY_VAE, ARCH_CONV, 28.56, SEED_STUDY_1, R.TEST_INCEPTION_FID, None,
                    COMPARABLE_CAVEATS, _INCEPTION_NOTE),
    PublishedFigure("FID", FAMILY_VAE, ARCH_CONV, 28.56, SEED_STUDY_1, R.TEST_FID, None, COMPARABLE_NO, _DOMAIN_NOTE),
    PublishedFigure("Inception Score", FAMILY_GAN, ARCH_DCGAN, 2.76, SEED_STUDY_1, R.TEST_IS, None, COMPARABLE_NO,
                    "our IS uses an MNIST classifier (scale 1..10, real test digits score about 10); the seed "
                    "study does not say which classifier gave 2.76"),
    PublishedFigure("reconstruction error", FAMILY_VAE, ARCH_CONV, 0.092, SEED_STUDY_1, R.TEST_RECON_MSE, None,
                    COMPARABLE_CAVEATS, "ours is per-pixel MSE in [0, 1] pixel units on the test set; the seed "
                    "study does not define its error"),
    PublishedFigure("VAE loss, first epoch", FAMILY_VAE, ARCH_MLP, 178.0, SEED_STUDY_2, R.LOSS_NELBO, 1,
                    COMPARABLE_CAVEATS, _LOSS_NOTE),
    PublishedFigure("VAE loss after 50 epochs", FAMILY_VAE, ARCH_MLP, 135.0, SEED_STUDY_2, R.LOSS_NELBO, 50,
                    COMPARABLE_CAVEATS, _LOSS_NOTE + "; blank when our trial stopped before epoch 50"),
)


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


def best_trials(trials: pd.DataFrame, select: str = R.FINAL_VAL_FID) -> dict[str, object]:
    """Per family, the index label of the trial with the lowest finite `select` (first on ties)."""
    best = {}
    for family, group in trials.groupby(R.FAMILY, sort=True):
        finite = group[np.isfinite(group[select].to_numpy(dtype=float, na_value=np.nan))]
        if len(finite):
            best[str(family)] = finite[select].idxmin()
    return best


def front_objectives(quality: str = R.TEST_FID) -> tuple[Objective, ...]:
    """The three study objectives: quality, network size, training time, all minimised."""
    return (Objective(quality, MINIMIZE), Objective(R.PARAMS_TOTAL, MINIMIZE), Objective(R.TRAIN_SECONDS, MINIMIZE))


def comparison_table(trials: pd.DataFrame, quality: str = R.TEST_FID, select: str = R.FINAL_VAL_FID) -> pd.DataFrame:
    """One row per (family, trial) that is the best, a seed configuration or Pareto-optimal.

    A trial with several roles appears once with its roles joined ('best, Pareto'). Rows are
    ordered by family, then best, seed configs and Pareto trials, each by `quality`.
    """
    roles: dict[object, list[str]] = {}
    for label in best_trials(trials, select).values():
        roles.setdefault(label, []).append(ROLE_BEST)
    for label in trials.index[is_seed_config(trials)]:
        roles.setdefault(label, []).append(ROLE_SEED)
    for _, group in trials.groupby(R.FAMILY, sort=True):
        for label in pareto_front(group, front_objectives(quality)).front:
            roles.setdefault(label, []).append(ROLE_PARETO)
    order = {ROLE_BEST: 0, ROLE_SEED: 1, ROLE_PARETO: 2}
    table = trials.loc[list(roles), [c for c in TABLE_COLUMNS if c != C.ROLE]].copy()
    table.insert(1, C.ROLE, [", ".join(roles[label]) for label in table.index])
    table["_rank"] = [order[roles[label][0]] for label in table.index]
    table = table.sort_values([R.FAMILY, "_rank", quality], kind="stable", na_position="last")
    return table.drop(columns="_rank").reset_index(drop=True)


def published_comparison(trials: pd.DataFrame, history: pd.DataFrame, select: str = R.FINAL_VAL_FID,
                         figures: Sequence[PublishedFigure] = PUBLISHED_FIGURES) -> pd.DataFrame:
    """Each printed seed-study number beside ours: the same configuration (the seed config of the
    seed study's architecture, mean over its trials) and the family's best trial."""
    seed_mask = is_seed_config(trials)
    best = best_trials(trials, select)
    rows = []
    for fig in figures:
        seed_rows = trials[seed_mask & (trials[R.FAMILY] == fig.family) & (trials[R.ARCH] == fig.arch)]
        best_rows = trials.loc[[best[fig.family]]] if fig.family in best else trials.iloc[:0]
        rows.append({
            C.QUANTITY: fig.quantity,
            R.FAMILY: fig.family,
            C.PUBLISHED: fig.value,
            C.SOURCE: fig.source,
            C.OURS_SEED_CONFIG: _value(fig, seed_rows, history),
            C.OURS_BEST: _value(fig, best_rows, history),
            C.COMPARABLE: fig.comparable,
            C.NOTE: f"ours: {fig.column}" + (f" at epoch {fig.epoch}" if fig.epoch else "") + f"; {fig.note}",
        })
    return pd.DataFrame(rows, columns=[C.QUANTITY, R.FAMILY, C.PUBLISHED, C.SOURCE, C.OURS_SEED_CONFIG, C.OURS_BEST,
                                       C.COMPARABLE, C.NOTE])


def _value(fig: PublishedFigure, rows: pd.DataFrame, history: pd.DataFrame) -> float:
    """Mean of our finite values for `fig` over `rows` (NaN when none has one)."""
    if fig.epoch is None:
        values = rows[fig.column].to_numpy(dtype=float, na_value=np.nan)
    else:
        if fig.column not in history.columns:
            return float("nan")
        keys = set(zip(rows[R.STUDY], rows[R.TRIAL_ID], strict=True))
        at_epoch = history[history[R.EPOCH] == fig.epoch]
        mine = [(s, t) in keys for s, t in zip(at_epoch[R.STUDY], at_epoch[R.TRIAL_ID], strict=True)]
        values = at_epoch.loc[mine, fig.column].to_numpy(dtype=float, na_value=np.nan)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")
