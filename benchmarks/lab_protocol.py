"""The search lab's protocol (issue 28, item 5): many paired simulated studies per arm, a summary
table and an anytime figure.

An arm is family x trials x workers x sampler x scheduler. Repetition r of every arm runs with
sampler seed r and the surrogate's noise generator (r, k) for its k-th trial, so arms pair by
repetition. Arms run in priority tiers (`TIERS`): the product's scale first (64 trials, W = 2 and
8, random vs the launcher's TPE vs Optuna's default TPE, no stopping vs the quick preset's ASHA),
then 16 trials, then QMC and the ASHA variants, then GP. Each repetition's result is one row,
appended in parts under <out>/reps/ (a parquet dataset), so a run stopped at any point resumes
with `--resume` and skips the repetitions it has.

Per arm, `summarize` gives: the IQM of the noise-free final validation FID of the trial the product
picks (on its noisy final-epoch FID), with a 95 % percentile bootstrap interval over repetitions; the
compute the arm needs to reach random search's (no stopping) final pick on the same repetition, as a
share of random search's compute; and the probability that the arm's pick beats random search's on
the same repetition (ties count half), with its bootstrap interval. rliable (Agarwal et al. 2021)
computes the same IQM and bootstrap, but it does not import here: rliable 1.2.0 needs arch < 8,
and arch 7.x fails to import under this project's pandas 3 (`deprecate_kwarg`); its probability of
improvement is also unpaired (all pairs of runs), where the lab's repetitions pair.
"""

from __future__ import annotations

import itertools
import json
import os
import textwrap
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.lab_sim import QUICK_ASHA, TPE_DEFAULT, Arm, simulate, surrogate_source
from benchmarks.lab_surrogate import LabTable, Surrogate
from study.engine.plan import StudyPlan

BASELINE = ("random", "none")  # random search without stopping: Lucic et al.'s protocol
KEY = ["family", "trials", "workers", "sampler", "scheduler"]
REPS_DIR = "reps"
SUMMARY_CSV = "lab_summary.csv"
FIGURE = "lab_anytime.png"
TABLE_JSON = "lab_table.json"
RESAMPLES = 2_000
BLOCK = 10  # repetitions of every arm in a tier before the next block (so arms stay paired as they grow)


def iqm(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean along `axis` (scipy's trim_mean(0.25): the mean of the middle half)."""
    from scipy.stats import trim_mean

    return np.asarray(trim_mean(values, 0.25, axis=axis))


def bootstrap_iqm(values: np.ndarray, resamples: int = RESAMPLES,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95 % percentile bootstrap interval of the IQM over axis 0 (repetitions, resampled with
    replacement) of `values` [reps, points]."""
    values = np.asarray(values, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    stats = np.stack([iqm(values[row]) for row in draws])
    return np.percentile(stats, 2.5, axis=0), np.percentile(stats, 97.5, axis=0)


def tiers(
    trials: Sequence[int], workers: Sequence[int], samplers: Sequence[str], schedulers: Sequence[str]
) -> list[list[tuple[int, int, str, str]]]:
    """(trials, workers, sampler, scheduler) per tier, most important first, among those asked for."""
    core_samplers = [s for s in ("random", "tpe", TPE_DEFAULT) if s in samplers]
    core_schedulers = [s for s in ("none", QUICK_ASHA) if s in schedulers]
    big, rest = max(trials), sorted(set(trials) - {max(trials)})
    out = [[(big, w, s, c) for w in workers for s in core_samplers for c in core_schedulers]]
    out += [[(n, w, s, c) for n in rest for w in workers for s in core_samplers for c in core_schedulers]]
    out += [
        [
            (n, w, s, c)
            for n in sorted(trials)
            for w in workers
            for s in [s for s in samplers if s not in ("gp",)]
            for c in schedulers
            if (s not in core_samplers or c not in core_schedulers)
        ]
    ]
    out += [
        [(n, w, "gp", c) for n in sorted(trials) for w in workers for c in core_schedulers]
        if "gp" in samplers
        else []
    ]
    return [t for t in out if t]


@dataclass
class Lab:
    """The fitted surrogates and base plans of the families in a table."""

    tables: dict[str, LabTable]
    surrogates: dict[str, Surrogate]

    @classmethod
    def fit(cls, tables: dict[str, LabTable]) -> Lab:
        return cls(tables, {f: Surrogate.fit(t) for f, t in tables.items()})

    def run(self, family: str, arm: Arm, rep: int) -> dict:
        table = self.tables[family]
        base = StudyPlan.from_json(table.plan_json)
        started = time.process_time()
        result = simulate(
            arm, arm.plan(base, rep), surrogate_source(self.surrogates[family], table.features, rep)
        )
        pick = result.pick()
        return dict(
            family=family,
            trials=arm.trials,
            workers=arm.workers,
            sampler=arm.sampler,
            scheduler=arm.scheduler,
            rep=rep,
            pick_true=float(pick["true_final"]),
            pick_observed=float(pick["observed_final"]),
            pick_epochs=int(pick["epochs"]),
            compute_s=float(result.anytime["compute_s"].iloc[-1]),
            wall_s=float(result.trials["end"].max()),
            stopped=int((result.trials["epochs"] < table.max_epochs).sum()),
            guided=int(result.trials["guided"].sum()),
            anytime_compute=result.anytime["compute_s"].to_numpy(),
            anytime_pick=result.anytime["pick_true"].to_numpy(),
            cpu_s=time.process_time() - started,
        )


def write_part(out_dir: Path, rows: list[dict]) -> None:
    """Append repetitions as a new part (named by time and process, so two runs, one per family,
    can share a directory); written aside and renamed, so a killed run leaves no half part."""
    name = f"part-{time.time_ns()}-{os.getpid()}.parquet"
    staging = out_dir / REPS_DIR / f".{name}"
    pd.DataFrame(rows).to_parquet(staging)
    os.replace(staging, out_dir / REPS_DIR / name)


def done_reps(out_dir: Path) -> pd.DataFrame:
    parts = sorted((out_dir / REPS_DIR).glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame()


def run_protocol(
    lab: Lab,
    out_dir: Path,
    families: Sequence[str],
    plan: list[list[tuple[int, int, str, str]]],
    reps: int,
    cpu_budget_s: float,
    log=print,
) -> int:
    """Run the missing repetitions tier by tier, BLOCK repetitions of every arm of a tier at a time,
    until every arm has `reps` or `cpu_budget_s` of CPU is spent; returns the repetitions run."""
    (out_dir / REPS_DIR).mkdir(parents=True, exist_ok=True)
    have = done_reps(out_dir)
    done = set() if have.empty else set(map(tuple, have[[*KEY, "rep"]].itertuples(index=False)))
    todo = [
        (f, *arm, rep)
        for tier in plan
        for start in range(0, reps, BLOCK)
        for f in families
        for arm in tier
        for rep in range(start, min(reps, start + BLOCK))
    ]
    todo = [t for t in todo if t not in done]
    started, ran, rows = time.process_time(), 0, []
    cost: dict[int, list[float]] = {}  # trials -> CPU seconds per repetition
    log(f"lab: {len(done)} repetitions on file, {len(todo)} to run, CPU budget {cpu_budget_s / 60:.0f} min")
    last_print = time.monotonic()
    for i, (family, trials, workers, sampler, scheduler, rep) in enumerate(todo):
        if time.process_time() - started > cpu_budget_s:
            log(f"lab: CPU budget spent after {ran} repetitions; `--resume` continues")
            break
        row = lab.run(family, Arm(sampler, scheduler, trials, workers), rep)
        rows.append(row)
        cost.setdefault(trials, []).append(row["cpu_s"])
        ran += 1
        if len(rows) >= 50 or i == len(todo) - 1:
            write_part(out_dir, rows)
            rows = []
        if time.monotonic() - last_print > 30 or i == len(todo) - 1:
            left = sum(
                np.mean(cost.get(t[1], [max(np.mean(v) for v in cost.values())])) for t in todo[i + 1 :]
            )
            spent = time.process_time() - started
            log(
                f"lab: {i + 1}/{len(todo)} repetitions ({family} {trials} trials W={workers} {sampler} "
                f"{scheduler} rep {rep}); CPU {spent / 60:.1f} min, about {left / 60:.0f} CPU min left "
                "for all, "
                f"{max(0.0, cpu_budget_s - spent) / 60:.0f} min of budget left"
            )
            last_print = time.monotonic()
    if rows:
        write_part(out_dir, rows)
    return ran


def _paired(frame: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    return frame.merge(base, on="rep", suffixes=("", "_base"))


def reach_share(row: pd.Series) -> float:
    """Compute (share of the baseline's total) at which the arm's pick first reaches the baseline's
    final pick on the same repetition (inf: never)."""
    reached = np.flatnonzero(np.asarray(row["anytime_pick"]) <= row["pick_true_base"] + 1e-9)
    return (
        float(np.asarray(row["anytime_compute"])[reached[0]] / row["compute_s_base"])
        if len(reached)
        else np.inf
    )


def summarize(reps: pd.DataFrame, provisional: str = "", seed: int = 0) -> pd.DataFrame:
    """One row per arm (KEY) with its repetitions (module docstring)."""
    rows = []
    for key, frame in reps.groupby(KEY, sort=True):
        family, trials, workers, sampler, scheduler = key
        frame = frame.sort_values("rep")
        picks = frame["pick_true"].to_numpy()
        low, high = bootstrap_iqm(picks[:, None], resamples=RESAMPLES, seed=seed)
        row = dict(zip(KEY, key, strict=True)) | dict(
            reps=len(frame),
            pick_fid_iqm=float(iqm(picks)),
            pick_fid_lo=float(low[0]),
            pick_fid_hi=float(high[0]),
            compute_s_iqm=float(iqm(frame["compute_s"].to_numpy())),
            stopped_mean=float(frame["stopped"].mean()),
            guided_mean=float(frame["guided"].mean()) if "guided" in frame else np.nan,
            cpu_s_per_rep=float(frame["cpu_s"].median()),
        )
        base = reps[
            (reps["family"] == family)
            & (reps["trials"] == trials)
            & (reps["workers"] == workers)
            & (reps["sampler"] == BASELINE[0])
            & (reps["scheduler"] == BASELINE[1])
        ]
        paired = _paired(frame, base[["rep", "pick_true", "compute_s"]])
        if len(paired):
            shares = paired.apply(reach_share, axis=1).to_numpy()
            wins = (paired["pick_true"] < paired["pick_true_base"]) + 0.5 * (
                paired["pick_true"] == paired["pick_true_base"]
            )
            draws = np.random.default_rng(seed).integers(0, len(wins), size=(RESAMPLES, len(wins)))
            boot = wins.to_numpy(dtype=float)[draws].mean(axis=1)
            row |= dict(
                paired_reps=len(paired),
                reach_random_share=float(np.isfinite(shares).mean()),
                compute_to_reach_median=float(np.median(shares)),
                p_improve=float(wins.mean()),
                p_improve_lo=float(np.percentile(boot, 2.5)),
                p_improve_hi=float(np.percentile(boot, 97.5)),
            )
        rows.append(row | dict(table=provisional or "full"))
    return pd.DataFrame(rows)


def _on_grid(compute: Iterable[np.ndarray], picks: Iterable[np.ndarray], grid: np.ndarray) -> np.ndarray:
    """[reps, grid]: each repetition's pick at each compute point (NaN before its first trial ends)."""
    out = []
    for c, p in zip(compute, picks, strict=True):
        index = np.searchsorted(np.asarray(c), grid, side="right") - 1
        out.append(np.where(index >= 0, np.asarray(p)[np.clip(index, 0, None)], np.nan))
    return np.asarray(out)


ARM_STYLE = {
    ("random", "none"): ("random, no stopping", "C0", "-"),
    ("random", QUICK_ASHA): ("random + ASHA", "C0", "--"),
    ("tpe", "none"): ("TPE (launcher), no stopping", "C3", "-"),
    ("tpe", QUICK_ASHA): ("TPE (launcher) + ASHA", "C3", "--"),
    (TPE_DEFAULT, "none"): ("TPE (Optuna defaults), no stopping", "C2", "-"),
    (TPE_DEFAULT, QUICK_ASHA): ("TPE (Optuna defaults) + ASHA", "C2", "--"),
}


def plot_anytime(reps: pd.DataFrame, path: Path, provisional: str = "",
                 clocks: dict[str, str] | None = None) -> None:
    """Rows: families; columns: trials x workers; the core arms' IQM pick over compute, 95 % band.
    `clocks`: per family, whose seconds the table's clock is (e.g. "NVIDIA H200"; the x axis says so).
    The y axis stops at twice the worst final IQM: the first trials' picks are off the scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted(reps["family"].unique())
    columns = sorted({(t, w) for t, w in zip(reps["trials"], reps["workers"], strict=True)})
    fig, axes = plt.subplots(
        len(families), len(columns), figsize=(max(6.6, 3.3 * len(columns)), 2.9 * len(families) + 1.3),
        squeeze=False
    )
    for (r, family), (c, (trials, workers)) in itertools.product(enumerate(families), enumerate(columns)):
        ax = axes[r][c]
        cell = reps[(reps["family"] == family) & (reps["trials"] == trials) & (reps["workers"] == workers)]
        if cell.empty:
            ax.set_visible(False)
            continue
        grid = np.linspace(0, np.percentile(cell["compute_s"], 90), 200)
        n_reps, finals, lows = 0, [], []
        for (sampler, scheduler), (label, color, style) in ARM_STYLE.items():
            arm = cell[(cell["sampler"] == sampler) & (cell["scheduler"] == scheduler)].sort_values("rep")
            if arm.empty:
                continue
            values = _on_grid(arm["anytime_compute"], arm["anytime_pick"], grid)
            keep = np.isfinite(values).all(axis=0)  # every repetition has a pick
            low, high = bootstrap_iqm(values[:, keep], resamples=RESAMPLES // 4)
            curve = iqm(values[:, keep])
            ax.plot(grid[keep], curve, color=color, ls=style, lw=1.3, label=label)
            ax.fill_between(grid[keep], low, high, color=color, alpha=0.12, lw=0)
            n_reps = max(n_reps, len(arm))
            if len(curve):
                finals.append(float(curve[-1]))
                lows.append(float(np.nanmin(low)))
        if finals:
            ax.set_ylim(0.95 * min(lows), 2 * max(finals))
        ax.set_title(f"{family.upper()}, {trials} trials, W={workers} ({n_reps} reps)", fontsize=8)
        clock = (clocks or {}).get(family)
        ax.set_xlabel(f"compute spent (simulated {clock + ' ' if clock else ''}trial seconds)", fontsize=7)
        ax.set_ylabel("noise-free val FID of the pick", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3, lw=0.5)
    handles, labels = {}, []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    title = "IQM over paired repetitions, band: 95 % bootstrap interval"
    height = fig.get_figheight()
    spare = [ax for ax in axes.flat if not ax.get_visible()]
    if spare:  # the legend in an empty panel rather than below the figure
        spare[-1].set_visible(True)
        spare[-1].axis("off")
        spare[-1].legend([handles[lab] for lab in labels], labels, loc="center", fontsize=7,
                         frameon=False, title=title, title_fontsize=7)
        if provisional:
            fig.suptitle(textwrap.fill(f"{provisional} (lab_table.json)", 150), color="firebrick", fontsize=8)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / height) if provisional else None)
        fig.savefig(path, dpi=200, bbox_inches="tight")
        plt.close(fig)
        return
    if provisional:  # on the figure itself; the reasons are in lab_summary.csv and lab_table.json
        # the table's own reasons (a random-draw table short of configurations is not TPE-biased)
        fig.suptitle(textwrap.fill(f"{provisional} (lab_table.json)", 150), color="firebrick", fontsize=8)
    fig.legend(
        [handles[lab] for lab in labels],
        labels,
        loc="lower center",
        ncol=3,
        fontsize=7,
        frameon=False,
        title=title,
        title_fontsize=7,
    )
    fig.tight_layout(rect=(0, 1.0 / height, 1, 1 - 0.3 / height))
    fig.savefig(path, dpi=200, bbox_inches="tight")
    plt.close(fig)


def write_table_json(
    out_dir: Path, studies: dict[str, Sequence[str]], tables: dict[str, LabTable], lines: dict[str, str]
) -> None:
    """<out>/lab_table.json: per family, its studies, description, why it is provisional and the
    surrogate's validation, and all families' studies together (families of an earlier run into the
    same directory kept)."""
    path = out_dir / TABLE_JSON
    families = json.loads(path.read_text())["families"] if path.exists() else {}
    families |= {f: {"studies": sorted(map(str, studies.get(f, []))), "describe": t.describe(),
                     "provisional": t.provisional, "notes": sorted(set(t.notes)),
                     "validation": lines.get(f, "")} for f, t in tables.items()}
    union = sorted({s for info in families.values() for s in info.get("studies", [])})
    staging = out_dir / f".{TABLE_JSON}.{os.getpid()}"
    staging.write_text(json.dumps({"studies": union, "families": families}, indent=1))
    os.replace(staging, path)
