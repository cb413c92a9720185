"""The search lab's table and surrogate (issue 28, items 1 and 3).

**Table.** `load_table(study_dirs)` reads launcher study directories (study.json, trials.parquet,
history.parquet): every trial's configuration (`config_json`, the training seed apart), its
validation FID at every epoch it ran, and its seconds: `trial_seconds` when trials.parquet has it
(the lean-trials issue), else the training seconds, with a printed note (they leave out evaluation
and the per-trial fixed cost). The table's clock is one machine's: the one that ran most of its runs
(`clock`, from trials.parquet's `gpu_name`); runs trained elsewhere (a GPU table's replicated
configurations re-trained on a CPU) add their learning curves and seed noise, not their seconds.
A table is *provisional* unless every study sampled at random (or by QMC) without a scheduler and
it holds the issue's 150 GAN / 300 VAE configurations: a table of TPE-guided studies over-represents
good regions.

**Surrogate.** `Surrogate.fit(table)`: an extra-trees regressor (Geurts et al. 2006) of log
validation FID on (the configuration's `search_spaces.encode` vector, epoch / last epoch), so every
epoch of every curve trains it, stopped curves included; a second one of log seconds per epoch;
and the seed noise, measured on configurations trained with more than one seed: per epoch the pooled
within-configuration standard deviation of log FID, and the lag-1 correlation of those residuals
across epochs (an AR(1) noise curve). `curves(X)` is the noise-free log-FID curve of each row;
`noise(rng, n)` draws the seed noise of n trials.

**Validation.** `cross_validate(table, folds)`: k-fold over configurations (all seeds of a
configuration in one fold); Spearman's rho between the predicted and the observed (mean over seeds)
final validation FID of the held-out configurations, and the share of the held-out top 10 % the
surrogate ranks in its own top 10 %. The goal is rho >= 0.8.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from search_spaces import SpaceOptions
from search_spaces.encode import SpaceFeatures, encode, space_features
from study import results as R

TRIAL_SECONDS = "trial_seconds"  # a trial's whole wall time (lean-trials issue), when the table has it
SECONDS = "seconds"  # cumulative seconds of a trial at this epoch
CONFIG_KEY = "config_key"
SEED = "seed"
UNBIASED_SAMPLERS = ("random", "qmc")
# the table size: below it a table is provisional
FULL_TABLE_CONFIGS = {"gan": 150, "vae": 300}
GOAL_RHO = 0.8
TOP_SHARE = 0.10
TREES = 300


def machine_name(gpu_name: object) -> str:
    """The machine whose seconds a run counts: its GPU model, or "CPU" (a missing name is a CPU run:
    tables written before the column was kept ran on CPUs)."""
    return gpu_name if isinstance(gpu_name, str) and gpu_name and gpu_name.lower() != "cpu" else "CPU"


def gpu_names(trials: pd.DataFrame) -> pd.Series:
    """A trials table's `gpu_name` column, or None per row where the table has none."""
    return trials[R.GPU_NAME] if R.GPU_NAME in trials.columns else pd.Series([None] * len(trials))


def clock_machine(machines: pd.Series) -> str:
    """The machine that ran most of the runs (ties: the first in name order): a table's clock.
    `machines`: the runs' GPU names or machine names (machine_name maps both to the machine's)."""
    counts = pd.Series([machine_name(g) for g in machines]).value_counts()
    return str(counts[counts == counts.max()].sort_index().index[0]) if len(counts) else "CPU"


def _geometric_mean(values: pd.Series) -> float:
    return float(np.exp(np.log(values.to_numpy(dtype=float)).mean()))


def config_key(config: dict) -> str:
    """A configuration apart from its training seed, as a canonical string."""
    return json.dumps({k: v for k, v in config.items() if k != SEED}, sort_keys=True)


@dataclass
class LabTable:
    """One family's learning-curve table: `configs` (one row per configuration: CONFIG_KEY, the
    config dict) and `curves` (CONFIG_KEY, SEED, EPOCH, VAL_FID, SECONDS; duplicate runs of a
    configuration and seed averaged), with the space options and last epoch of its studies."""

    family: str
    options: SpaceOptions
    max_epochs: int
    configs: pd.DataFrame
    curves: pd.DataFrame
    provisional: list[str] = field(default_factory=list)  # why the table is provisional ([]: it is not)
    notes: list[str] = field(default_factory=list)
    plan_json: str = ""  # a study.json of the table (the lab's simulated studies start from it)
    clock: str = "CPU"  # the machine whose seconds SECONDS counts (runs trained elsewhere: NaN seconds)

    @property
    def features(self) -> SpaceFeatures:
        return space_features(self.family, self.options)

    def matrix(self) -> np.ndarray:
        """The configurations' feature vectors [n_configs, n_features], in `configs` order."""
        features = self.features
        return np.stack([encode(features, c) for c in self.configs["config"]])

    def final(self) -> pd.Series:
        """Observed final-epoch validation FID per configuration (mean over seeds; completed runs)."""
        last = self.curves[self.curves[R.EPOCH] == self.max_epochs]
        return last.groupby(CONFIG_KEY)[R.VAL_FID].apply(_geometric_mean)

    def describe(self) -> str:
        label = "PROVISIONAL (" + "; ".join(self.provisional) + ")" if self.provisional else "full table"
        seeds = self.curves.groupby(CONFIG_KEY)[SEED].nunique()
        runs = self.curves.groupby([CONFIG_KEY, SEED]).ngroups
        return (
            f"{self.family}: {len(self.configs)} configurations ({int((seeds > 1).sum())} with more than "
            f"one seed), {runs} runs, {self.max_epochs} epochs: {label}"
        )


def _options_of(plan: dict) -> SpaceOptions:
    return SpaceOptions(
        width_scale=plan["width_scale"],
        width_range=tuple(plan["width_range"]),
        batch_sizes=tuple(plan["batch_sizes"]),
    )


def load_table(study_dirs: Sequence[str | Path], family: str) -> LabTable:
    """The `family` studies among `study_dirs` as one table (ValueError: none, or mixed presets)."""
    plans, trial_frames, history_frames, notes = [], [], [], []
    for directory in map(Path, study_dirs):
        plan = json.loads((directory / R.STUDY_JSON).read_text())
        if plan["family"] != family:
            continue
        plans.append(plan)
        trials = pd.read_parquet(directory / R.TRIALS_FILE)
        history = pd.read_parquet(directory / R.HISTORY_FILE)
        if TRIAL_SECONDS not in trials.columns:
            notes.append(
                f"{directory.name}: no {TRIAL_SECONDS} column, its seconds are training seconds only"
            )
        if TRIAL_SECONDS in trials.columns:  # the search's seconds: a table from before 2026-12-05 added
            trials = trials.assign(**{TRIAL_SECONDS: R.search_seconds(trials)})  # the picks' likelihood
        trial_frames.append(trials.assign(study=plan["name"]))
        history_frames.append(history.assign(study=plan["name"]))
    if not plans:
        raise ValueError(f"no {family} study among the {len(study_dirs)} directories given")
    shapes = {
        (
            p["max_epochs"],
            tuple(p["width_range"]),
            p["width_scale"],
            tuple(p["batch_sizes"]),
            p["train_subset"],
            p["eval_samples"],
        )
        for p in plans
    }
    if len(shapes) > 1:
        raise ValueError(
            f"the {family} studies differ in preset (epochs, widths, batch sizes, subset): {shapes}"
        )
    trials = pd.concat(trial_frames, ignore_index=True)
    history = pd.concat(history_frames, ignore_index=True)
    trials["machine"] = [machine_name(g) for g in gpu_names(trials)]
    clock = clock_machine(trials["machine"])
    elsewhere_studies = trials.loc[trials["machine"] != clock, ["study", "machine"]].drop_duplicates()
    for study, machine in elsewhere_studies.to_numpy():
        notes.append(f"{study}: trained on {machine}, not the table's clock ({clock}): its learning curves "
                     "and seed noise count, its seconds do not")
    configs = {row.study + "/" + row.trial_id: json.loads(row.config_json) for row in trials.itertuples()}
    names = [s + "/" + t for s, t in zip(trials["study"], trials[R.TRIAL_ID], strict=True)]
    trials[CONFIG_KEY] = [config_key(configs[name]) for name in names]
    trials[SEED] = [configs[name][SEED] for name in names]
    # history.parquet's own trial_seconds (seconds so far, per epoch) would shadow the trial's total in
    # the merge (trial_seconds_x / _y), leaving the clock on training seconds alone
    history = history.drop(columns=[TRIAL_SECONDS], errors="ignore").merge(
        trials[
            ["study", R.TRIAL_ID, CONFIG_KEY, SEED, "machine"]
            + ([TRIAL_SECONDS] if TRIAL_SECONDS in trials.columns else [])
        ],
        on=["study", R.TRIAL_ID],
    )
    history = history[np.isfinite(history[R.VAL_FID].astype(float))]
    history = history.drop_duplicates(["study", R.TRIAL_ID, R.EPOCH], keep="last")
    seconds = history[R.TRAIN_SECONDS].astype(float)
    if TRIAL_SECONDS in history.columns:  # spread the trial's other seconds over its epochs
        last = history.groupby(["study", R.TRIAL_ID])[R.EPOCH].transform("max")
        trained = history.groupby(["study", R.TRIAL_ID])[R.TRAIN_SECONDS].transform("max")
        extra = (history[TRIAL_SECONDS].astype(float) - trained).clip(lower=0).fillna(0)
        seconds = seconds + extra * history[R.EPOCH] / last
    seconds = seconds.where(history["machine"] == clock)  # another machine's seconds are not this clock's
    history = history.assign(**{SECONDS: seconds})
    curves = history.groupby([CONFIG_KEY, SEED, R.EPOCH], as_index=False).agg(
        **{R.VAL_FID: (R.VAL_FID, _geometric_mean), SECONDS: (SECONDS, "mean")}
    )
    keys = list(dict.fromkeys(curves[CONFIG_KEY]))
    by_key = {config_key(c): {k: v for k, v in c.items() if k != SEED} for c in configs.values()}
    table_configs = pd.DataFrame({CONFIG_KEY: keys, "config": [by_key[k] for k in keys]})
    provisional = []
    biased = sorted(
        {
            f"{p['sampler']} + {p['scheduler']}"
            for p in plans
            if p["sampler"] not in UNBIASED_SAMPLERS or p["scheduler"] != "none"
        }
    )
    if biased:
        provisional.append(
            f"not all random draws run to the end: {', '.join(biased)} studies, so biased to "
            "where those samplers looked"
        )
    if len(keys) < FULL_TABLE_CONFIGS[family]:
        provisional.append(
            f"{len(keys)} configurations, fewer than the {FULL_TABLE_CONFIGS[family]} the lab needs"
        )
    return LabTable(
        family=family,
        options=_options_of(plans[0]),
        max_epochs=int(plans[0]["max_epochs"]),
        configs=table_configs,
        curves=curves,
        provisional=provisional,
        notes=notes,
        plan_json=json.dumps(plans[0]),
        clock=clock,
    )


def _trees(seed: int):
    from sklearn.ensemble import ExtraTreesRegressor

    return ExtraTreesRegressor(
        n_estimators=TREES, min_samples_leaf=2, max_features=0.6, random_state=seed, n_jobs=1
    )


class FlatForest:
    """A fitted sklearn forest's trees as padded arrays, predicted with numpy over all trees at once:
    the simulator predicts one configuration at a time, where sklearn's per-tree dispatch costs
    ~30 ms a call and this ~0.3 ms. Same numbers as `forest.predict` (tested)."""

    def __init__(self, forest) -> None:
        trees = [e.tree_ for e in forest.estimators_]
        width = max(t.node_count for t in trees)

        def pad(name: str, fill: float) -> np.ndarray:
            kind = float if name in ("threshold", "value") else np.int64
            out = np.full((len(trees), width), fill, dtype=kind)
            for i, t in enumerate(trees):
                values = t.value[:, 0, 0] if name == "value" else getattr(t, name)
                out[i, : t.node_count] = values
            return out

        self.left, self.right = pad("children_left", -1), pad("children_right", -1)
        self.feature, self.threshold, self.value = pad("feature", 0), pad("threshold", 0.0), pad("value", 0.0)
        self.depth = max(t.max_depth for t in trees)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        rows, trees = np.arange(len(x))[:, None], np.arange(self.left.shape[0])[None, :]
        node = np.zeros((len(x), self.left.shape[0]), dtype=np.int64)  # [n, trees]
        for _ in range(self.depth):
            left = self.left[trees, node]
            leaf = left < 0
            go_left = x[rows, self.feature[trees, node]] <= self.threshold[trees, node]
            node = np.where(leaf, node, np.where(go_left, left, self.right[trees, node]))
        return self.value[trees, node].mean(axis=1)


@dataclass
class Surrogate:
    """Noise-free log-FID curves and seconds per epoch of any configuration, and the seed noise."""

    max_epochs: int
    curve_model: FlatForest
    seconds_model: FlatForest
    noise_sd: np.ndarray  # [max_epochs] seed-noise standard deviation of log FID per epoch
    noise_lag1: float  # correlation of a run's noise between consecutive epochs

    @classmethod
    def fit(cls, table: LabTable, keys: Sequence[str] | None = None, seed: int = 0) -> Surrogate:
        """Fit on the table's configurations (only `keys` when given)."""
        configs = table.configs if keys is None else table.configs[table.configs[CONFIG_KEY].isin(set(keys))]
        x = dict(zip(configs[CONFIG_KEY], table.matrix()[configs.index.to_numpy()], strict=True))
        curves = table.curves[table.curves[CONFIG_KEY].isin(x)]
        rows = np.stack(
            [
                np.append(x[k], e / table.max_epochs)
                for k, e in zip(curves[CONFIG_KEY], curves[R.EPOCH], strict=True)
            ]
        )
        curve_model = _trees(seed).fit(rows, np.log(curves[R.VAL_FID].to_numpy(dtype=float)))
        runs = (
            curves.groupby([CONFIG_KEY, SEED])
            .agg(seconds=(SECONDS, "max"), epochs=(R.EPOCH, "max"))
            .reset_index()
        )
        runs = runs[np.isfinite(runs["seconds"].astype(float))]  # runs on the table's clock only
        seconds_model = _trees(seed).fit(
            np.stack([x[k] for k in runs[CONFIG_KEY]]), np.log(runs["seconds"] / runs["epochs"])
        )
        noise_sd, lag1 = seed_noise(table.curves, table.max_epochs)
        return cls(table.max_epochs, FlatForest(curve_model), FlatForest(seconds_model), noise_sd, lag1)

    def curves(self, x: np.ndarray) -> np.ndarray:
        """Noise-free log validation FID [n, max_epochs] of feature rows x [n, n_features]."""
        x = np.atleast_2d(x)
        epochs = np.arange(1, self.max_epochs + 1) / self.max_epochs
        rows = np.concatenate([np.repeat(x, len(epochs), axis=0), np.tile(epochs, len(x))[:, None]], axis=1)
        return self.curve_model.predict(rows).reshape(len(x), len(epochs))

    def epoch_seconds(self, x: np.ndarray) -> np.ndarray:
        """Seconds per epoch [n] (the trial's seconds spread evenly over its epochs)."""
        return np.exp(self.seconds_model.predict(np.atleast_2d(x)))

    def noise(self, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        """Seed noise of log FID [n, max_epochs]: AR(1) across epochs, the measured sd per epoch."""
        z = rng.standard_normal((n, self.max_epochs))
        phi = self.noise_lag1
        walk = np.empty_like(z)
        walk[:, 0] = z[:, 0]
        for e in range(1, self.max_epochs):
            walk[:, e] = phi * walk[:, e - 1] + math.sqrt(max(0.0, 1 - phi**2)) * z[:, e]
        return walk * self.noise_sd


def seed_noise(curves: pd.DataFrame, max_epochs: int) -> tuple[np.ndarray, float]:
    """Per-epoch pooled within-configuration sd of log FID over seeds, and the lag-1 correlation of
    the residuals across epochs, from the configurations run with more than one seed (zeros and 0
    when there are none)."""
    frame = curves.assign(log=np.log(curves[R.VAL_FID].astype(float)))
    seeds = frame.groupby(CONFIG_KEY)[SEED].transform("nunique")
    frame = frame[seeds > 1]
    if frame.empty:
        return np.zeros(max_epochs), 0.0
    frame = frame.assign(resid=frame["log"] - frame.groupby([CONFIG_KEY, R.EPOCH])["log"].transform("mean"))
    sd = np.zeros(max_epochs)
    for e in range(1, max_epochs + 1):
        at = frame[frame[R.EPOCH] == e]
        dof = len(at) - at[CONFIG_KEY].nunique()
        sd[e - 1] = math.sqrt((at["resid"] ** 2).sum() / dof) if dof > 0 else np.nan
    sd = pd.Series(sd).ffill().bfill().fillna(0).to_numpy()
    wide = frame.pivot_table(index=[CONFIG_KEY, SEED], columns=R.EPOCH, values="resid")
    pairs = [(wide[e].to_numpy(), wide[e + 1].to_numpy()) for e in range(1, max_epochs) if e + 1 in wide]
    a = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0)
    b = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0)
    ok = np.isfinite(a) & np.isfinite(b)
    lag1 = float(np.clip(np.corrcoef(a[ok], b[ok])[0, 1], 0, 1)) if ok.sum() > 2 and a[ok].std() > 0 else 0.0
    return sd, lag1


@dataclass(frozen=True)
class Validation:
    """Repeated k-fold validation of the surrogate's final validation FID on held-out configurations."""

    rhos: tuple[float, ...]  # Spearman per repetition of the k-fold split (out-of-fold predictions pooled)
    fold_rhos: tuple[float, ...]  # Spearman within each held-out fold
    top_shares: tuple[float, ...]  # per repetition: share of the observed top 10 % in the predicted top 10 %
    configs: int
    folds: int

    @property
    def rho(self) -> float:
        return float(np.mean(self.rhos))

    @property
    def top_share(self) -> float:
        return float(np.mean(self.top_shares))

    def line(self) -> str:
        goal = "meets" if self.rho >= GOAL_RHO else "misses"
        spread = f" (splits {min(self.rhos):.2f}-{max(self.rhos):.2f})" if len(self.rhos) > 1 else ""
        return (
            f"surrogate, {self.folds}-fold x {len(self.rhos)} over {self.configs} configurations: "
            f"Spearman rho {self.rho:.3f}{spread}, "
            f"folds {min(self.fold_rhos):.2f}-{max(self.fold_rhos):.2f}; "
            f"{goal} the goal {GOAL_RHO}; held-out top {TOP_SHARE:.0%} ranked in its own top "
            f"{TOP_SHARE:.0%}: {self.top_share:.0%}"
        )


def top_share(observed: np.ndarray, predicted: np.ndarray, share: float = TOP_SHARE) -> float:
    """Share of the `share` lowest observed that are among the `share` lowest predicted."""
    k = max(1, math.ceil(share * len(observed)))
    top_observed = set(np.argsort(observed, kind="stable")[:k])
    return len(top_observed & set(np.argsort(predicted, kind="stable")[:k])) / k


def cross_validate(table: LabTable, folds: int = 5, seed: int = 0, repeats: int = 1) -> Validation:
    """k-fold over the configurations with an observed final epoch (all their seeds held out together),
    `repeats` times with other splits (the figures move with the split on a small table)."""
    from scipy.stats import spearmanr
    from sklearn.model_selection import KFold

    final = table.final()
    keys = np.array([k for k in table.configs[CONFIG_KEY] if k in final.index])
    if len(keys) < 2 * folds:
        raise ValueError(
            f"{len(keys)} configurations with a final epoch: too few for {folds}-fold validation"
        )
    index = {k: i for i, k in enumerate(table.configs[CONFIG_KEY])}
    x = table.matrix()
    observed = np.log(final[keys].to_numpy(dtype=float))
    rhos, fold_rhos, shares = [], [], []
    for repeat in range(repeats):
        predicted = np.full(len(keys), np.nan)
        for _, test in KFold(folds, shuffle=True, random_state=seed + repeat).split(keys):
            held = set(keys[test])
            model = Surrogate.fit(table, [k for k in table.configs[CONFIG_KEY] if k not in held], seed=seed)
            predicted[test] = model.curves(x[[index[k] for k in keys[test]]])[:, -1]
            fold_rhos.append(float(spearmanr(predicted[test], observed[test])[0]))
        rhos.append(float(spearmanr(predicted, observed)[0]))
        shares.append(top_share(observed, predicted))
    return Validation(
        rhos=tuple(rhos), fold_rhos=tuple(fold_rhos), top_shares=tuple(shares), configs=len(keys), folds=folds
    )
