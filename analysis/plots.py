"""Paper-ready figures (PNG, 200 dpi, Agg backend) from the pure results of the other modules.

Every function takes tidy frames or result records plus an output path, draws one figure,
writes it and returns the path. Both families share one figure wherever they are compared,
always in the same colours; the shared look (palette, names, ticks, theme) is analysis.style.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis import columns as C  # noqa: E402
from analysis.budget import BudgetCurve  # noqa: E402
from analysis.latent import LatentEmbedding  # noqa: E402
from analysis.load import trial_path  # noqa: E402
from analysis.pareto import Objective, pareto_front  # noqa: E402
from analysis.quality import is_usable  # noqa: E402
from analysis.selection import SELECT, family_of, group_column  # noqa: E402
from analysis.style import (  # noqa: E402
    FAMILY_COLORS,
    LATENT,
    LR,
    LR_G,
    STOP_MARKERS,
    apply_style,
    family_name,
    finite_rows,
    footnote,
    group_color,
    label,
    log_y_if_spread,
    name,
    save,
    short_count,
    short_number,
    ticks_for,
    time_label,
)
from models.config import FAMILY_GAN  # noqa: E402
from study import results as R  # noqa: E402


def plot_pareto(trials: pd.DataFrame, path: Path, quality: str = SELECT,
                x_columns: Sequence[str] = (R.PARAMS_TOTAL, R.TRAIN_SECONDS)) -> Path:
    """One panel per (quality, x) pair: every trial as a dot, each group's front among its usable
    trials (analysis.quality) as a staircase. `quality` is the column that chooses: validation FID."""
    apply_style()
    fig, axes = plt.subplots(1, len(x_columns), figsize=(6.0 * len(x_columns), 4.6), sharey=True,
                             squeeze=False)
    by, families = group_column(trials), family_of(trials)
    usable = is_usable(trials, select=quality)
    excluded: dict[str, int] = {}
    for ax, x in zip(axes[0], x_columns, strict=True):
        for group_name, group in trials.groupby(by, sort=True):
            color = group_color(group_name, families)
            front = pareto_front(group[usable[group.index]], (Objective(quality), Objective(x)))
            shown = finite_rows(group, [quality, x])
            excluded[group_name] = max(excluded.get(group_name, 0), len(group) - len(shown))
            ax.scatter(shown[x], shown[quality], s=28, color=color, alpha=0.45, linewidths=0)
            best = group.loc[list(front.front)].sort_values(x)
            ax.step(best[x], best[quality], where="post", color=color, lw=2,
                    label=f"{family_name(group_name)} front ({len(best)} of {len(group)})")
            ax.scatter(best[x], best[quality], s=60, color=color, edgecolor="black", linewidth=0.8, zorder=3)
        ax.set_xscale("log")
        ticks_for(ax.xaxis, x)
        ax.set_xlabel(time_label(trials) if x == R.TRAIN_SECONDS else label(x))
        ax.set_title(f"{name(quality)} vs {name(x)}")
    axes[0][0].set_ylabel(label(quality))
    log_y_if_spread(axes[0][0], trials[quality])
    axes[0][0].legend(loc="best")
    dropped = ", ".join(f"{family_name(f)} {n}" for f, n in sorted(excluded.items()) if n)
    note = "Fronts use only usable trials (analysis.quality.is_usable). "
    footnote(fig, note + (f"Not shown (no finite value): {dropped} trials." if dropped else ""))
    fig.tight_layout()
    return save(fig, path)


def plot_fid_curves(curves: pd.DataFrame, path: Path, metric: str = R.VAL_FID) -> Path:
    """Metric vs epoch per trial, one panel per family; a trial's end is marked by why it ended."""
    apply_style()
    families = sorted(curves[R.FAMILY].unique()) or [FAMILY_GAN]
    fig, axes = plt.subplots(1, len(families), figsize=(5.6 * len(families), 4.4), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        color = group_color(family)
        rows = curves[curves[R.FAMILY] == family]
        for _, trial in rows.groupby([R.STUDY, R.TRIAL_ID], sort=False):
            ax.plot(trial[R.EPOCH], trial[metric], color=color, alpha=0.55, lw=1.2)
            end = trial.iloc[-1]
            ax.scatter([end[R.EPOCH]], [end[metric]], marker=STOP_MARKERS.get(end[R.STOP_REASON], "o"), s=55,
                       color=color, edgecolor="black", linewidth=0.7, zorder=3)
        ax.set_title(f"{family_name(family)} ({rows.groupby([R.STUDY, R.TRIAL_ID]).ngroups} trials)")
        ax.set_xlabel(label(R.EPOCH))
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].set_ylabel(label(metric))
    log_y_if_spread(axes[0][0], curves[metric])
    handles = [plt.Line2D([], [], ls="", marker=m, color="0.4", markeredgecolor="black", markersize=8,
                          label=reason)
               for reason, m in STOP_MARKERS.items() if reason in set(curves[R.STOP_REASON])]
    if handles:
        axes[0][-1].legend(handles=handles, title="trial ended", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return save(fig, path)


def plot_budget(curves: Mapping[str, BudgetCurve], path: Path,
                family_of: Mapping[str, str] | None = None) -> Path:
    """Expected test FID of the lowest-validation-FID trial among k, per group, with its exact
    95 % range; left over the number of trials k, right over cumulative training seconds."""
    apply_style()
    fig, axes = plt.subplots(1, 2, figsize=(12.4, 4.6), sharey=True)
    for ax, over in zip(axes, ("k", "seconds"), strict=True):
        for group, curve in sorted(curves.items()):
            color = group_color(group, family_of)
            x = curve.budgets if over == "k" else curve.seconds
            ax.fill_between(x, curve.low, curve.high, color=color, alpha=0.15, lw=0)
            for edge in (curve.low, curve.high):
                ax.plot(x, edge, color=color, lw=0.8, ls="--", alpha=0.8)
            failed = f", {curve.n_failed} failed" if curve.n_failed else ""
            ax.plot(x, curve.expected_best, color=color, lw=2, marker="o", markersize=4,
                    label=f"{family_name(group)} (n = {curve.n_trials}{failed})")
        if over == "k":
            ax.set_xlabel("budget: number of trials k")
            ax.xaxis.get_major_locator().set_params(integer=True)
        else:
            ax.set_xlabel("budget: k x mean training seconds per trial (s)")
    some = next(iter(curves.values()), None)
    metric = some.metric if some else R.TEST_FID
    select = some.select if some else SELECT
    axes[0].set_ylabel(f"expected {name(metric)} (lower is better)")
    log_y_if_spread(axes[0], [v for c in curves.values() for v in c.low + c.high])
    if some:
        fig.suptitle(f"{name(metric)} of the trial with the lowest {name(select)} among k "
                     f"(expected, exact {some.level:.0%} range)", fontweight="bold")
    axes[0].legend(loc="upper right")
    fig.tight_layout()
    return save(fig, path)


def hyperparameter_frame(trials: pd.DataFrame, quality: str = R.TEST_FID) -> pd.DataFrame:
    """Trials with a finite `quality`: family, one learning rate (the generator's for a GAN, whose
    discriminator rate is searched separately), latent size and total parameters."""
    lr = pd.Series(np.nan, index=trials.index, dtype=float)
    for column in (LR, LR_G):
        if column in trials:
            lr = lr.fillna(trials[column].astype(float))
    latent = trials[LATENT] if LATENT in trials else pd.Series(np.nan, index=trials.index)
    frame = pd.DataFrame({R.FAMILY: trials[R.FAMILY], LR: lr, LATENT: latent,
                          R.PARAMS_TOTAL: trials[R.PARAMS_TOTAL], quality: trials[quality]})
    return finite_rows(frame, [quality])


def plot_hyperparameters(trials: pd.DataFrame, path: Path, quality: str = R.TEST_FID) -> Path:
    """Quality vs learning rate, latent size and total parameters, both families on each panel."""
    apply_style()
    frame = hyperparameter_frame(trials, quality)
    panels = ((LR, "learning rate (Adam; GAN: generator's, log scale)"),
              (LATENT, "latent size (dimensions, log scale)"),
              (R.PARAMS_TOTAL, label(R.PARAMS_TOTAL)))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), sharey=True)
    for ax, (column, xlabel) in zip(axes, panels, strict=True):
        for family, group in frame.groupby(R.FAMILY, sort=True):
            ax.scatter(group[column], group[quality], s=40, alpha=0.75,
                       color=group_color(family),
                       edgecolor="white", linewidth=0.5, label=family_name(family))
        ax.set_xscale("log", base=2 if column == LATENT else 10)
        ticks_for(ax.xaxis, column)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(label(quality))
    log_y_if_spread(axes[0], frame[quality])
    axes[0].legend(loc="best")
    fig.suptitle("Hyperparameter effects", fontweight="bold")
    fig.tight_layout()
    return save(fig, path)


def plot_importances(importances: pd.DataFrame, path: Path) -> Path:
    """Optuna's parameter importances (analysis.importance), one bar panel per study."""
    apply_style()
    studies = list(dict.fromkeys(importances[R.STUDY]))
    fig, axes = plt.subplots(1, len(studies), figsize=(6.5 * len(studies), 0.45 * max(
        importances.groupby(R.STUDY).size()) + 1.8), squeeze=False)
    for ax, study in zip(axes[0], studies, strict=True):
        rows = importances[importances[R.STUDY] == study].sort_values(C.IMPORTANCE)
        family = str(rows[R.FAMILY].iloc[0])
        ax.barh(rows[C.PARAMETER], rows[C.IMPORTANCE], color=group_color(family))
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance (fANOVA share of validation FID variance)")
        ax.set_title(f"{study} ({family_name(family)}, {int(rows[C.N_TRIALS].iloc[0])} complete trials)")
    fig.suptitle("Optuna hyperparameter importances", fontweight="bold")
    fig.tight_layout()
    return save(fig, path)


def plot_sample_mosaic(trials: pd.DataFrame, labels: Sequence, path: Path, quality: str = R.TEST_FID,
                       columns: int = 4, max_panels: int = 16, select: str = SELECT) -> Path:
    """The last-epoch sample grid of each listed trial (chosen by the caller on validation),
    titled with its family, size, its validation FID and the test `quality` that describes it."""
    apply_style()
    rows_ = trials.loc[list(labels)[:max_panels]]
    n = max(len(rows_), 1)
    ncols = min(columns, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.9 * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, (_, row) in zip(axes.flat, rows_.iterrows(), strict=False):
        grid = trial_path(row) / R.SAMPLES_DIR / R.sample_grid_name(int(row[R.EPOCHS_RUN]))
        if grid.is_file():
            ax.imshow(plt.imread(grid), cmap="gray", interpolation="nearest")
        else:
            ax.text(0.5, 0.5, "no sample grid", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{family_name(row[R.FAMILY])} {row[R.ARCH]} · {row[R.TRIAL_ID]}\n"
                     f"{short_count(row[R.PARAMS_TOTAL])} params · val {short_number(row[select])} · "
                     f"{name(quality)} {short_number(row[quality])}", fontsize=10,
                     color=FAMILY_COLORS.get(row[R.FAMILY], "black"))
    fig.suptitle("Samples of the Pareto-optimal trials (last epoch, fixed noise)", fontweight="bold")
    return save(fig, path)


def plot_latent(embedding: LatentEmbedding, path: Path) -> Path:
    """2-D latent coordinates of test images, coloured by digit."""
    apply_style()
    fig, ax = plt.subplots(figsize=(6.6, 5.6))
    palette = sns.color_palette("tab10", 10)
    for digit in range(10):
        mask = embedding.labels == digit
        ax.scatter(embedding.coords[mask, 0], embedding.coords[mask, 1], s=7, alpha=0.7, color=palette[digit],
                   linewidths=0, label=str(digit))
    if embedding.method == "pca":
        ev = embedding.explained_variance
        ax.set_xlabel(f"PC 1 of encoder means ({ev[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({ev[1]:.0%} of variance)")
    elif embedding.method == "tsne":
        ax.set_xlabel("t-SNE 1 (no units)")
        ax.set_ylabel("t-SNE 2 (no units)")
    else:
        ax.set_xlabel("latent dimension 1 (encoder mean)")
        ax.set_ylabel("latent dimension 2 (encoder mean)")
    ax.set_title(f"VAE latent space · {embedding.trial_id} (latent {embedding.latent_dim}, "
                 f"{len(embedding.labels)} test images)")
    ax.legend(title="digit", markerscale=2.5, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return save(fig, path)
