"""The figures' look, shared by every plot (analysis.plots): the families' colours (Okabe & Ito's
colour-blind-safe palette), stop-reason markers, columns' names in prose and on axes, log ticks,
the seaborn theme and saving at DPI (PNG, Agg backend).
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
from matplotlib import ticker  # noqa: E402

from models.config import FAMILY_GAN, FAMILY_VAE  # noqa: E402
from study import results as R  # noqa: E402

LR = R.hp_column("lr")  # the VAE's learning rate; in hyperparameter_frame also the GAN generator's
LR_G = R.hp_column("lr_g")
LATENT = R.hp_column("latent_dim")


DPI = 200
FAMILY_COLORS = {FAMILY_GAN: "#D55E00", FAMILY_VAE: "#0072B2"}
STOP_MARKERS = {R.STOP_COMPLETED: "o", R.STOP_EARLY: "X", R.STOP_DIVERGED: "v", R.STOP_ERROR: "s",
                R.STOP_OOM: "D"}
NAMES = {
    R.TEST_FID: "test FID",
    R.VAL_FID: "validation FID",
    R.FINAL_VAL_FID: "final validation FID",
    R.BEST_VAL_FID: "best validation FID",
    R.TEST_INCEPTION_FID: "test Inception FID",
    R.PARAMS_TOTAL: "network size",
    R.TRAIN_SECONDS: "training time",
    R.EPOCH: "epoch",
}
AXIS_LABELS = {
    R.PARAMS_TOTAL: "total parameters (count, log scale)",
    # training steps only: the size/time trade-off is about training (a trial's scoring and checkpoints
    # are in trials.parquet's trial_seconds, what a study costs)
    R.TRAIN_SECONDS: "training time (s, training steps only, log scale)",
}


def name(column: str) -> str:
    """A column's name in prose: 'test FID', 'network size'."""
    return NAMES.get(column, column.replace("_", " "))


def label(column: str) -> str:
    """An axis label with units; FIDs are unitless, lower is better."""
    if column in AXIS_LABELS:
        return AXIS_LABELS[column]
    return f"{name(column)} (lower is better)" if "fid" in column else name(column)


def time_label(trials: pd.DataFrame) -> str:
    """The training-time axis label with what the times were measured on: training seconds depend on
    how many trials shared a GPU (study/results.py TRIALS_PER_GPU), so the axis says its packing."""
    base = AXIS_LABELS[R.TRAIN_SECONDS]
    if R.TRIALS_PER_GPU not in trials or trials[R.TRIALS_PER_GPU].isna().all():
        return base  # a study from before these columns: packing not recorded
    packings = sorted({int(v) for v in trials[R.TRIALS_PER_GPU].dropna()})
    gpus = sorted({str(v) for v in trials.get(R.GPU_NAME, pd.Series(dtype=str)).dropna() if str(v) != "cpu"})
    if packings == [0]:
        where = "on CPUs"
    else:
        share = f"{packings[0]}" if len(packings) == 1 else f"{packings[0]}-{packings[-1]}"
        where = f"up to {share} trial(s) per GPU" + (f", {', '.join(gpus)}" if gpus else ", logical GPU")
    return base[:-1] + f"; {where})"


def plain_log_ticks(axis) -> None:
    """Log-scale ticks as plain numbers (0.2, 1, 30, 1e+05) without crowded minor labels."""
    axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def count_ticks(axis) -> None:
    """Parameter counts as 30k, 100k, 1M."""
    axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: short_count(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def decade_ticks(axis) -> None:
    """Small quantities spanning decades (learning rates) as 10^-4, 10^-3: '5e-05' labels collide."""
    axis.set_major_locator(ticker.LogLocator(base=10))
    axis.set_major_formatter(ticker.LogFormatterSciNotation(base=10))
    axis.set_minor_formatter(ticker.NullFormatter())


def ticks_for(axis, column: str) -> None:
    if column == R.PARAMS_TOTAL:
        count_ticks(axis)
    elif column == LR:
        decade_ticks(axis)
    else:
        plain_log_ticks(axis)


def log_y_if_spread(ax, values, ratio: float = 30.0) -> None:
    """Log y when positive values span more than `ratio` (FIDs of bad and good trials differ by decades)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and v.max() / v.min() > ratio:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)


def short_number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def apply_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.35)
    plt.rcParams.update({"axes.titleweight": "bold", "legend.frameon": True, "savefig.dpi": DPI})


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def family_name(family: str) -> str:
    return str(family).upper()


def group_color(group: str, family_of: Mapping[str, str] | None = None) -> str:
    """A group's colour: its family's (a group is a family, or a study of one)."""
    family = (family_of or {}).get(group, group)
    return FAMILY_COLORS.get(family, "0.3")


def finite_rows(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    values = frame[list(columns)].to_numpy(dtype=float, na_value=np.nan)
    return frame[np.isfinite(values).all(axis=1)]


def footnote(fig, text: str) -> None:
    if text:
        fig.text(0.01, -0.02, text, ha="left", va="top", fontsize=9, color="0.35")


def short_count(n: float) -> str:
    """1234567 -> '1.23M', 84514 -> '84.5k'."""
    n = float(n)
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"
