"""Which trials count as making digits: the one quality gate of the trade-off axes, for analysis.

The gate itself (`is_usable`, its rule and why) lives in study/quality_gate.py, where a search's
scoring uses it too (which trials a report describes); this module re-exports it for analysis/.
"""

from __future__ import annotations

import pandas as pd

from analysis.selection import SELECT
from study import results as R
from study.quality_gate import (  # noqa: F401  (the gate lives in study/, which a search's scoring uses too)
    MINIMUMS,
    QUALITY_FACTOR,
    VAL_CLASS_COVERAGE,
    VAL_SAMPLE_IS,
    fid_bounds,
    is_usable,
    seed_mask,
)


def study_fid_bound(rows: pd.DataFrame, select: str = SELECT) -> dict[str, float]:
    """{study: FID bound} for the studies in `rows` (NaN where a study has no finite value)."""
    bounds = fid_bounds(rows, select=select)
    study = rows[R.STUDY] if R.STUDY in rows else pd.Series("", index=rows.index)
    return {str(s): float(b) for s, b in bounds.groupby(study).first().items()}
