"""What the search tells Optuna (issue 17), without Ray running: the searcher Tune drives
(study.engine.recovery.ResumableOptunaSearch) fed the results the trainable reports, and the
launcher's samplers on concurrent asks.

- A trial the scheduler stopped is PRUNED, its per-epoch validation FIDs (the epoch it stopped at
  included) its intermediate values; diverged, out-of-memory and errored trials are FAIL; only a
  completed trial is COMPLETE. Multi-objective studies get the same states without intermediate
  values, and their samplers go on sampling after pruned and failed trials.
- TPE has the constant liar whenever trials run at once: concurrent asks are spread out.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from study import launch
from study import results as R
from study.engine import search
from study.engine.plan import PARETO_METRICS
from study.engine.recovery import ResumableOptunaSearch, optuna_state
from study.launch import plan_from_args
from study.optuna_storage import sqlite_url

optuna.logging.set_verbosity(optuna.logging.ERROR)


def lr_space(trial) -> None:  # module level: the searcher pickles it
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)


def report(epoch: int, fid: float, **extra) -> dict:
    """One result as the trainable reports it (Tune adds training_iteration)."""
    return {R.EPOCH: epoch, R.VAL_FID: fid, "training_iteration": epoch, R.PARAMS_TOTAL: 1000.0,
            R.TRAIN_SECONDS: 2.0 * epoch, **extra}


def end(epoch: int, fid: float, reason: str) -> dict:
    """The trainable's final report: the last epoch plus the test metrics and the stop reason."""
    return report(epoch, fid, **{R.TEST_FID: fid + 1.0, R.STOP_REASON: reason})


# what Tune hands the searcher for each kind of trial: (on_trial_result results, on_trial_complete kwargs)
TRIALS = {
    # ran all 4 epochs under ASHA: it stops the trial at max_t, so its last report reaches
    # on_trial_complete only
    "completed": ([report(1, 90.0), report(2, 80.0), report(3, 70.0)],
                  dict(result=end(4, 60.0, R.STOP_COMPLETED))),
    # ran all 4 epochs without a scheduler: the last report reaches on_trial_result, then on_trial_complete
    "completed-unscheduled": ([report(1, 91.0), end(2, 61.0, R.STOP_COMPLETED)],
                              dict(result=end(2, 61.0, R.STOP_COMPLETED))),
    # ASHA stopped it at its epoch-2 report: Tune passes that report to on_trial_complete only
    "stopped": ([report(1, 95.0)], dict(result=report(2, 85.0))),
    # HyperBand stopped it while paused: no result at all
    "stopped-paused": ([report(1, 99.0), report(2, 88.0)], dict(result=None)),
    "diverged": ([end(1, math.nan, R.STOP_DIVERGED)], dict(result=end(1, math.nan, R.STOP_DIVERGED))),
    "oom": ([], dict(result={R.EPOCH: 0, R.VAL_FID: math.nan, R.STOP_REASON: R.STOP_OOM})),
    "errored": ([report(1, 97.0)], dict(result=None, error=True)),
    "completed-without-fid": ([end(4, math.nan, R.STOP_COMPLETED)], dict(result=end(4, math.nan,
                                                                                     R.STOP_COMPLETED))),
}
STATES = {"completed": TrialState.COMPLETE, "completed-unscheduled": TrialState.COMPLETE,
          "stopped": TrialState.PRUNED, "stopped-paused": TrialState.PRUNED,
          "diverged": TrialState.FAIL, "oom": TrialState.FAIL, "errored": TrialState.FAIL,
          "completed-without-fid": TrialState.FAIL}


def drive(tmp_path, name: str, metric, mode, sampler) -> optuna.Study:
    """Each kind of trial of TRIALS through a searcher on an optuna.db, as Tune calls it."""
    storage = optuna.storages.RDBStorage(sqlite_url(tmp_path / f"{name}.db"))
    searcher = ResumableOptunaSearch(space=lr_space, metric=metric, mode=mode, storage=storage,
                                     study_name=name, sampler=sampler)
    for kind, (results, complete) in TRIALS.items():
        assert searcher.suggest(kind) is not None
        for result in results:
            searcher.on_trial_result(kind, result)
        searcher.on_trial_complete(kind, **complete)
    return optuna.load_study(study_name=name, storage=sqlite_url(tmp_path / f"{name}.db"))


def test_the_optuna_state_says_how_the_trial_ended():
    assert optuna_state(end(4, 60.0, R.STOP_COMPLETED), error=False) == TrialState.COMPLETE
    assert optuna_state(report(2, 85.0), error=False) == TrialState.PRUNED  # no stop reason: stopped
    assert optuna_state(None, error=False) == TrialState.PRUNED
    for reason in (R.STOP_DIVERGED, R.STOP_OOM, R.STOP_ERROR):
        assert optuna_state(end(1, math.nan, reason), error=False) == TrialState.FAIL
    assert optuna_state(report(2, 85.0), error=True) == TrialState.FAIL


def test_a_stopped_trial_is_pruned_with_its_epochs_and_a_failed_one_fails(tmp_path):
    study = drive(tmp_path, "single", R.VAL_FID, "min", optuna.samplers.RandomSampler(seed=0))
    trials = dict(zip(TRIALS, study.trials, strict=True))
    assert {kind: t.state for kind, t in trials.items()} == STATES
    done, stopped, paused = trials["completed"], trials["stopped"], trials["stopped-paused"]
    assert done.value == 60.0 and done.intermediate_values == {1: 90.0, 2: 80.0, 3: 70.0, 4: 60.0}
    assert trials["completed-unscheduled"].intermediate_values == {1: 91.0, 2: 61.0}
    # the epoch the scheduler stopped it at is its last intermediate value and its value
    assert stopped.intermediate_values == {1: 95.0, 2: 85.0} and stopped.value == 85.0
    assert paused.intermediate_values == {1: 99.0, 2: 88.0} and paused.value == 88.0
    assert trials["errored"].intermediate_values == {1: 97.0} and trials["errored"].value is None
    assert all(trials[k].value is None for k in ("diverged", "oom", "completed-without-fid"))
    # TPE goes on after them (pruned trials ranked by the epoch they reached, failed ones left out)
    tpe_plan = plan("--sampler", "tpe", "--trials", "16")
    tpe = optuna.load_study(study_name="single", storage=sqlite_url(tmp_path / "single.db"),
                            sampler=search.make_sampler(tpe_plan, concurrency=2))
    for i in range(10):
        trial = tpe.ask()
        lr_space(trial)
        tpe.tell(trial, 50.0 + i)
    assert tpe.best_value == 50.0


def plan(*extra: str):
    return plan_from_args(launch.build_parser().parse_args(["--family", "gan", "--smoke-test", *extra]))


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_a_multi_objective_study_gets_the_same_states_without_intermediate_values(tmp_path, sampler):
    pareto = plan("--objective", "pareto", "--sampler", sampler, "--trials", "16")
    study = drive(tmp_path, sampler, list(PARETO_METRICS), ["min"] * len(PARETO_METRICS),
                  search.make_sampler(pareto))
    trials = dict(zip(TRIALS, study.trials, strict=True))
    assert {kind: t.state for kind, t in trials.items()} == STATES
    assert trials["completed"].values == [60.0, 1000.0, 8.0]
    assert trials["completed-unscheduled"].values == [61.0, 1000.0, 4.0]
    assert all(t.intermediate_values == {} for t in study.trials)  # Optuna refuses report() here
    # the sampler goes on past its start-up trials with pruned and failed trials in the study
    for i in range(20):
        trial = study.ask()
        lr_space(trial)
        study.tell(trial, [float(i % 7), 1000.0, float(i)])
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 22


def concurrent_asks(sampler, asks: int = 4) -> list[tuple[float, float]]:
    """Twelve trials told (a smooth bowl at (0.3, 0.7)), then `asks` asked at once, none told."""
    study = optuna.create_study(sampler=sampler)

    def space(trial):
        return trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)

    for _ in range(12):
        trial = study.ask()
        x, y = space(trial)
        study.tell(trial, (x - 0.3) ** 2 + (y - 0.7) ** 2)
    return [space(study.ask()) for _ in range(asks)]


def closest_pair(points) -> float:
    return min(math.dist(a, b) for a, b in itertools.combinations(points, 2))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_concurrent_tpe_asks_are_spread_out_by_the_constant_liar(seed):
    one_at_a_time = plan("--sampler", "tpe", "--trials", "16", "--seed", str(seed))
    assert search.make_sampler(one_at_a_time, concurrency=4)._constant_liar
    assert not search.make_sampler(one_at_a_time, concurrency=1)._constant_liar
    with_liar = concurrent_asks(search.make_sampler(one_at_a_time, concurrency=4))
    without = concurrent_asks(search.make_sampler(one_at_a_time, concurrency=1))
    # without the liar TPE proposes nearly the same point to every concurrent ask (measured closest
    # pairs 0.017-0.066 of the unit square over seeds 0-5); with it, 0.14-0.21
    assert closest_pair(without) < 0.1 < closest_pair(with_liar)
    assert concurrent_asks(search.make_sampler(one_at_a_time, concurrency=4)) == with_liar  # seeded


# five trials, in proposal order; e is the eventual winner whose epoch 2 is a bad snapshot
REPLAY_HISTORY = pd.DataFrame(
    [(t, e, float(e), fid) for t, fids in (("a", (50, 40, 30)), ("b", (60, 55, 50)), ("c", (45, 35, 20)),
                                           ("d", (48, 45, 10)), ("e", (40, 70, 5)))
     for e, fid in enumerate(fids, start=1)],
    columns=[R.TRIAL_ID, R.EPOCH, R.TRAIN_SECONDS, R.VAL_FID])


def kept_epochs(history: pd.DataFrame) -> dict[str, int]:
    return history.groupby(R.TRIAL_ID)[R.EPOCH].max().to_dict()


@pytest.mark.parametrize("signal", ["raw", "best"])
def test_the_asha_replay_stops_trials_by_the_rung_rule_one_at_a_time(signal):
    """grace 1, factor 2, max 3: rungs at epochs 1 and 2; a trial is stopped when its signal is worse
    than the median of the earlier trials' at the rung (the first trial at a rung always goes on)."""
    study = dataclasses.replace(plan("--scheduler", "asha", "--stop-signal", signal), grace_period=1,
                                reduction_factor=2.0, max_epochs=3)
    assert search.make_scheduler(study)._metric == {"raw": R.VAL_FID, "best": R.VAL_FID_BEST}[signal]
    kept = search.replay_asha(study, REPLAY_HISTORY, list("abcde"))
    # b: 60 > 50 at epoch 1; d: 45 > median(40, 35) at epoch 2; raw: e's 70 > median(40, 35, 45) at
    # epoch 2; best so far reads e's epoch 2 as 40, not worse than that median: e goes on to its 5
    assert kept_epochs(kept) == {"a": 3, "b": 1, "c": 3, "d": 2, "e": 2 if signal == "raw" else 3}
    assert list(kept.columns) == list(REPLAY_HISTORY.columns)
    first = search.replay_asha(study, REPLAY_HISTORY, list("eabcd"))  # the order decides: e first goes on
    assert kept_epochs(first)["e"] == 3


def test_the_best_so_far_signal_skips_diverged_epochs():
    from study.engine.trainable import best_so_far

    assert math.isnan(best_so_far([]))
    assert math.isnan(best_so_far([{R.VAL_FID: math.nan}]))
    history = [{R.VAL_FID: 80.0}, {R.VAL_FID: 60.0}, {R.VAL_FID: math.nan}, {R.VAL_FID: 70.0}]
    assert [best_so_far(history[: i + 1]) for i in range(4)] == [80.0, 60.0, 60.0, 60.0]
    # the replay's signal column is the same running minimum
    frame = pd.DataFrame({R.TRIAL_ID: ["t"] * 4, R.VAL_FID: [r[R.VAL_FID] for r in history]})
    assert list(search.signal_values(frame, "best")) == [80.0, 60.0, 60.0, 60.0]


def test_a_trial_restored_from_its_checkpoint_repeats_epochs_without_a_warning_per_epoch(tmp_path):
    """A trial resumed from its epoch-4 checkpoint reports epochs 5-7 again: Optuna keeps the first
    values (a CPU trial repeats them bit for bit) and the console stays free of its UserWarning."""
    import warnings

    storage = optuna.storages.RDBStorage(sqlite_url(tmp_path / "resumed.db"))
    searcher = ResumableOptunaSearch(space=lr_space, metric=R.VAL_FID, mode="min", storage=storage,
                                     study_name="resumed", sampler=optuna.samplers.RandomSampler(seed=0))
    assert searcher.suggest("t") is not None
    for epoch in range(1, 8):
        searcher.on_trial_result("t", report(epoch, 100.0 - epoch))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(5, 9):  # restored at epoch 4: 5-7 again, then 8
            searcher.on_trial_result("t", report(epoch, 200.0 - epoch))
    assert not [w for w in caught if "already reported" in str(w.message)]
    searcher.on_trial_complete("t", result=end(8, 192.0, R.STOP_COMPLETED))
    trial = optuna.load_study(study_name="resumed", storage=sqlite_url(tmp_path / "resumed.db")).trials[0]
    assert trial.intermediate_values == {**{e: 100.0 - e for e in range(1, 8)}, 8: 192.0}
