"""bench_fidelity's pure computation on hand-made histories: Spearman's rho per rung and signal, and
the share of the final top quarter that ASHA at the rung would stop."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_fidelity as F  # noqa: E402

from study import results as R  # noqa: E402

TRIALS = "abcdefgh"
FINAL = dict(zip(TRIALS, (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0), strict=True))


def history() -> pd.DataFrame:
    """8 trials to epoch 4: epoch 1 ranks them exactly backwards, epochs 2-4 exactly right; plus a
    trial stopped after epoch 2 and one diverged at epoch 1 (neither reached the end), and epoch 2
    of trial a recorded twice (a restore re-ran it: the last record counts)."""
    rows = []
    for i, trial in enumerate(TRIALS):
        rows.append((trial, 1, FINAL[TRIALS[-1 - i]]))
        rows += [(trial, epoch, FINAL[trial]) for epoch in (2, 3, 4)]
    rows.insert(1, ("a", 2, 999.0))  # the first record of a's re-run epoch 2
    rows += [("stopped", 1, 5.0), ("stopped", 2, 5.0), ("diverged", 1, math.nan)]
    return pd.DataFrame(rows, columns=[R.TRIAL_ID, R.EPOCH, R.VAL_FID])


def test_rank_fidelity_per_rung_and_signal():
    table = F.fidelity_table(history(), rungs=(1, 2, 4), reduction_factor=2).set_index([F.RUNG, F.SIGNAL])
    # rung 4 is the last epoch: nothing to predict there
    assert list(table.index) == [(1, "raw"), (1, "best"), (2, "raw"), (2, "best")]
    assert (table[F.N] == 8).all()  # the two trials that did not reach epoch 4 are left out
    # epoch 1 ranks the trials backwards: rho -1, and ASHA (cutoff: the median, 45) stops both of
    # the final top quarter (a: 80 and b: 70 at epoch 1)
    assert table.loc[(1, "raw"), F.RHO] == pytest.approx(-1.0)
    assert table.loc[(1, "raw"), F.TOP_STOPPED] == 1.0
    assert table.loc[(1, "best"), F.RHO] == pytest.approx(-1.0)  # at epoch 1 best so far is the raw FID
    # epoch 2 is the final order: rho 1, nothing of the top quarter stopped
    assert table.loc[(2, "raw"), F.RHO] == pytest.approx(1.0) and table.loc[(2, "raw"), F.TOP_STOPPED] == 0
    # best so far at epoch 2 (10, 20, 30, 40, 40, 30, 20, 10) is a V against the final order: rho 0;
    # its median cutoff (25) stops c-f, keeping the top quarter (a, b)
    assert table.loc[(2, "best"), F.RHO] == pytest.approx(0.0, abs=1e-12)
    assert table.loc[(2, "best"), F.TOP_STOPPED] == 0.0


def test_asha_stops_what_is_worse_than_the_rung_quantile():
    signal = pd.Series([10.0, 20.0, 30.0, 40.0, 50.0, 60.0], index=list("uvwxyz"))
    assert list(F.asha_stops(signal, 2)[lambda s: s].index) == ["x", "y", "z"]
    assert list(F.asha_stops(signal, 3)[lambda s: s].index) == ["w", "x", "y", "z"]  # cutoff 26.7


def test_an_averaged_generator_study_names_its_signals_ema():
    table = F.fidelity_table(history(), rungs=(1, 2), reduction_factor=2, ema=True)
    assert list(table[F.SIGNAL]) == ["ema", "ema-best", "ema", "ema-best"]


def test_pooling_over_studies_and_the_stated_choice():
    """Two GAN studies and one VAE study: the choice is the (signal, rung) stopping the least of the
    final top quarter over families, then the highest rho, then the earliest rung."""
    rows = [  # family, study, rung, signal, rho, top stopped
        ("gan", "g0", 1, "raw", 0.2, 0.5), ("gan", "g0", 1, "best", 0.2, 0.5),
        ("gan", "g0", 2, "raw", 0.5, 0.25), ("gan", "g0", 2, "best", 0.9, 0.0),
        ("gan", "g1", 1, "raw", 0.4, 0.5), ("gan", "g1", 1, "best", 0.4, 0.5),
        ("gan", "g1", 2, "raw", 0.7, 0.0), ("gan", "g1", 2, "best", 0.7, 0.0),
        ("gan", "g-ema", 2, "ema", 1.0, 0.0),  # a GAN-only signal is never chosen
        ("vae", "v0", 1, "raw", 0.8, 0.0), ("vae", "v0", 1, "best", 0.8, 0.0),
        ("vae", "v0", 2, "raw", 0.9, 0.0), ("vae", "v0", 2, "best", 0.9, 0.0),
    ]
    tables = pd.DataFrame(rows, columns=[F.FAMILY, F.STUDY, F.RUNG, F.SIGNAL, F.RHO, F.TOP_STOPPED]).assign(
        **{F.N: 16})
    summary = F.pooled(tables).set_index([F.FAMILY, F.RUNG, F.SIGNAL])
    gan_raw_2 = summary.loc[("gan", 2, "raw")]
    assert gan_raw_2["studies"] == 2 and gan_raw_2["rho_mean"] == pytest.approx(0.6)
    assert (gan_raw_2["rho_min"], gan_raw_2["rho_max"]) == (0.5, 0.7)
    assert gan_raw_2["top_quarter_stopped_mean"] == pytest.approx(0.125) and gan_raw_2["n_trials"] == 32
    # rung 2: best stops none of the top quarter in either family (raw stops 1/8 of the GANs')
    assert F.choose(F.pooled(tables)) == ("best", 2)


def test_from_finished_studies_it_writes_the_per_study_and_pooled_tables(tmp_path, capsys):
    studies = []
    for name in ("vae-a", "vae-b"):
        study = tmp_path / name
        study.mkdir()
        history().assign(**{R.FAMILY: "vae"}).to_parquet(study / R.HISTORY_FILE)
        studies.append(str(study))
    out = tmp_path / "out"
    assert F.main(["--from-study", *studies, "--rungs", "1", "2", "--out-dir", str(out)]) == 0
    table = pd.read_csv(out / F.TABLE_CSV)
    assert sorted(set(table[F.STUDY])) == ["vae-a", "vae-b"] and len(table) == 8
    assert table.set_index([F.STUDY, F.RUNG, F.SIGNAL]).loc[("vae-a", 1, "raw"), F.RHO] == pytest.approx(-1.0)
    summary = pd.read_csv(out / F.POOLED_CSV).set_index([F.FAMILY, F.RUNG, F.SIGNAL])
    assert summary.loc[("vae", 2, "raw"), F.RHO + "_mean"] == pytest.approx(1.0)
    assert "signal raw, first rung epoch 2" in capsys.readouterr().out
