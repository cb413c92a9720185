"""Which trials count as making digits: the one quality gate of the trade-off axes.

A trial that produces grey blobs can be very small and very fast, so without a gate it wins
"size vs quality" and "training time vs quality" (issue 9: FID ~150 after 0.3 s won an axis).
`is_usable` is the only place that decides; Pareto fronts, hypervolumes and the verdict's
trade-off axes use only usable trials, and the hypervolume's FID bound is the same threshold.

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
