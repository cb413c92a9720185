"""The search's luck: how much the picked configuration of an n-trial search moves when the search
is repeated, from a learning-curve table (issue 28, item 8).

The verdict's quality interval comes from the replicates of the configurations the search picked:
it covers their seed noise, not which configurations an n-trial search happened to find. A table of
many configurations of the same space and preset (the search lab's tables, benchmarks/lab.py: random
draws run to the end) measures the second part: draw n configurations from the table, keep the one
with the lowest validation FID, repeat; the 5-95 % range of that pick's FID is the spread a repeat of
an n-trial random search would show. Where the families' ranges overlap, the gap between their
picks is inside the search's luck: a repeat could reverse it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import StudyLoadError, read_plan
from study import results as R

ROOT = Path(__file__).resolve().parents[1]
# The search lab's tables of the quick preset's spaces (benchmarks/results/lab/tables: random draws
# run to the last epoch), used by default when a study's space and preset are theirs.
COMMITTED_TABLES = ROOT / "benchmarks" / "results" / "lab" / "tables"
# the study.json fields that make a table's configurations draws from a study's own space, trained and
# measured as its trials were: the space (widths, batch sizes, the GAN's weight average), the budget
# (epochs, images) and the measurement (generated images per FID), and the numerics
MATCH_FIELDS = ("max_epochs", "train_subset", "eval_samples", "width_scale", "width_range", "batch_sizes",
                "gan_ema", "amp", "channels_last")
TABLE_SAMPLER, TABLE_SCHEDULER = "random", "none"  # a table is random draws without stopping
SEED_FIELD = "seed"
CONFIG = "config"
DRAWS = 10_000
LOW_PCT, HIGH_PCT = 5.0, 95.0
COVERS = ("the quality interval covers the seed noise of the picked configurations (their replicates), "
          "not the search's luck: which configurations an n-trial search happens to find")


@dataclass(frozen=True)
class Spread:
    """The validation FID of the best of n configurations drawn from a table: 5 %, median, 95 %."""

    family: str
    n: int
    low: float
    median: float
    high: float
    configs: int  # configurations in the table

    def text(self) -> str:
        return (f"{self.family.upper()} {self.median:.3g} [{self.low:.3g}, {self.high:.3g}] at n = {self.n} "
                f"(of {self.configs} configurations)")


def table_finals(study_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per family and configuration (its training seed apart) of the completed trials of
    `study_dirs`: R.FAMILY, CONFIG (canonical JSON), R.FINAL_VAL_FID (mean over its seeds)."""
    frames = []
    for directory in map(Path, study_dirs):
        trials = pd.read_parquet(directory / R.TRIALS_FILE)
        trials = trials[trials[R.STOP_REASON] == R.STOP_COMPLETED]
        configs = [json.dumps({k: v for k, v in json.loads(c).items() if k != SEED_FIELD}, sort_keys=True)
                   for c in trials["config_json"]]
        frames.append(pd.DataFrame({R.FAMILY: trials[R.FAMILY].to_numpy(), CONFIG: configs,
                                    R.FINAL_VAL_FID: trials[R.FINAL_VAL_FID].to_numpy(dtype=float)}))
    if not frames:
        return pd.DataFrame(columns=[R.FAMILY, CONFIG, R.FINAL_VAL_FID])
    table = pd.concat(frames, ignore_index=True)
    table = table[np.isfinite(table[R.FINAL_VAL_FID])]
    return table.groupby([R.FAMILY, CONFIG], as_index=False)[R.FINAL_VAL_FID].mean()


def _study_json(directory: Path) -> dict:
    """A directory's study.json settings; {} when it has none or it is not JSON (not a usable table)."""
    try:
        return read_plan(directory)
    except StudyLoadError:
        return {}


def matching_tables(study_dirs: Sequence[str | Path],
                    tables_root: str | Path = COMMITTED_TABLES) -> tuple[tuple[str, ...], str]:
    """The table studies under `tables_root` (random draws run to the end) whose family is one of
    `study_dirs`' and whose space, preset and numerics (MATCH_FIELDS) are those of every study of that
    family; and one line saying which were used, or why none."""
    root = Path(tables_root)
    wanted: dict[str, list[dict]] = {}
    for directory in map(Path, study_dirs):
        spec = _study_json(directory)
        if spec.get("family"):
            wanted.setdefault(str(spec["family"]), []).append(spec)
    if not wanted:
        return (), (f"search luck not measured: the studies hold no {R.STUDY_JSON} (not launched), so no "
                    "table can be matched to their space and preset; give --lab-table")
    candidates = sorted(d for d in root.iterdir() if (d / R.TRIALS_FILE).is_file()) if root.is_dir() else []
    used: dict[Path, str] = {}  # table -> its family
    for table in candidates:
        spec = _study_json(table)
        family = str(spec.get("family"))
        if (spec.get("sampler") == TABLE_SAMPLER and spec.get("scheduler") == TABLE_SCHEDULER
                and family in wanted and all(_same(spec, study) for study in wanted[family])):
            used[table] = family
    if used:
        families = ", ".join(f.upper() for f in sorted(set(used.values())))
        return tuple(map(str, used)), (f"search luck from the learning-curve tables in {root} "
                                       f"({len(used)} studies; {families}), whose space and preset are the "
                                       "studies' own")
    if not candidates:
        return (), f"search luck not measured: no learning-curve table in {root} (give --lab-table)"
    return (), (f"search luck not measured: the tables in {root} were drawn from another space or preset "
                f"than these studies' ({', '.join(MATCH_FIELDS)}); give --lab-table with a table of theirs")


def _same(table: dict, study: dict) -> bool:
    """Equal MATCH_FIELDS (a JSON list and a tuple count as the same sequence)."""
    def norm(value: Any) -> Any:
        return list(value) if isinstance(value, (list, tuple)) else value
    return all(norm(table.get(f)) == norm(study.get(f)) for f in MATCH_FIELDS)


def best_of_n(values: Sequence[float], n: int, draws: int = DRAWS,
              seed: int = 0) -> tuple[float, float, float]:
    """5 %, median and 95 % of the lowest of n values drawn without replacement (with replacement
    when n exceeds them)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    if n <= len(values):
        picks = np.array([values[rng.permutation(len(values))[:n]].min() for _ in range(draws)])
    else:
        picks = values[rng.integers(0, len(values), size=(draws, n))].min(axis=1)
    low, median, high = np.percentile(picks, [LOW_PCT, 50.0, HIGH_PCT])
    return float(low), float(median), float(high)


def search_spreads(table: pd.DataFrame, trials_per_family: Mapping[str, int], seed: int = 0) -> list[Spread]:
    """Per family of `trials_per_family` that the table holds: the spread of its best of n."""
    spreads = []
    for family, n in sorted(trials_per_family.items()):
        values = table.loc[table[R.FAMILY] == family, R.FINAL_VAL_FID].to_numpy(dtype=float)
        if len(values) and n > 0:
            spreads.append(Spread(family, int(n), *best_of_n(values, int(n), seed=seed), configs=len(values)))
    return spreads


def luck_sentence(spreads: Sequence[Spread], gap: float | None = None, leader: str | None = None) -> str:
    """What the quality interval covers and, from a table, how far a repeat of the search could move
    each family's pick; whether the gap between the families lies inside that spread."""
    head = f"search luck: {COVERS}."
    if not spreads:
        return (f"{head} Not measured here: give a learning-curve table of the same space and preset "
                "(`--lab-table`, the search lab's studies) for the spread of best-of-n.")
    body = (" A repeat of the search (best of n random configurations of the table, validation FID, "
            "5-95 %): "
            + "; ".join(s.text() for s in spreads) + ".")
    if len(spreads) < 2 or gap is None or not np.isfinite(gap):
        return head + body
    a, b = spreads[0], spreads[1]
    overlap = a.low <= b.high and b.low <= a.high
    who = f" ({leader.upper()} ahead by {abs(gap):.3g})" if leader else ""
    if overlap:
        return (head + body + f" The gap between the families{who} lies inside that spread (the ranges "
                "overlap): search-limited, a repeat could reverse it.")
    lower = a if a.high < b.low else b  # the ranges do not overlap: one family's picks are lower
    if leader and lower.family != leader:
        return (head + body + " The ranges do not overlap but order the families the other way "
                f"({lower.family.upper()} lower): a repeat of the search would likely reverse the "
                "verdict's leader.")
    return (head + body + f" The ranges do not overlap: the gap between the families{who} is larger than "
            "the search's luck.")
