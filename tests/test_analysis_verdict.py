"""The verdict (analysis/verdict.py): who wins which axis, only when the 95 % interval of the
difference excludes zero, on hand-built frames and on the really-trained fixture studies.

Behaviour changed by issue 9: choices are made on validation FID, axes carry intervals and say
"too close to call" or "single seed, provisional"; the old by-hand normalised-hypervolume
expectations (min-max scaling over both families) no longer apply and were replaced."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import columns as C
from analysis import search_luck
from analysis.budget import BudgetCurve, budget_curves, pick_weights
from analysis.load import load_studies
from analysis.selection import is_seed_config
from analysis.stats import PROVISIONAL, TOO_CLOSE, WINS
from analysis.tables import best_trials, comparison_table, headline_table
from analysis.verdict import (
    AXIS_ALL,
    AXIS_QUALITY,
    AXIS_SIZE,
    AXIS_SPEED,
    AXIS_TIME,
    BudgetPoint,
    best_configuration,
    budget_points,
    budget_sentence,
    decide,
    verdict_table,
)
from study import results as R

NAN = math.nan


def hand_trials() -> pd.DataFrame:
    """GAN a (val 11, test 10), GAN b (val 31, test 30), GAN c diverged; VAE d (val 25, test 24),
    VAE e (val 24, test 40: best on validation, worse on test)."""
    return pd.DataFrame({
        R.STUDY: ["g", "g", "g", "v", "v"],
        R.TRIAL_ID: ["a", "b", "c", "d", "e"],
        R.FAMILY: ["gan", "gan", "gan", "vae", "vae"],
        R.SEED_CONFIG: [True, False, False, True, False],
        R.TEST_FID: [10.0, 30.0, NAN, 24.0, 40.0],
        R.FINAL_VAL_FID: [11.0, 31.0, NAN, 25.0, 24.0],
        R.PARAMS_TOTAL: [1e3, 1e4, 1e3, 1e2, 1e3],
        R.TRAIN_SECONDS: [1e2, 1e3, 5.0, 1e1, 20.0],
        R.EPOCHS_RUN: [2, 2, 1, 2, 2],
        R.STOP_REASON: [R.STOP_COMPLETED, R.STOP_COMPLETED, R.STOP_DIVERGED, R.STOP_COMPLETED,
                        R.STOP_COMPLETED],
        R.IMAGES_PER_S: [500.0, 700.0, 900.0, 2000.0, 2100.0],
    })


def replicates(gan_test, vae_test, gan_source="a", vae_source="e") -> pd.DataFrame:
    rows = [(gan_source, "gan", s, t) for s, t in enumerate(gan_test)]
    rows += [(vae_source, "vae", s, t) for s, t in enumerate(vae_test)]
    frame = pd.DataFrame(rows, columns=[R.SOURCE_TRIAL_ID, R.FAMILY, R.REPLICATE_SEED, R.TEST_FID])
    frame[R.FINAL_VAL_FID] = frame[R.TEST_FID] + 1.0
    return frame


def test_without_replicates_every_axis_is_single_seed_provisional():
    trials = hand_trials()
    verdict = decide(trials, budget_curves(trials), resamples=200)
    assert [a.axis for a in verdict.axes] == [AXIS_QUALITY, AXIS_SIZE, AXIS_TIME, AXIS_ALL, AXIS_SPEED]
    assert all(a.call == PROVISIONAL and a.winner is None for a in verdict.axes)
    assert all("single seed, provisional" in line.lower() for line in verdict.summary)
    # quality: the VAE's best is e (validation 24), described by its test FID 40, not d's better 24
    quality = verdict.axes[0]
    assert dict(quality.values)["vae"].estimate == 40.0 and quality.leader == "gan"
    assert quality.difference.estimate == pytest.approx(10.0 - 40.0)
    assert verdict.summary[0] == (
        "quality: GAN ahead, single seed, provisional (GAN 10 vs VAE 40; difference -30; test_fid of the "
        "configuration with the lowest final_val_fid, lower is better).")
    table = verdict_table(verdict)
    assert table[[C.AXIS, C.CALL, C.WINNER]].values.tolist()[0] == [AXIS_QUALITY, PROVISIONAL, "none"]


def test_overlapping_replicate_intervals_are_too_close_to_call_and_separated_ones_win():
    trials = hand_trials()
    close = replicates([30.0, 31.0, 29.0, 30.5, 29.5], [31.0, 30.0, 32.0, 29.0, 30.8])
    verdict = decide(trials, budget_curves(trials), replicates=close, resamples=200)
    quality = verdict.axes[0]
    assert quality.call == TOO_CLOSE and quality.winner is None
    assert quality.difference.low < 0 < quality.difference.high
    assert verdict.summary[0].startswith("quality: too close to call (GAN 30 [")
    apart = replicates([30.0, 31.0, 29.0, 30.5, 29.5], [40.0, 41.0, 39.0, 40.5, 39.5])
    verdict = decide(trials, budget_curves(trials), replicates=apart, resamples=200)
    quality = verdict.axes[0]
    assert (quality.call, quality.winner) == (WINS, "gan")
    assert quality.difference.high < 0
    assert dict(quality.values)["gan"].n == 5
    assert verdict.summary[0].startswith("quality: GAN wins (GAN 30 [")
    assert "excludes 0" in verdict.summary[0]


def test_the_best_replicated_configuration_is_chosen_on_mean_validation_fid():
    group = hand_trials().iloc[:3]
    reps = pd.DataFrame({R.SOURCE_TRIAL_ID: ["a", "a", "b", "b"], R.FINAL_VAL_FID: [20.0, 22.0, 18.0, 19.0],
                         R.TEST_FID: [5.0, 6.0, 50.0, 52.0]})
    source, interval, values = best_configuration(group, reps)
    assert source == "b" and interval.estimate == 51.0 and values.tolist() == [50.0, 52.0]


def curve(label, expected, low, high) -> BudgetCurve:
    n = len(expected)
    return BudgetCurve(label, R.TEST_FID, R.FINAL_VAL_FID, tuple(range(1, n + 1)), tuple(expected),
                       tuple(low), tuple(high), tuple(float(k) for k in range(1, n + 1)), n_trials=n,
                       n_failed=0, level=0.95)


def test_budget_points_clear_only_when_ranges_separate_and_ties_have_no_winner():
    curves = {
        "gan": curve("gan", [50, 30, 20, 10], [20, 15, 10, 5], [90, 60, 40, 15]),
        "vae": curve("vae", [40, 30, 25, 22], [35, 28, 24, 21], [45, 33, 27, 23]),
    }
    points = budget_points(curves)
    assert points == (
        BudgetPoint(1, (("gan", 50), ("vae", 40)), "vae", False),
        BudgetPoint(2, (("gan", 30), ("vae", 30)), None, False),
        BudgetPoint(3, (("gan", 20), ("vae", 25)), "gan", False),
        BudgetPoint(4, (("gan", 10), ("vae", 22)), "gan", True),  # GAN's range tops out at 15 < 21
    )
    assert budget_sentence(points) == (
        "budget: lower expected test FID of the lowest-validation-FID trial among k, k = 1: VAE (95 % ranges "
        "overlap); k = 2: tie; k = 3-4: GAN (95 % ranges separate at k = 4). Single seed, provisional.")
    short = {"gan": curve("gan", [5, 4, 3], [1, 1, 1], [9, 9, 9]), "vae": curve("vae", [6], [6], [6])}
    assert [p.budget for p in budget_points(short)] == [1]


def test_one_group_only_is_not_compared():
    trials = hand_trials().iloc[:3]
    verdict = decide(trials, budget_curves(trials), resamples=50)
    assert all(a.winner is None and a.call == "not compared" for a in verdict.axes)
    assert verdict.budget == ()


# --- on the really-trained fixture studies ------------------------------------------------------------

def choices(trials: pd.DataFrame, reps: pd.DataFrame) -> dict:
    """Everything analysis chooses: best trials, Pareto and role rows, budget picks, best configurations."""
    table = comparison_table(trials)
    verdict = decide(trials, budget_curves(trials), replicates=reps, resamples=50)
    weights = {(g, k): pick_weights(group, k).round(12).tolist()
               for g, group in trials.groupby(C.GROUP) for k in range(1, len(group) + 1)}
    return {"best": best_trials(trials), "roles": table[[C.GROUP, C.ROLE, R.TRIAL_ID]].values.tolist(),
            "budget": weights,
            "headline": headline_table(trials, reps)[[C.GROUP, C.ROLE, R.TRIAL_ID]].values.tolist(),
            "volumes": [(a.axis, [v.estimate for _, v in a.values]) for a in verdict.axes[1:4]]}


def test_permuting_every_test_value_changes_no_choice(tiny_study_dirs):
    studies = load_studies([tiny_study_dirs.gan, tiny_study_dirs.vae])
    trials = studies.trials
    before = choices(trials, studies.replicates)
    tests = [c for c in trials.columns if c.startswith("test_")]
    assert R.TEST_FID in tests and len(tests) >= 4
    rng = np.random.default_rng(0)
    permuted = trials.copy()
    for column in tests:  # each test column shuffled across all trials of both studies
        permuted[column] = rng.permutation(trials[column].to_numpy())
    assert not permuted[R.TEST_FID].equals(trials[R.TEST_FID])
    assert choices(permuted, studies.replicates) == before
    # what the test columns describe does change: the budget curve's values
    assert budget_curves(permuted)["gan"].expected_best != budget_curves(trials)["gan"].expected_best


def write_replicates(study_dir, trials: pd.DataFrame, offsets: list[float]) -> None:
    """replicates.parquet from REAL trial rows (the study's best trial and its seed configurations),
    one row per seed, with test and validation FID perturbed by `offsets` (as the replicate tool's
    seeds would move them); trial_id and seed are the replicate's own, as study.replicate writes them."""
    best = trials.loc[[trials[R.FINAL_VAL_FID].idxmin()]]
    sources = pd.concat([best, trials[is_seed_config(trials)]])
    rows = []
    for _, row in sources.drop_duplicates(R.TRIAL_ID).iterrows():
        for seed, offset in enumerate(offsets, start=1):
            rows.append({**row.to_dict(), R.SOURCE_TRIAL_ID: row[R.TRIAL_ID], R.REPLICATE_SEED: seed,
                         R.TRIAL_ID: f"{row[R.TRIAL_ID]}_rep{seed}", R.SEED: seed,
                         R.TEST_FID: row[R.TEST_FID] + offset,
                         R.FINAL_VAL_FID: row[R.FINAL_VAL_FID] + offset})
    pd.DataFrame(rows).to_parquet(study_dir / R.REPLICATES_FILE)


@pytest.mark.parametrize("spread, expected", [(2.0, WINS), (40.0, TOO_CLOSE)])
def test_replicates_beside_real_studies_decide_the_quality_axis(tiny_study_dirs, tmp_path, spread, expected):
    dirs = []
    for src in (tiny_study_dirs.gan, tiny_study_dirs.vae):
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        trials = pd.read_parquet(dst / R.TRIALS_FILE)
        write_replicates(dst, trials, [spread * d for d in (-1.0, -0.5, 0.0, 0.5, 1.0)])
        dirs.append(dst)
    studies = load_studies(dirs)
    trials = studies.trials
    verdict = decide(trials, budget_curves(trials), replicates=studies.replicates, resamples=100)
    quality = verdict.axes[0]
    gan_best, vae_best = (trials.loc[trials[R.FAMILY] == f, R.FINAL_VAL_FID].min() for f in ("gan", "vae"))
    gap = abs(trials.loc[trials[R.FINAL_VAL_FID] == gan_best, R.TEST_FID].iloc[0]
              - trials.loc[trials[R.FINAL_VAL_FID] == vae_best, R.TEST_FID].iloc[0])
    assert 5.0 < gap < 40.0  # the fixture's real gap sits between the two spreads
    assert verdict.replicated and quality.call == expected
    assert all(dict(quality.values)[g].n == 5 for g in ("gan", "vae"))
    headline = headline_table(trials, studies.replicates)
    assert (headline[C.N_SEEDS] == 5).all() and headline[C.CI_LOW].notna().all()


def lab_table(gan_values, vae_values) -> pd.DataFrame:
    """A learning-curve table fixture (search_luck.table_finals' shape): one row per configuration."""
    rows = [("gan", f"g{i}", v) for i, v in enumerate(gan_values)] + [("vae", f"v{i}", v)
                                                                       for i, v in enumerate(vae_values)]
    return pd.DataFrame(rows, columns=[R.FAMILY, search_luck.CONFIG, R.FINAL_VAL_FID])


def test_best_of_n_spread_is_the_range_of_the_lowest_of_n_draws():
    values = np.arange(1.0, 101.0)
    assert search_luck.best_of_n(values, 100, draws=200) == (1.0, 1.0, 1.0)  # every draw holds the best
    low, median, high = search_luck.best_of_n(values, 1, draws=20_000)
    assert 4 <= low <= 8 and 48 <= median <= 53 and 93 <= high <= 97  # one draw: the values' own range
    low8, _, high8 = search_luck.best_of_n(values, 8, draws=20_000)
    assert 1 <= low8 < high8 < 35 and high8 < high  # more trials: a lower, narrower pick


def test_the_verdict_says_what_its_interval_covers_and_when_the_gap_is_search_limited():
    trials = hand_trials()  # GAN: 3 trials in study g, VAE: 2 in study v; GAN ahead by 30 on quality
    alone = decide(trials, budget_curves(trials), resamples=200)
    assert "covers the seed noise of the picked configurations" in alone.luck
    assert "not the search's luck" in alone.luck and "Not measured here" in alone.luck and not alone.spreads
    rng = np.random.default_rng(0)
    wide = decide(trials, budget_curves(trials), resamples=200,
                  lab_table=lab_table(rng.uniform(10, 200, 150), rng.uniform(15, 200, 300)))
    assert [(s.family, s.n, s.configs) for s in wide.spreads] == [("gan", 3, 150), ("vae", 2, 300)]
    assert "search-limited, a repeat could reverse it" in wide.luck and "GAN ahead by 30" in wide.luck
    assert "GAN " in wide.luck and "at n = 3 (of 150 configurations)" in wide.luck
    apart = decide(trials, budget_curves(trials), resamples=200,
                   lab_table=lab_table(rng.uniform(10, 12, 150), rng.uniform(100, 110, 300)))
    assert "search-limited" not in apart.luck and "larger than the search's luck" in apart.luck
    reversed_ = decide(trials, budget_curves(trials), resamples=200,
                       lab_table=lab_table(rng.uniform(100, 110, 150), rng.uniform(10, 12, 300)))
    assert "order the families the other way (VAE lower)" in reversed_.luck
    assert apart.summary == alone.summary  # the axes' sentences are unchanged


def test_table_finals_averages_a_configurations_seeds_and_drops_unfinished_trials(tmp_path):
    config = {"arch": "mlp", "lr": 1e-3, "seed": 0}
    rows = [(dict(config, seed=0), R.STOP_COMPLETED, 20.0), (dict(config, seed=1), R.STOP_COMPLETED, 30.0),
            (dict(config, lr=1e-2), R.STOP_EARLY, 90.0), (dict(config, lr=1e-4), R.STOP_COMPLETED, 50.0)]
    for i, (c, stop, fid) in enumerate(rows):
        study = tmp_path / f"s{i}"
        study.mkdir()
        pd.DataFrame({R.FAMILY: ["vae"], "config_json": [json.dumps(c)], R.STOP_REASON: [stop],
                      R.FINAL_VAL_FID: [fid]}).to_parquet(study / R.TRIALS_FILE)
    table = search_luck.table_finals(sorted(tmp_path.iterdir()))
    assert sorted(table[R.FINAL_VAL_FID]) == [25.0, 50.0]  # seeds 0 and 1 averaged; the stopped one left out


def _study(path, family: str, **changes) -> str:
    """A study directory with a study.json (the quick preset's fields) and a one-row trials.parquet."""
    spec = dict(family=family, sampler="tpe", scheduler="asha", max_epochs=8, train_subset=4000,
                eval_samples=1000, width_scale=1.0, width_range=[0.25, 1.0], batch_sizes=[32, 64, 128],
                gan_ema=0.0, amp="none", channels_last=False)
    spec.update(changes)
    path.mkdir(parents=True)
    (path / "study.json").write_text(json.dumps(spec))
    pd.DataFrame({R.FAMILY: [family], "config_json": [json.dumps({"lr": len(str(path))})],
                  R.STOP_REASON: [R.STOP_COMPLETED],
                  R.FINAL_VAL_FID: [20.0]}).to_parquet(path / R.TRIALS_FILE)
    return str(path)


def test_the_report_takes_the_tables_whose_space_and_preset_are_the_studies_own(tmp_path):
    studies = [_study(tmp_path / "gan", "gan"), _study(tmp_path / "vae", "vae")]
    tables = tmp_path / "tables"
    table = {f"{f}-random-s{i}": _study(tables / f"{f}-random-s{i}", f, sampler="random", scheduler="none")
             for f in ("gan", "vae") for i in (0, 1)}
    _study(tables / "vae-tpe", "vae", scheduler="none")  # guided draws: not a table of the space
    _study(tables / "gan-smoke", "gan", sampler="random", scheduler="none",
           train_subset=256)  # another preset
    used, note = search_luck.matching_tables(studies, tables)
    assert sorted(used) == sorted(table.values()) and "4 studies; GAN, VAE" in note
    used, note = search_luck.matching_tables(studies[1:], tables)  # a VAE study alone: the VAE's tables
    assert sorted(used) == sorted(v for k, v in table.items() if k.startswith("vae"))
    full = [_study(tmp_path / "full-gan", "gan", max_epochs=20, train_subset=None)]
    used, note = search_luck.matching_tables(full, tables)
    assert used == () and "another space or preset" in note and "--lab-table" in note
    assert search_luck.matching_tables(studies, tmp_path / "none")[0] == ()


def test_the_committed_tables_are_the_quick_presets_own():
    """The default the report falls back on holds both families' tables and matches a quick study."""
    gan_table = search_luck.COMMITTED_TABLES / "gan-random-s200"
    spec = json.loads((gan_table / "study.json").read_text())
    assert spec["preset"] == "quick"
    used, _ = search_luck.matching_tables([gan_table])
    assert len(used) >= 4 and all("gan-" in Path(u).name for u in used)
