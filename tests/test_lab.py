"""The search lab (benchmarks/lab_surrogate.py, benchmarks/lab_sim.py): the space's encoding, the
surrogate's validation on synthetic tables with a known ranking, and the simulator on a tiny table:
it repeats itself exactly and its ASHA decides as `replay_asha`'s scheduler does on the same curves.
No Ray cluster, no training."""

from __future__ import annotations

import dataclasses

import numpy as np
import optuna
import pandas as pd
import pytest

from benchmarks.lab_sim import Arm, simulate, surrogate_source
from benchmarks.lab_surrogate import (
    CONFIG_KEY,
    SECONDS,
    SEED,
    FlatForest,
    LabTable,
    Surrogate,
    _trees,
    config_key,
    cross_validate,
    top_share,
)
from search_spaces import SpaceOptions, define_by_run, seed_configs
from search_spaces.encode import UNUSED, encode, space_features
from study import launch
from study import results as R
from study.engine.plan import PRESETS
from study.engine.search import asha_stop_epochs
from study.launch import plan_from_args

QUICK = SpaceOptions(width_range=(0.25, 1.0), batch_sizes=(32, 64, 128), loop={"epochs": 8, "seed": 0})
EPOCHS = 8


def random_configs(family: str, n: int, seed: int = 0) -> list[dict]:
    """n configurations drawn at random from the family's quick space (the launcher's define)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    define = define_by_run(family, QUICK)
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(define(trial))
        study.tell(trial, 0.0)
    return configs


def synthetic_table(family: str, n: int, score, seeds: int = 1, noise: float = 0.0,
                    seed: int = 0) -> LabTable:
    """A table whose log final FID is score(config) (plus seed noise), approached over the epochs."""
    rng = np.random.default_rng(seed)
    configs = random_configs(family, n, seed)
    rows = []
    for config in configs:
        final = score(config)
        for s in range(seeds):
            offset = rng.normal(0, noise)
            for epoch in range(1, EPOCHS + 1):
                rows.append({CONFIG_KEY: config_key(config), SEED: s, R.EPOCH: epoch,
                             R.VAL_FID: float(np.exp(final + offset + 1.5 / epoch)),
                             SECONDS: epoch * (1 + config["batch_size"] / 64)})
    keys = [config_key(c) for c in configs]
    frame = pd.DataFrame({CONFIG_KEY: keys,
                          "config": [{k: v for k, v in c.items() if k != SEED} for c in configs]})
    return LabTable(family=family, options=QUICK, max_epochs=EPOCHS,
                    configs=frame.drop_duplicates(CONFIG_KEY).reset_index(drop=True),
                    curves=pd.DataFrame(rows), provisional=["synthetic"])


def learning_rate_score(config: dict) -> float:
    """A known ranking: the closer the generator's learning rate to 1e-3 (log scale), the lower."""
    return 3.0 + 0.5 * abs(np.log10(config["lr_g"]) + 3.0) + 0.1 * (config["arch"] == "mlp")


def test_the_encoding_is_read_off_the_space_and_marks_the_stacks_an_architecture_lacks():
    gan, vae = space_features("gan", QUICK), space_features("vae", QUICK)
    assert gan.archs == ("dcgan", "mlp") and vae.archs == ("conv", "mlp")
    assert {s.field for s in gan.scalars} == {"latent_dim", "lr_g", "lr_d", "beta1", "batch_size"}
    assert {s.field for s in vae.scalars} == {"latent_dim", "lr", "beta1", "kl_beta", "batch_size"}
    log_scale = {s.field: s.log for s in gan.scalars}
    assert log_scale["lr_g"] and log_scale["latent_dim"] and not log_scale["beta1"]
    assert vae.stacks_of["mlp"] == {"enc_widths", "dec_widths"}  # no conv channels in an MLP VAE
    seeds = [c.to_dict() for c in seed_configs("vae", QUICK)]
    conv, mlp = (encode(vae, c) for c in seeds)
    assert len(conv) == len(vae.names) and np.all((conv >= 0) & (conv <= 1))
    channels = [i for i, name in enumerate(vae.names) if name.startswith(("enc_channels", "dec_channels"))]
    assert np.all(mlp[channels] == UNUSED) and np.all(conv[channels] >= 0)
    lr = vae.names.index("lr")  # the seed's learning rate on the space's log range 1e-5..1e-2
    assert conv[lr] == pytest.approx(np.log(seeds[0]["lr"] / 1e-5) / np.log(1e-2 / 1e-5))


def test_the_flat_forest_predicts_what_sklearn_does():
    rng = np.random.default_rng(0)
    x = rng.random((200, 5))
    forest = _trees(0).fit(x, x[:, 0] * 2 + np.sin(5 * x[:, 1]))
    probe = rng.random((30, 5))
    np.testing.assert_allclose(FlatForest(forest).predict(probe), forest.predict(probe), rtol=0, atol=1e-12)


def test_top_share_counts_the_observed_top_in_the_predicted_top():
    observed = np.arange(20.0)
    assert top_share(observed, observed) == 1.0
    assert top_share(observed, -observed) == 0.0
    assert top_share(observed, np.r_[-100.0, -observed[1:]]) == 0.5  # 2 in the top 10 %: 1 found


def test_cross_validation_recovers_a_known_ranking_and_not_a_shuffled_one():
    table = synthetic_table("gan", 80, learning_rate_score, seeds=2, noise=0.02)
    known = cross_validate(table, folds=5)
    assert known.configs == 80 and len(known.fold_rhos) == 5
    assert known.rho >= 0.8 and known.top_share >= 0.5, known.line()
    # the same curves dealt to other configurations: nothing to learn
    shuffled = dataclasses.replace(table, configs=table.configs.assign(
        config=table.configs["config"].sample(frac=1, random_state=1).to_numpy()))
    assert abs(cross_validate(shuffled, folds=5).rho) < 0.4
    assert "Spearman rho" in known.line() and "meets the goal" in known.line()


def test_the_seed_noise_is_measured_from_configurations_with_several_seeds():
    table = synthetic_table("vae", 30, lambda c: 3.0 + c["lr"] * 100, seeds=3, noise=0.1)
    model = Surrogate.fit(table)
    assert np.all(np.abs(model.noise_sd - 0.1) < 0.04)  # the same offset at every epoch: sd 0.1
    assert model.noise_lag1 > 0.95  # and fully correlated across epochs
    single = Surrogate.fit(synthetic_table("vae", 30, lambda c: 3.0, seeds=1))
    assert np.all(single.noise_sd == 0)


@pytest.fixture(scope="module")
def tiny_lab(data_dir):
    table = synthetic_table("gan", 40, learning_rate_score, seeds=2, noise=0.05)
    args = launch.build_parser().parse_args(["--family", "gan", "--quick", "--data-dir", str(data_dir),
                                             "--name", "lab-test"])
    return table, Surrogate.fit(table), plan_from_args(args)


def test_the_simulator_repeats_itself_exactly_with_a_fixed_seed(tiny_lab):
    table, surrogate, base = tiny_lab
    arm = Arm("tpe", "asha", trials=12, workers=3)
    runs = [simulate(arm, arm.plan(base, 7), surrogate_source(surrogate, table.features, 7))
            for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].trials, runs[1].trials)
    pd.testing.assert_frame_equal(runs[0].anytime, runs[1].anytime)
    trials = runs[0].trials
    assert len(trials) == 12 and (trials["epochs"] < EPOCHS).any()  # ASHA stopped some
    assert trials["start"].iloc[:3].eq(0).all()  # three workers start at once
    other = simulate(arm, arm.plan(base, 8), surrogate_source(surrogate, table.features, 8)).trials
    assert not other["observed_final"].equals(trials["observed_final"])  # another repetition differs


def test_the_quick_asha_arm_is_pinned_to_the_rung_its_repetitions_ran_not_read_from_the_preset(data_dir):
    """The repetitions on file for the "asha" arm ran the quick preset's rung 4, factor 2, raw: a change
    of the preset must not redefine the arm (its plan is the same before and after)."""
    args = launch.build_parser().parse_args(["--family", "vae", "--quick", "--data-dir", str(data_dir),
                                             "--name", "lab-pin"])
    base = plan_from_args(args)
    arm = Arm("tpe", "asha", trials=12, workers=2)
    before = arm.plan(base, 0)
    assert (before.grace_period, before.reduction_factor, before.stop_signal) == (4, 2.0, "raw")
    with pytest.MonkeyPatch.context() as patch:  # the one table, changed in place for every reader
        patch.setitem(PRESETS, "quick", {**PRESETS["quick"], "grace_period": 1, "reduction_factor": 3.0})
        after = arm.plan(plan_from_args(args), 0)
    assert (after.grace_period, after.reduction_factor, after.stop_signal) == (4, 2.0, "raw")
    assert after.trials == 12 and after.scheduler == "asha" and after.sampler == "tpe"


def test_the_simulators_asha_stops_what_replay_asha_stops_on_the_same_curves(tiny_lab):
    table, surrogate, base = tiny_lab
    for scheduler in ("asha", "asha-g1-r2", "asha-best"):
        arm = Arm("random", scheduler, trials=16, workers=1)
        plan = arm.plan(base, 3)
        run = simulate(arm, plan, surrogate_source(surrogate, table.features, 3))
        history = pd.DataFrame([{R.TRIAL_ID: f"t{k:04d}", R.EPOCH: e + 1, R.VAL_FID: float(np.exp(v))}
                                for k, curve in run.curves.items() for e, v in enumerate(curve)])
        replayed = asha_stop_epochs(plan, history, [f"t{k:04d}" for k in sorted(run.curves)])
        simulated = {f"t{row.trial:04d}": row.epochs for row in run.trials.itertuples()
                     if row.epochs < EPOCHS}
        assert simulated and simulated == replayed, scheduler


def test_the_product_picks_on_observed_fid_and_the_lab_scores_the_noise_free_one(tiny_lab):
    table, surrogate, base = tiny_lab
    arm = Arm("random", "none", trials=10, workers=2)
    run = simulate(arm, arm.plan(base, 0), surrogate_source(surrogate, table.features, 0))
    pick = run.pick()
    assert pick["observed_final"] == run.trials["observed_final"].min()
    assert run.anytime["pick_true"].iloc[-1] == pick["true_final"]
    assert np.all(np.diff(run.anytime["compute_s"]) >= 0)
    total = (run.trials["end"] - run.trials["start"]).sum()
    assert run.anytime["compute_s"].iloc[-1] == pytest.approx(total)


def test_with_two_trials_in_flight_tpe_guides_9_of_16_trials_not_10(tiny_lab):
    """Optuna counts only finished trials towards n_startup_trials (2 seeds + 4 random at 16 trials):
    one at a time 10 trials are guided; with a second trial in flight one more ask stays random."""
    table, surrogate, base = tiny_lab
    guided = {}
    for workers in (1, 2, 8):
        arm = Arm("tpe", "none", trials=16, workers=workers)
        run = simulate(arm, arm.plan(base, 0), surrogate_source(surrogate, table.features, 0))
        guided[workers] = int(run.trials["guided"].sum())
    assert guided == {1: 10, 2: 9, 8: 3}
    arm = Arm("random", "none", trials=16, workers=2)
    run = simulate(arm, arm.plan(base, 0), surrogate_source(surrogate, table.features, 0))
    assert not run.trials["guided"].any()


def test_a_lab_directory_takes_its_families_one_after_the_other_but_not_another_table():
    from benchmarks.lab import table_mismatch

    gan, vae = ["t/gan-random-s200", "t/gan-random-s201"], ["t/vae-random-s100"]
    recorded = {"studies": sorted(gan + vae), "families": {"gan": {"studies": gan}, "vae": {"studies": vae}}}
    assert table_mismatch(recorded, {"gan": gan}) is None
    # the VAE table grew (its replicates): its own repetitions are refused, the GAN's are not
    assert "vae" in table_mismatch(recorded, {"vae": vae + ["t/vae-replicates"]})
    assert table_mismatch(recorded, {"gan": gan, "vae": vae}) is None
    # a family not yet run into the directory is checked against nothing
    assert table_mismatch({"studies": gan, "families": {"gan": {"studies": gan}}}, {"vae": vae}) is None
    # written before the per-family lists: one list for all families
    assert table_mismatch({"studies": sorted(gan + vae), "families": {"gan": {}}}, {"gan": gan}) is None
    assert "another table" in table_mismatch({"studies": vae, "families": {"gan": {}}}, {"gan": gan})


def test_the_tables_clock_is_each_trials_whole_seconds_not_its_training_seconds(tmp_path):
    """history.parquet has a trial_seconds column of its own (seconds so far): the table's seconds at a
    trial's last epoch are still the trial's total (trials.parquet), training and scoring."""
    import json
    import shutil
    from pathlib import Path

    from benchmarks.lab_surrogate import load_table

    source = Path(__file__).resolve().parent.parent / "benchmarks/results/lab/tables/gan-random-s200"
    study = tmp_path / "gan-random-s200"
    study.mkdir()
    shutil.copy(source / R.STUDY_JSON, study / R.STUDY_JSON)
    trials = pd.read_parquet(source / R.TRIALS_FILE).iloc[2:6]
    history = pd.read_parquet(source / R.HISTORY_FILE)
    history = history[history[R.TRIAL_ID].isin(trials[R.TRIAL_ID])]
    assert R.TRIAL_SECONDS in history.columns  # the case this test is about
    trials.to_parquet(study / R.TRIALS_FILE)
    history.to_parquet(study / R.HISTORY_FILE)
    table = load_table([study], "gan")
    last = table.curves.groupby([CONFIG_KEY, SEED])[SECONDS].max().sort_values().to_numpy()
    np.testing.assert_allclose(last, np.sort(trials[R.TRIAL_SECONDS].to_numpy(dtype=float)), rtol=1e-9)
    assert (trials[R.TRIAL_SECONDS] > 2 * trials[R.TRAIN_SECONDS]).all()  # scoring is most of it
    assert json.loads((study / R.STUDY_JSON).read_text())["family"] == "gan"


def test_runs_trained_on_another_machine_add_curves_and_seed_noise_but_not_seconds(tmp_path):
    """The GAN table's chunks ran on an H200, its replicated configurations on a CPU (~10x the seconds
    per epoch): the CPU runs' FID curves and seed noise count, their seconds stay out of the GPU
    clock's seconds model, and the table says which clock it keeps."""
    import json
    from pathlib import Path

    from benchmarks.lab import table_clocks
    from benchmarks.lab_surrogate import load_table, seed_noise

    source = Path(__file__).resolve().parent.parent / "benchmarks/results/lab/tables/gan-random-s200"
    trials = pd.read_parquet(source / R.TRIALS_FILE).iloc[:12]
    history = pd.read_parquet(source / R.HISTORY_FILE)
    history = history[history[R.TRIAL_ID].isin(trials[R.TRIAL_ID])]
    assert (trials[R.GPU_NAME] == "NVIDIA H200").all()  # the case this test is about
    chunk, replicas = tmp_path / "gan-random-s200", tmp_path / "gan-replicates"
    for study in (chunk, replicas):
        study.mkdir()
        plan = json.loads((source / R.STUDY_JSON).read_text())
        (study / R.STUDY_JSON).write_text(json.dumps({**plan, "name": study.name}))
    trials.to_parquet(chunk / R.TRIALS_FILE)
    history.to_parquet(chunk / R.HISTORY_FILE)
    # a CPU re-run of the first 4 configurations with another seed: slower, and its FID a little off
    again = trials.iloc[:4].copy()
    again[R.CONFIG_JSON] = [json.dumps({**json.loads(c), SEED: 300}) for c in again[R.CONFIG_JSON]]
    again[R.GPU_NAME] = "cpu"
    again[R.TRIAL_SECONDS] = again[R.TRIAL_SECONDS] * 10
    again_history = history[history[R.TRIAL_ID].isin(again[R.TRIAL_ID])].copy()
    again_history[R.TRAIN_SECONDS] = again_history[R.TRAIN_SECONDS] * 10
    again_history[R.VAL_FID] = again_history[R.VAL_FID] * 1.05
    again.to_parquet(replicas / R.TRIALS_FILE)
    again_history.to_parquet(replicas / R.HISTORY_FILE)

    alone, both = load_table([chunk], "gan"), load_table([chunk, replicas], "gan")
    assert alone.clock == both.clock == "NVIDIA H200"
    assert any("gan-replicates: trained on CPU" in note for note in both.notes)
    clocks = table_clocks({"families": {"gan": {"studies": [str(chunk), str(replicas)]}}})
    assert clocks == {"gan": "NVIDIA H200"}
    cpu = both.curves[both.curves[SEED] == 300]
    assert len(cpu) == 4 * EPOCHS and cpu[SECONDS].isna().all() and cpu[R.VAL_FID].notna().all()
    assert both.curves.loc[both.curves[SEED] != 300, SECONDS].notna().all()
    x = alone.matrix()
    np.testing.assert_allclose(Surrogate.fit(both).epoch_seconds(x), Surrogate.fit(alone).epoch_seconds(x))
    assert seed_noise(alone.curves, EPOCHS)[0][-1] == 0  # one seed per configuration: no noise measured
    assert seed_noise(both.curves, EPOCHS)[0][-1] > 0  # the CPU seeds measure it


def test_the_figure_names_the_machine_whose_seconds_each_table_counts(tmp_path):
    from benchmarks.lab import table_clocks

    for name, gpus in (("gan-a", ["NVIDIA H200"] * 2), ("vae-a", ["cpu", None])):
        (tmp_path / name).mkdir()
        pd.DataFrame({R.GPU_NAME: gpus}).to_parquet(tmp_path / name / R.TRIALS_FILE)
    table = {"families": {"gan": {"studies": [str(tmp_path / "gan-a")]},
                          "vae": {"studies": [str(tmp_path / "vae-a")]},
                          "old": {"studies": [str(tmp_path / "missing")]}}}
    assert table_clocks(table) == {"gan": "NVIDIA H200", "vae": "CPU"}


def test_the_tables_clock_leaves_out_the_picked_trials_likelihood_a_step_after_the_search(tmp_path):
    """The committed VAE tables were written when the picked trials' likelihood (computed after the
    search) was added to their trial_seconds (legacy column nll_seconds): the clock takes it out, so a
    simulated search is not charged a step no search pays."""
    import shutil
    from pathlib import Path

    from benchmarks.lab_surrogate import load_table

    source = Path(__file__).resolve().parent.parent / "benchmarks/results/lab/tables/vae-random-s100"
    trials = pd.read_parquet(source / R.TRIALS_FILE)
    picked = trials[R.LEGACY_NLL_SECONDS].notna()
    assert picked.any() and (~picked).any()  # the case this test is about
    trials = pd.concat([trials[picked].head(3), trials[~picked].head(3)])
    study = tmp_path / source.name
    study.mkdir()
    shutil.copy(source / R.STUDY_JSON, study / R.STUDY_JSON)
    history = pd.read_parquet(source / R.HISTORY_FILE)
    trials.to_parquet(study / R.TRIALS_FILE)
    history[history[R.TRIAL_ID].isin(trials[R.TRIAL_ID])].to_parquet(study / R.HISTORY_FILE)
    last = load_table([study], "vae").curves.groupby([CONFIG_KEY, SEED])[SECONDS].max()
    search = (trials[R.TRIAL_SECONDS] - trials[R.LEGACY_NLL_SECONDS].fillna(0)).to_numpy(dtype=float)
    np.testing.assert_allclose(np.sort(last.to_numpy()), np.sort(search), rtol=1e-9)
    assert (trials.loc[picked, R.LEGACY_NLL_SECONDS] > 0).all()  # seconds that would have counted


def test_a_real_study_is_checked_against_the_lab_arm_of_its_own_rungs():
    """lab_check matches a real study to the arm its grace period, reduction factor and stop signal
    ran (the quick preset's design studies run rungs 1-2-4), not to every ASHA arm at once."""
    from benchmarks.lab_sim import scheduler_arm

    plan = dict(scheduler="asha", grace_period=4, reduction_factor=2.0, stop_signal="raw")
    assert scheduler_arm(plan) == "asha"
    assert scheduler_arm(plan | dict(grace_period=1)) == "asha-g1-r2"
    assert scheduler_arm(plan | dict(grace_period=1, reduction_factor=3)) == "asha-g1-r3"
    assert scheduler_arm(plan | dict(stop_signal="best")) == "asha-best"
    assert scheduler_arm(plan | dict(grace_period=3)) is None
    assert scheduler_arm(plan | dict(scheduler="none")) == "none"
    assert scheduler_arm(plan | dict(scheduler="hyperband")) is None


def test_the_design_check_pairs_two_arms_of_one_sampler_seed_by_seed_on_the_picks_test_fid():
    from benchmarks.lab_check import design_lines, pair_lines

    rows = []
    for seed, (old, new) in enumerate([(41.2, 41.2), (74.0, 23.4), (50.3, 50.7)]):
        for trials, scheduler, test in ((8, "asha", old), (16, "asha-g1-r3", new)):
            rows.append(dict(family="vae", sampler="tpe", trials=trials, scheduler=scheduler, seed=seed,
                             real_test=test, real_true=test + 1, real_compute=100.0 + trials,
                             real_observed=test - 1, lab_observed_median=40.0, lab_true_median=41.0,
                             lab_compute_median=120.0, observed_inside=True, true_inside=True,
                             compute_inside=seed > 0))
    frame = pd.DataFrame(rows)
    lines = design_lines(frame)
    assert pair_lines(frame, pd.DataFrame(columns=["family"])) == []  # one sampler: no TPE-vs-random line
    assert lines[0].startswith("vae 8 trials, asha: 3 seeds") and "seconds 2/3" in lines[0]
    test_line = next(line for line in lines if "test FID of the pick" in line)
    assert "16 asha-g1-r3 minus 8 asha: mean -16.7 over 3 seeds (1 lower, 1 equal, 1 higher" in test_line
    assert "+0.0, -50.6, +0.4" in test_line


def test_the_design_check_pairs_every_proposal_with_the_arm_of_fewest_trials():
    from benchmarks.lab_check import design_lines

    rows = [dict(family="vae", sampler="tpe", trials=trials, scheduler=scheduler, seed=seed,
                 real_test=test + seed, real_true=test, real_compute=100.0, real_observed=test,
                 lab_observed_median=40.0, lab_true_median=41.0, lab_compute_median=120.0,
                 observed_inside=True, true_inside=True, compute_inside=True)
            for seed in range(2)
            for trials, scheduler, test in ((16, "asha-g1-r2", 30.0), (8, "asha", 50.0),
                                            (16, "asha-g1-r3", 20.0))]
    tests = [line for line in design_lines(pd.DataFrame(rows)) if "test FID" in line]
    assert len(tests) == 2 and all("minus 8 asha" in line for line in tests)
    assert "16 asha-g1-r2 minus 8 asha: mean -20.0" in tests[0]
    assert "16 asha-g1-r3 minus 8 asha: mean -30.0" in tests[1]


def test_the_replicates_keep_the_ended_runs_and_train_only_the_pairs_the_table_lacks():
    from benchmarks.lab_replicates import merge_runs, still_to_run
    from models import TrainConfig, seed_model_config

    base = TrainConfig(model=seed_model_config("gan", "dcgan"), epochs=2).to_dict()
    configs = [{**base, "lr_g": lr, "seed": seed} for lr in (1e-3, 2e-3) for seed in (300, 301)]
    jsons = [TrainConfig.from_dict(c).to_json() for c in configs]

    def table(study, rows):  # rows: (config index, trial id, stop reason, final FID)
        trials = pd.DataFrame({R.STUDY: study, R.TRIAL_ID: [r[1] for r in rows],
                               R.CONFIG_JSON: [jsons[r[0]] for r in rows],
                               R.STOP_REASON: [r[2] for r in rows], R.FINAL_VAL_FID: [r[3] for r in rows]})
        history = pd.DataFrame([{R.STUDY: study, R.TRIAL_ID: r[1], R.EPOCH: e, R.VAL_FID: r[3] + 2 - e}
                                for r in rows for e in (1, 2)])
        return trials, history

    # a session committed 2 ended runs and one that errored; the next one's experiment is new
    nan = float("nan")
    before = table("gan-replicates", [(0, "a", R.STOP_COMPLETED, 30.0), (1, "b", R.STOP_DIVERGED, nan),
                                      (2, "c", R.STOP_ERROR, nan)])
    assert still_to_run(configs, before[0]) == configs[2:]  # the errored run trains again
    assert still_to_run(configs, pd.DataFrame()) == configs
    now = table("gan-replicates", [(2, "d", R.STOP_COMPLETED, 41.0), (3, "e", R.STOP_COMPLETED, 42.0),
                                   (0, "f", R.STOP_COMPLETED, 31.0)])
    trials, history = merge_runs(before, now)
    assert sorted(trials[R.TRIAL_ID]) == ["b", "d", "e", "f"]  # config 0: the later table's run
    assert set(trials[R.CONFIG_JSON]) == set(jsons) and still_to_run(configs, trials) == []
    assert sorted(set(history[R.TRIAL_ID])) == ["b", "d", "e", "f"] and len(history) == 8
    assert history[history[R.TRIAL_ID] == "f"][R.VAL_FID].tolist() == [32.0, 31.0]
    assert merge_runs((pd.DataFrame(), pd.DataFrame()), (pd.DataFrame(), pd.DataFrame()))[0].empty
