"""The search spaces stay what the studies in optuna.db were started with.

tests/fixtures/search_space_record.json was written by `record_all()` below, run on the code before the
spaces became tables (commit 43f41c9): for both families and the full / quick / smoke options, every
Optuna parameter name with its distribution (from 400 random trials), the first trials' parameters,
a digest of all 400 trials' parameters and configurations, the seed points and seed configurations,
and the search lab's encoding (`search_spaces.encode`) of the first trials and the seeds. The tests
replay the same draws through today's code and require the same record, and resume an Optuna study
built from the recorded trials with today's space. Rewrite the fixture only on purpose (a deliberate
change of the space, which existing studies then cannot resume):

    PYTHONPATH=. python -c "import tests.test_search_space_compat as t; t.write_record()"
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from models.config import FAMILIES
from search_spaces import SpaceOptions, define_by_run, seed_configs, seed_points, train_config
from search_spaces.encode import encode, space_features

optuna.logging.set_verbosity(optuna.logging.WARNING)
FIXTURE = Path(__file__).parent / "fixtures" / "search_space_record.json"
# the presets' spaces (study/engine/spec.py: PRESETS), written out so that a preset change does not
# pass for a space change; the loop and model entries travel into every configuration
FIXED_MODEL = {"gan": {"ema_decay": 0.99}, "vae": {"binarize": True}}  # one fixed model field each
LABELS = ("full", "quick", "smoke")


def space_options(family: str, label: str) -> SpaceOptions:
    if label == "full":
        return SpaceOptions()
    if label == "quick":
        return SpaceOptions(width_range=(0.25, 1.0), batch_sizes=(32, 64, 128),
                            loop={"epochs": 8, "seed": 0, "train_subset": 4_000, "eval_samples": 1_000})
    return SpaceOptions(width_scale=0.125, width_range=(0.5, 1.0), batch_sizes=(64, 128),
                        loop={"epochs": 4, "seed": 2}, model=FIXED_MODEL[family])

N_TRIALS = 400  # enough random trials to reach every architecture and depth of both families
N_LISTED = 6  # trials whose parameters and encodings are written out (the rest: a digest)
SAMPLER_SEED = 11


def _digest(items: list[Any]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def random_trials(family: str, options: SpaceOptions) -> tuple[list[optuna.trial.FrozenTrial], list[dict]]:
    """N_TRIALS trials of a seeded random sampler through the family's space, and their configs."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=SAMPLER_SEED))
    space = define_by_run(family, options)
    configs = []
    for i in range(N_TRIALS):
        trial = study.ask()
        configs.append(space(trial))
        study.tell(trial, float(i))
    return study.trials, configs


def record(family: str, options: SpaceOptions) -> dict[str, Any]:
    trials, configs = random_trials(family, options)
    distributions: dict[str, str] = {}
    for trial in trials:
        for name, dist in trial.distributions.items():
            distributions.setdefault(name, optuna.distributions.distribution_to_json(dist))
    features = space_features(family, options)
    seeds = [c.to_dict() for c in seed_configs(family, options)]
    return {
        "distributions": dict(sorted(distributions.items())),
        "trials": [t.params for t in trials[:N_LISTED]],
        "params_sha256": _digest([t.params for t in trials]),
        "configs_sha256": _digest(configs),
        "seed_points": seed_points(family, options),
        "seed_configs": seeds,
        "feature_names": features.names,
        "encodings": [encode(features, c).tolist() for c in configs[:N_LISTED] + seeds],
    }


def record_all() -> dict[str, Any]:
    return {family: {label: record(family, space_options(family, label)) for label in LABELS}
            for family in FAMILIES}


def write_record() -> None:
    FIXTURE.write_text(json.dumps(record_all(), indent=1, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


CASES = [(family, label) for family in FAMILIES for label in LABELS]


@pytest.mark.parametrize(("family", "label"), CASES)
def test_the_space_keeps_its_parameter_names_distributions_and_draws(recorded, family, label):
    old, new = recorded[family][label], record(family, space_options(family, label))
    assert new["distributions"] == old["distributions"]  # every name, with its exact distribution
    assert new["trials"] == old["trials"]
    assert new["params_sha256"] == old["params_sha256"]  # the same values, drawn in the same order
    assert new["configs_sha256"] == old["configs_sha256"]  # and the same configurations from them
    assert new["seed_points"] == old["seed_points"]
    assert new["seed_configs"] == old["seed_configs"]


@pytest.mark.parametrize(("family", "label"), CASES)
def test_the_search_labs_encoding_is_unchanged(recorded, family, label):
    old, new = recorded[family][label], record(family, space_options(family, label))
    assert new["feature_names"] == old["feature_names"]
    np.testing.assert_allclose(np.asarray(new["encodings"]), np.asarray(old["encodings"]), rtol=0, atol=1e-12)


def stored_study(path: Path, family: str, label: str, recorded: dict[str, Any]) -> str:
    """A sqlite optuna.db holding the recorded trials as the old space stored them (names,
    distributions, values), completed with an objective value each; -> its storage URL."""
    old = recorded[family][label]
    storage = f"sqlite:///{path / f'{family}-{label}.db'}"
    study = optuna.create_study(storage=storage, study_name="old")
    distributions = {name: optuna.distributions.json_to_distribution(text)
                     for name, text in old["distributions"].items()}
    study.add_trials([
        optuna.trial.create_trial(params=params, distributions={n: distributions[n] for n in params},
                                  value=float(i))
        for i, params in enumerate(old["trials"] + old["seed_points"])])
    return storage


@pytest.mark.parametrize(("family", "label"), CASES)
def test_a_study_started_by_the_old_space_resumes_with_todays(tmp_path, recorded, family, label):
    options = space_options(family, label)
    storage = stored_study(tmp_path, family, label, recorded)
    study = optuna.load_study(study_name="old", storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2))
    space = define_by_run(family, options)
    # every stored parameter is one that today's space draws, from a compatible distribution: replay
    # each stored trial through today's space and compare what it asks for with what was stored
    for stored in study.trials:
        replay = optuna.create_study()
        replay.enqueue_trial(stored.params)
        trial = replay.ask()
        space(trial)
        assert set(trial.distributions) == set(stored.distributions)
        for name, dist in stored.distributions.items():
            optuna.distributions.check_distribution_compatibility(dist, trial.distributions[name])
            assert trial.distributions[name] == dist, name
        assert trial.params == stored.params
    # an old trial enqueued again gives the configuration the old space gave it
    first = recorded[family][label]["trials"][0]
    study.enqueue_trial(first)
    trial = study.ask()
    again = train_config(space(trial))
    study.tell(trial, 0.0)
    assert trial.params == first
    assert again == train_config(define_by_run(family, options)(optuna.trial.FixedTrial(first)))
    # and the study goes on: TPE, fitted on the old trials, proposes new ones under the same names
    for _ in range(4):
        trial = study.ask()
        train_config(space(trial))
        study.tell(trial, 1.0)
    names = set(recorded[family][label]["distributions"])
    assert all(set(t.params) <= names for t in study.trials)
    assert len(study.trials) == len(recorded[family][label]["trials"]) + 2 + 5
