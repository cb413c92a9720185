"""Search spaces: seed points reproduce the seed studies, samples stay in range, Optuna runs seeds first,
the table is what Optuna sees, and width scaling scales every width field."""

from __future__ import annotations

import ast
import dataclasses
import math
import pickle
from collections import defaultdict
from pathlib import Path

import optuna
import pytest

from models import build_model
from models.config import ARCHS, FAMILIES, ConfigError, TrainConfig, seed_model_config
from search_spaces import (
    LATENT_RANGE,
    LR_RANGE,
    SPACE_KEY,
    SpaceOptions,
    config_for_params,
    define_by_run,
    family_module,
    geometric_widths,
    scale_widths,
    seed_configs,
    seed_points,
    space,
    tpe_startup_trials,
    train_config,
)
from search_spaces.common import FIRST
from search_spaces.gan import DCGAN_D_DEPTHS, MLP_DEPTHS
from search_spaces.vae import DENSE_DEPTHS

optuna.logging.set_verbosity(optuna.logging.WARNING)
WIDTH_KEYS = {
    "gan": ("g_widths", "d_widths"),
    "vae": ("enc_widths", "dec_widths", "enc_channels", "dec_channels"),
}


def sample_configs(family: str, options: SpaceOptions, n: int, seed: int = 0) -> list[TrainConfig]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = define_by_run(family, options)
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(train_config(space(trial)))
        study.tell(trial, 1.0)
    return configs


@pytest.mark.parametrize("family", FAMILIES)
def test_seed_points_reproduce_the_seed_studies_configurations(family):
    loop = dict(epochs=7, seed=3, eval_samples=100, train_subset=500)
    configs = seed_configs(family, SpaceOptions(loop=loop))
    assert [c.model.arch for c in configs] == list(ARCHS[family])
    for config in configs:
        assert config.model == seed_model_config(family, config.model.arch)
        assert config.batch_size == TrainConfig.batch_size
        assert (config.epochs, config.seed, config.eval_samples, config.train_subset) == (7, 3, 100, 500)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_width_scale_shrinks_only_the_widths_of_the_seed_configurations(family):
    options = SpaceOptions(width_scale=0.125, width_range=(0.5, 1.0))
    for config in seed_configs(family, options):
        seed = seed_model_config(family, config.model.arch)
        expected = {k: tuple(max(1, round(w * 0.125)) for w in getattr(seed, k)) for k in WIDTH_KEYS[family]}
        changed = {k: getattr(config.model, k) for k in WIDTH_KEYS[family]}
        if config.model.arch == "mlp" and family == "vae":  # mlp VAEs have no conv channels to scale
            expected = {k: v for k, v in expected.items() if "channels" not in k}
            changed = {k: v for k, v in changed.items() if "channels" not in k}
        assert changed == expected
        others = {k: v for k, v in config.to_dict().items() if k not in WIDTH_KEYS[family]}
        seed_dict = TrainConfig(model=seed).to_dict()
        assert others == {k: v for k, v in seed_dict.items() if k not in WIDTH_KEYS[family]}


@pytest.mark.parametrize("family", FAMILIES)
def test_sampled_configurations_stay_within_the_documented_ranges(family):
    options = SpaceOptions()
    configs = sample_configs(family, options, n=60)
    assert {c.model.arch for c in configs} == set(ARCHS[family])
    for config in configs:
        model = config.model
        seed = seed_model_config(family, model.arch)
        assert LATENT_RANGE[0] <= model.latent_dim <= LATENT_RANGE[1]
        for lr in (model.lr_g, model.lr_d) if family == "gan" else (model.lr,):
            assert LR_RANGE[0] <= lr <= LR_RANGE[1]
        assert config.batch_size in options.batch_sizes
        # per-layer widths: within 1/4x..4x of the seed width of the layer at that position
        if family == "gan" and model.arch == "dcgan":
            assert len(model.g_widths) == 2 and DCGAN_D_DEPTHS[0] <= len(model.d_widths) <= DCGAN_D_DEPTHS[1]
            pairs = list(zip(model.g_widths, seed.g_widths, strict=True))
            pairs += list(zip(model.d_widths, (64, 128, 256, 512), strict=False))
        elif family == "gan":
            assert MLP_DEPTHS[0] <= len(model.g_widths) <= MLP_DEPTHS[1]
            assert MLP_DEPTHS[0] <= len(model.d_widths) <= MLP_DEPTHS[1]
            pairs = list(zip(model.g_widths[::-1], (1024, 512, 256, 128), strict=False))
            pairs += list(zip(model.d_widths, (1024, 512, 256, 128), strict=False))
        else:
            assert DENSE_DEPTHS[0] <= len(model.enc_widths) <= DENSE_DEPTHS[1]
            pairs = list(zip(model.enc_widths, (512, 256, 128), strict=False))
            pairs += list(zip(model.dec_widths[::-1], (512, 256, 128), strict=False))
            if model.arch == "conv":
                pairs += list(zip(model.enc_channels + model.dec_channels, (32, 64, 64), strict=True))
        for width, seed_width in pairs:
            assert math.floor(seed_width / 4) <= width <= math.ceil(seed_width * 4), (width, seed_width)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_sampled_configuration_builds_a_model(family):
    options = SpaceOptions(width_scale=0.125)  # the same space, shrunk so 40 models build quickly
    for config in sample_configs(family, options, n=40, seed=1):
        model = build_model(config.model)
        assert sum(model.parameter_counts().values()) > 0


def test_the_space_is_seen_by_optuna_under_the_documented_names():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    flat = define_by_run("vae", SpaceOptions())(trial)
    assert {"arch", "latent_dim", "lr", "beta1", "kl_beta", "batch_size"} <= set(trial.params)
    assert all(name.startswith(SPACE_KEY + "/") for name in trial.params if name not in flat)


@pytest.mark.parametrize("family", FAMILIES)
def test_enqueued_seed_points_are_the_first_trials_of_an_optuna_study(family):
    options = SpaceOptions(width_scale=0.25)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for point in seed_points(family, options):
        study.enqueue_trial(point)
    space = define_by_run(family, options)
    first = []
    for _ in range(4):
        trial = study.ask()
        first.append(train_config(space(trial)))
        study.tell(trial, 1.0)
    assert first[:2] == seed_configs(family, options)
    assert all(c not in seed_configs(family, options) for c in first[2:])


def test_the_space_pickles_for_ray_resume_and_replays_the_same_config():
    options = SpaceOptions(width_scale=0.5, loop={"epochs": 3})
    space = pickle.loads(pickle.dumps(define_by_run("gan", options)))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    trial = study.ask()
    config = train_config(space(trial))
    assert config_for_params("gan", trial.params, options) == config


def test_train_config_drops_the_raw_layer_parameters_and_rejects_typos():
    flat = seed_configs("gan", SpaceOptions())[0].to_dict()
    tune_config = {**flat, SPACE_KEY: {"dcgan_g_d2_w0": 128}}
    assert train_config(tune_config) == TrainConfig.from_dict(flat)
    with pytest.raises(ConfigError, match="unknown gan config keys"):
        train_config({**flat, "lr_gg": 1e-3})


def test_a_width_range_without_the_seed_width_is_refused():
    with pytest.raises(ConfigError, match="must contain 1.0"):
        SpaceOptions(width_range=(0.1, 0.5))


def width_roles(config: TrainConfig, family: str, value: int) -> set[tuple[str, str, int, int]]:
    """Every (arch, layer field, depth, position) whose width is `value` in this config."""
    roles = set()
    for key in WIDTH_KEYS[family]:
        widths = getattr(config.model, key, ()) or ()
        roles |= {(config.model.arch, key, len(widths), i) for i, w in enumerate(widths) if w == value}
    return roles


@pytest.mark.parametrize("family", FAMILIES)
def test_every_width_name_is_one_layer_with_one_distribution_at_every_depth(family):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    space = define_by_run(family, SpaceOptions())
    distributions, roles = defaultdict(set), {}
    depths = defaultdict(set)
    for _ in range(300):
        trial = study.ask()
        config = train_config(space(trial))
        study.tell(trial, 1.0)
        for name, value in trial.params.items():
            distributions[name].add(repr(trial.distributions[name]))
            if not name.startswith(SPACE_KEY + "/") or name.endswith("_depth"):
                continue
            # the layer(s) this value could be; a name that shifts layer leaves no common role
            here = width_roles(config, family, value)
            roles[name] = roles.get(name, here) & here
        for key in WIDTH_KEYS[family]:
            depths[(config.model.arch, key)].add(len(getattr(config.model, key, ()) or ()))
    assert {n: d for n, d in distributions.items() if len(d) > 1} == {}
    assert {n: r for n, r in roles.items() if len(r) != 1} == {}
    owners = defaultdict(list)
    for name, (role,) in roles.items():
        owners[role].append(name)
    assert all(len(names) == 1 for names in owners.values())  # one name per layer, too
    # every depth of every searched stack was sampled, so the check above covered them all
    if family == "gan":
        assert depths[("mlp", "g_widths")] == depths[("mlp", "d_widths")] == set(range(MLP_DEPTHS[0], 5))
        assert depths[("dcgan", "d_widths")] == set(range(DCGAN_D_DEPTHS[0], DCGAN_D_DEPTHS[1] + 1))
    else:
        for arch in ("conv", "mlp"):
            assert depths[(arch, "enc_widths")] == set(range(DENSE_DEPTHS[0], DENSE_DEPTHS[1] + 1))
    # a layer's width name also says its depth: e.g. a 3-layer MLP generator's first layer
    assert roles["space/mlp_g_d3_w0" if family == "gan" else "space/mlp_enc_d3_w0"] == {
        ("mlp", "g_widths", 3, 0) if family == "gan" else ("mlp", "enc_widths", 3, 0)}


@pytest.mark.parametrize(("n_trials", "n_seed", "expected"), [
    (8, 2, 4),  # 6 left: 1.5 -> 2 random (the minimum), 4 guided
    (16, 2, 6),  # 14 left: 3.5 rounds half up to 4 random, 10 guided
    (30, 2, 9),  # 28 left: 7 random
    (64, 2, 12),  # 62 left: 15.5 -> capped at 10 random, 52 guided
    (3, 2, 3),  # only 1 trial left: it is the random one
    (2, 2, 2),  # seeds only
    (1, 2, 2),  # fewer trials than seeds: start-up covers the seeds
    (10, 0, 3),  # no seeds: 2.5 rounds half up to 3 random
])
def test_tpe_startup_trials_follow_the_documented_rule(n_trials, n_seed, expected):
    assert tpe_startup_trials(n_trials, n_seed) == expected


def test_tpe_startup_trials_refuse_negative_counts():
    with pytest.raises(ValueError, match="must be >= 0"):
        tpe_startup_trials(-1, 2)


def minimise_x(n_startup: int, n_trials: int = 8) -> list[float]:
    """x proposed by a seeded TPE on (x - 0.9)^2, trial by trial."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=n_startup))
    for _ in range(n_trials):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, (x - 0.9) ** 2)
    return [t.params["x"] for t in study.trials]


def test_tpe_guides_the_trials_after_the_startup_ones():
    """With n_startup_trials from the rule, trials 5-8 of an 8-trial study are TPE's, not random;
    with Optuna's default of 10 all 8 are random draws."""
    n_startup = tpe_startup_trials(8, 2)
    scaled, default = minimise_x(n_startup), minimise_x(10)
    assert 8 - n_startup == 4
    assert scaled[:n_startup] == default[:n_startup]  # same seed: the same random draws first
    assert all(a != b for a, b in zip(scaled[n_startup:], default[n_startup:], strict=True))


def test_the_family_modules_do_not_import_the_package():
    """search_spaces/__init__ imports gan and vae; they must take what they share from common."""
    package = Path(__file__).resolve().parents[1] / "search_spaces"
    for path in package.glob("*.py"):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "search_spaces" not in imported, path.name


@pytest.mark.parametrize("family", FAMILIES)
def test_the_table_is_what_optuna_sees(family):
    """Each drawn name is a row of the table with that row's distribution, and a trial draws exactly
    the rows whose condition its own parameters meet, in the table's order."""
    table = space(family, SpaceOptions(width_scale=0.5))
    assert len({row.name for row in table.params}) == len(table.params)  # one row per name
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    define = define_by_run(family, SpaceOptions(width_scale=0.5))
    drawn = set()
    for _ in range(200):
        trial = study.ask()
        define(trial)
        study.tell(trial, 1.0)
        assert list(trial.params) == [row.name for row in table.params if row.active(trial.params)]
        assert {name: table.row(name).distribution() for name in trial.params} == trial.distributions
        drawn |= set(trial.params)
    assert drawn == {row.name for row in table.params}  # and every row is drawn by some trial


@pytest.mark.parametrize("family", FAMILIES)
def test_the_seed_depth_lies_on_each_stacks_rule_for_other_depths(family):
    """A stack's widths at depths the seed study did not use continue the seed's own stack, so the
    ranges at every depth share one geometric pattern (the seed's widths are read from models.config)."""
    stacks = family_module(family).STACKS
    for stack in stacks:
        seed = getattr(seed_model_config(family, stack.arch), stack.field)
        if stack.depths is None:
            continue
        anchor = seed[0] if stack.anchor == FIRST else seed[-1]
        rule = geometric_widths(anchor, len(seed), stack.ratio)
        assert (rule if stack.anchor == FIRST else rule[::-1]) == list(seed), stack.prefix
        assert stack.depths[0] <= len(seed) <= stack.depths[1]


@pytest.mark.parametrize(("family", "arch"), [(f, a) for f in FAMILIES for a in ARCHS[f]])
def test_scale_widths_scales_every_width_field_and_nothing_else(family, arch):
    config = TrainConfig(model=seed_model_config(family, arch))
    scaled = scale_widths(config, 0.3)
    tuples = {f.name for f in dataclasses.fields(config.model) if isinstance(f.default, tuple)}
    assert tuples == set(space(family, SpaceOptions()).width_fields)
    before, after = config.to_dict(), scaled.to_dict()
    assert {k: v for k, v in after.items() if k not in tuples} == {
        k: v for k, v in before.items() if k not in tuples}
    for key in tuples:  # round half to even, at least one unit: 64 * 0.3 = 19.2 -> 19
        assert after[key] == [max(1, round(w * 0.3)) for w in before[key]], key
    assert all(w == 1 for key in tuples for w in scale_widths(config, 0.001).to_dict()[key])
