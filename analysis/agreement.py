"""Do the quality metrics agree? Spearman rank correlations across trials, and each metric's leader.

Fidelity and diversity are different questions (docs/metrics.md, "Which metric answers which question"), and
a feature network can reward sharpness over content, so the report shows how the metrics rank the
same trials: domain FID, KID, precision and recall on validation (the final epoch's values), and the
Inception FID, which is test-only and measured only for the chosen trials (the best and the Pareto
ones, `study.launch --inception final`), so its correlations rest on few trials.

`agreement` signs each correlation by the metrics' directions (lower FID/KID is better, higher
precision/recall is better): > 0 means the two metrics order the trials the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import columns as C
from analysis.selection import SELECT, best_per_group
from study import results as R

LOWER, HIGHER = "lower", "higher"
# (column, which direction is better, its name in prose)
METRICS: tuple[tuple[str, str, str], ...] = (
    (R.FINAL_VAL_FID, LOWER, "domain FID"),
    (R.VAL_KID, LOWER, "KID"),
    (R.VAL_PRECISION, HIGHER, "precision"),
    (R.VAL_RECALL, HIGHER, "recall"),
    (R.TEST_INCEPTION_FID, LOWER, "Inception FID (test)"),
)
MIN_PAIRS = 3  # fewer trials with both metrics: no correlation


def _sign(better: str) -> int:
    return 1 if better == HIGHER else -1


def rank_correlations(trials: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """One row per metric pair: Spearman's rho over the trials that have both, signed agreement, n."""
    rows = []
    present = [(c, b, n) for c, b, n in metrics if c in trials]
    for i, (a, better_a, _) in enumerate(present):
        for b, better_b, _ in present[i + 1:]:
            pair = trials[[a, b]].apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan)
            pair = pair.dropna()
            rho = float(pair[a].rank().corr(pair[b].rank())) if len(pair) >= MIN_PAIRS else np.nan
            rows.append({C.METRIC_A: a, C.METRIC_B: b, C.SPEARMAN: rho,
                         C.AGREEMENT: rho * _sign(better_a) * _sign(better_b), C.N_TRIALS: len(pair)})
    return pd.DataFrame(rows, columns=[C.METRIC_A, C.METRIC_B, C.SPEARMAN, C.AGREEMENT, C.N_TRIALS])


def leaders(trials: pd.DataFrame, group: str, select: str = SELECT, metrics=METRICS) -> pd.DataFrame:
    """Per metric, the group whose best configuration (lowest `select`, chosen on validation) has the
    better value of that metric; NaN where fewer than two groups have it."""
    best = best_per_group(trials, group, select)
    rows = []
    for column, better, _name in metrics:
        if column not in trials:
            continue
        values = {g: float(pd.to_numeric(trials.loc[label, column], errors="coerce"))
                  for g, label in best.items()}
        values = {g: v for g, v in values.items() if np.isfinite(v)}
        leader = None
        if len(values) >= 2:
            ranked = sorted(values.items(), key=lambda item: item[1] * -_sign(better))
            leader = ranked[0][0] if ranked[0][1] != ranked[1][1] else None
        rows.append({C.METRIC: column, C.BETTER: better, C.LEADER: leader, **{g: values.get(g, np.nan)
                                                                              for g in sorted(best)}})
    return pd.DataFrame(rows)


def agreement_sentence(table: pd.DataFrame, metrics=METRICS) -> str:
    """One sentence for the verdict's quality axis: which metrics agree on the leader, and any that do not."""
    names = {c: n for c, _b, n in metrics}
    led = table.dropna(subset=[C.LEADER]) if C.LEADER in table else table.iloc[0:0]
    if led.empty:
        return "Metric agreement: fewer than two groups have comparable quality metrics."
    by_leader: dict[str, list[str]] = {}
    for column, leader in zip(led[C.METRIC], led[C.LEADER], strict=True):
        by_leader.setdefault(str(leader), []).append(names.get(column, column))
    parts = [f"{', '.join(ms)} favour {leader}" for leader, ms in
             sorted(by_leader.items(), key=lambda item: -len(item[1]))]
    if len(by_leader) == 1:
        return f"Metric agreement on the best trials: {parts[0]} (all agree)."
    return (f"Metric agreement on the best trials: {'; '.join(parts)}: the metrics DISAGREE on "
            "which family makes better digits, so the quality call depends on the metric.")
