"""The seed-study comparison tables against a hand-built study (analysis/tables.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import columns as C
from analysis.tables import (
    COMPARABLE_CAVEATS,
    COMPARABLE_NO,
    PUBLISHED_FIGURES,
    TABLE_COLUMNS,
    best_trials,
    comparison_table,
    is_seed_config,
    published_comparison,
)
from models.config import GANConfig, TrainConfig, VAEConfig, seed_model_config
from study import results as R

NAN = math.nan


def config_json(model) -> str:
    return TrainConfig(model=model, epochs=3).to_json()


def hand_study() -> tuple[pd.DataFrame, pd.DataFrame]:
    """GAN: g0 seed DCGAN (dominated by g1), g1 small MLP (best, only Pareto), g2 dominated, g3 errored.
    VAE: v0 seed MLP (Pareto: fastest of the accurate ones), v1 tiny conv (Pareto: smallest),
    v2 conv (best validation FID, Pareto: best test FID)."""
    rows = [
        (
            "g0",
            "gan",
            "dcgan",
            seed_model_config("gan", "dcgan"),
            5e6,
            100.0,
            30.0,
            28.0,
            20.0,
            8.0,
            NAN,
            NAN,
        ),
        (
            "g1",
            "gan",
            "mlp",
            GANConfig(arch="mlp", g_widths=(32,), d_widths=(32,)),
            1e5,
            10.0,
            25.0,
            26.0,
            NAN,
            NAN,
            NAN,
            NAN,
        ),
        ("g2", "gan", "dcgan", GANConfig(g_widths=(16, 8)), 2e5, 50.0, 40.0, 45.0, NAN, 3.0, NAN, NAN),
        ("g3", "gan", "mlp", GANConfig(arch="mlp", lr_g=1.0), NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN),
        (
            "v0",
            "vae",
            "mlp",
            seed_model_config("vae", "mlp"),
            1.08e6,
            20.0,
            50.0,
            48.0,
            NAN,
            2.0,
            0.05,
            110.0,
        ),
        ("v1", "vae", "conv", VAEConfig(enc_channels=(4, 8)), 5e4, 5.0, 60.0, 58.0, NAN, 1.5, 0.06, 120.0),
        ("v2", "vae", "conv", VAEConfig(latent_dim=4), 6e4, 30.0, 45.0, 47.0, NAN, 2.5, 0.04, 100.0),
    ]
    trials = pd.DataFrame(
        [
            (
                tid,
                "study-" + fam,
                fam,
                arch,
                config_json(model),
                p,
                s,
                3,
                R.STOP_COMPLETED,
                v,
                t,
                i,
                is_,
                mse,
                nelbo,
            )
            for tid, fam, arch, model, p, s, v, t, i, is_, mse, nelbo in rows
        ],
        columns=[
            R.TRIAL_ID,
            R.STUDY,
            R.FAMILY,
            R.ARCH,
            R.CONFIG_JSON,
            R.PARAMS_TOTAL,
            R.TRAIN_SECONDS,
            R.EPOCHS_RUN,
            R.STOP_REASON,
            R.FINAL_VAL_FID,
            R.TEST_FID,
            R.TEST_INCEPTION_FID,
            R.TEST_SAMPLE_IS,
            R.TEST_RECON_MSE,
            R.TEST_BCE_NELBO,
        ],
    )
    trials.loc[3, R.STOP_REASON] = R.STOP_ERROR
    trials[R.TEST_KID] = 0.01
    for column in (R.TEST_PRECISION, R.TEST_RECALL, R.TEST_BINARIZED_NLL):  # as analysis.load adds them
        trials[column] = math.nan
    history = pd.DataFrame(
        {
            R.STUDY: ["study-vae"] * 3,
            R.TRIAL_ID: ["v0", "v0", "v2"],
            R.EPOCH: [1, 2, 1],
            R.LOSS_NELBO: [180.0, 150.0, 170.0],
        }
    )
    return trials, history


def test_seed_configurations_are_recognised_by_their_model_config_or_the_launchers_flag():
    trials, _ = hand_study()
    assert is_seed_config(trials).tolist() == [True, False, False, False, True, False, False]
    # the launcher flags a seed point it ran at 1/8 width (g2 here); NaN (an old export) is not a seed
    trials[R.SEED_CONFIG] = [False, False, True, None, False, False, False]
    assert is_seed_config(trials).tolist() == [True, False, True, False, True, False, False]


def test_best_trial_per_family_is_chosen_on_validation_fid_first_on_ties():
    trials, _ = hand_study()
    assert best_trials(trials) == {"gan": 1, "vae": 6}
    trials.loc[0, R.FINAL_VAL_FID] = 25.0  # tie with g1: the first row wins
    assert best_trials(trials) == {"gan": 0, "vae": 6}


def test_comparison_table_rows_roles_and_order():
    trials, _ = hand_study()
    table = comparison_table(trials)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert table[[R.FAMILY, C.ROLE, R.TRIAL_ID]].values.tolist() == [
        ["gan", "best, Pareto", "g1"],
        ["gan", "seed config", "g0"],
        ["vae", "best, Pareto", "v2"],
        ["vae", "seed config, Pareto", "v0"],
        ["vae", "Pareto", "v1"],
    ]
    by_id = trials.set_index(R.TRIAL_ID)
    others = [c for c in TABLE_COLUMNS if c not in (C.ROLE, R.TRIAL_ID)]
    pd.testing.assert_frame_equal(table.set_index(R.TRIAL_ID)[others], by_id.loc[table[R.TRIAL_ID], others])


def test_published_numbers_side_by_side_with_ours():
    trials, history = hand_study()
    table = published_comparison(trials, history)
    expected = pd.DataFrame(
        [
            (
                "FID",
                "gan",
                18.24,
                20.0,
                NAN,
                COMPARABLE_CAVEATS,
            ),  # seed DCGAN g0 vs best g1 (no Inception FID)
            ("FID", "gan", 18.24, 28.0, 26.0, COMPARABLE_NO),
            ("FID", "vae", 28.56, NAN, NAN, COMPARABLE_CAVEATS),  # no seed conv VAE trial in this study
            ("FID", "vae", 28.56, NAN, 47.0, COMPARABLE_NO),
            ("Inception Score", "gan", 2.76, 8.0, NAN, COMPARABLE_NO),
            ("reconstruction error", "vae", 0.092, NAN, 0.04, COMPARABLE_CAVEATS),
            ("VAE loss, first epoch", "vae", 178.0, 180.0, 170.0, COMPARABLE_CAVEATS),  # v0 and v2 at epoch 1
            ("VAE loss after 50 epochs", "vae", 135.0, NAN, NAN, COMPARABLE_CAVEATS),
        ],
        columns=[C.QUANTITY, R.FAMILY, C.PUBLISHED, C.OURS_SEED_CONFIG, C.OURS_BEST, C.COMPARABLE],
    )
    pd.testing.assert_frame_equal(table[expected.columns], expected)
    assert [n.split(";")[0] for n in table[C.NOTE]] == [
        f"ours: {f.column}" + (f" at epoch {f.epoch}" if f.epoch else "") for f in PUBLISHED_FIGURES
    ]
    assert table[C.SOURCE].str.startswith("seed study").all()


@pytest.mark.parametrize("images, comparable", [(2_000, COMPARABLE_NO), (10_000, COMPARABLE_CAVEATS)])
def test_an_inception_fid_on_fewer_images_than_the_protocol_compares_with_nothing(images, comparable):
    trials, history = hand_study()
    trials[R.INCEPTION_SAMPLES] = float(images)  # --inception-images
    row = published_comparison(trials, history).iloc[0]  # the GAN's Inception FID (20.0, seed DCGAN)
    assert row[C.OURS_SEED_CONFIG] == 20.0 and row[C.COMPARABLE] == comparable
    assert (f"on {images:,} generated vs {images:,} test images" in row[C.NOTE]) == (images < 10_000)


def test_seed_config_values_are_averaged_over_repeated_seed_trials():
    trials, history = hand_study()
    twin = trials.iloc[[0]].assign(**{R.TRIAL_ID: "g0b", R.TEST_FID: 30.0, R.TEST_INCEPTION_FID: NAN})
    table = published_comparison(pd.concat([trials, twin], ignore_index=True), history)
    assert table[C.OURS_SEED_CONFIG].iloc[:2].tolist() == [20.0, pytest.approx(29.0)]


def test_a_seed_study_reproduction_is_shown_as_reproduced_beside_the_published_numbers():
    """Rows of a study whose study.json says reproduces_seed_study = 2 (as study.reproduce writes):
    the MLP VAE at 10 and 50 epochs; the 50-epoch runs (two seeds) are the reproduced value."""
    trials, history = hand_study()
    trials[C.REPRODUCES] = NAN
    repro = trials.iloc[[4, 4, 4]].assign(
        **{
            R.STUDY: "repro-2",
            R.TRIAL_ID: ["r1", "r2", "r3"],
            R.hp_column("epochs"): [50, 50, 10],
            C.REPRODUCES: 2.0,
            R.FINAL_VAL_FID: [1.0, 1.0, 1.0],
        }
    )
    history = pd.concat(
        [
            history,
            pd.DataFrame(
                {
                    R.STUDY: "repro-2",
                    R.TRIAL_ID: ["r1", "r1", "r2", "r2", "r3"],
                    R.EPOCH: [1, 50, 1, 50, 1],
                    R.LOSS_NELBO: [176.0, 136.0, 180.0, 134.0, 200.0],
                }
            ),
        ],
        ignore_index=True,
    )
    table = published_comparison(pd.concat([trials, repro], ignore_index=True), history).set_index(C.QUANTITY)
    first, fiftieth = table.loc["VAE loss, first epoch"], table.loc["VAE loss after 50 epochs"]
    half = 12.7062 * math.sqrt(8) / math.sqrt(2)  # t_{0.975, 1} * s / sqrt(n), s = sqrt(8)
    assert (first[C.REPRODUCED], first[C.REPRODUCED_N]) == (178.0, 2)
    assert (first[C.REPRODUCED_LOW], first[C.REPRODUCED_HIGH]) == pytest.approx(
        (178 - half, 178 + half), rel=1e-4
    )
    assert (fiftieth[C.REPRODUCED], fiftieth[C.REPRODUCED_N]) == (135.0, 2)
    # the reproduction's rows stay out of "ours": their validation FID of 1.0 would else be the VAE's best
    assert (first[C.OURS_SEED_CONFIG], first[C.OURS_BEST]) == (180.0, 170.0)
    assert table[C.REPRODUCED_N].loc[["FID", "Inception Score"]].eq(0).all()  # seed study 1: not reproduced
