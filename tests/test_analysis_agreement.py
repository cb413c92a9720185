"""analysis.agreement: rank correlations between quality metrics and each metric's leader."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import agreement as A
from analysis import columns as C
from study import results as R


def trials() -> pd.DataFrame:
    # gan: the lowest FID/KID and the highest precision; vae: the highest recall and lower Inception FID
    return pd.DataFrame({
        R.TRIAL_ID: ["g1", "g2", "v1", "v2"], R.FAMILY: ["gan", "gan", "vae", "vae"],
        R.FINAL_VAL_FID: [10.0, 20.0, 15.0, 30.0], R.VAL_KID: [0.01, 0.03, 0.02, 0.04],
        R.VAL_PRECISION: [0.9, 0.7, 0.8, 0.6], R.VAL_RECALL: [0.2, 0.3, 0.6, 0.5],
        R.TEST_INCEPTION_FID: [80.0, math.nan, 40.0, math.nan],
    })


def test_rank_correlations_are_spearman_signed_by_direction():
    table = A.rank_correlations(trials()).set_index([C.METRIC_A, C.METRIC_B])
    fid_kid = table.loc[(R.FINAL_VAL_FID, R.VAL_KID)]
    assert fid_kid[C.SPEARMAN] == pytest.approx(1.0) and fid_kid[C.AGREEMENT] == pytest.approx(1.0)
    fid_precision = table.loc[(R.FINAL_VAL_FID, R.VAL_PRECISION)]  # lower FID <-> higher precision
    assert fid_precision[C.SPEARMAN] == pytest.approx(-1.0)
    assert fid_precision[C.AGREEMENT] == pytest.approx(1.0)
    assert table.loc[(R.FINAL_VAL_FID, R.VAL_RECALL), C.AGREEMENT] < 0  # FID and recall disagree here
    inception = table.loc[(R.FINAL_VAL_FID, R.TEST_INCEPTION_FID)]
    assert inception[C.N_TRIALS] == 2 and math.isnan(inception[C.SPEARMAN])  # too few trials with both


def test_leaders_and_the_verdict_sentence_report_a_disagreement():
    leaders = A.leaders(trials(), R.FAMILY).set_index(C.METRIC)[C.LEADER]
    assert leaders[R.FINAL_VAL_FID] == leaders[R.VAL_KID] == leaders[R.VAL_PRECISION] == "gan"
    assert leaders[R.VAL_RECALL] == leaders[R.TEST_INCEPTION_FID] == "vae"
    sentence = A.agreement_sentence(A.leaders(trials(), R.FAMILY))
    assert "domain FID, KID, precision favour gan" in sentence
    assert "recall, Inception FID (test) favour vae" in sentence and "DISAGREE" in sentence
    agreeing = trials().drop(columns=[R.VAL_RECALL, R.TEST_INCEPTION_FID])
    assert "(all agree)" in A.agreement_sentence(A.leaders(agreeing, R.FAMILY))
