"""Search spaces: seed points reproduce the seed studies, samples stay in range, Optuna runs seeds first."""

from __future__ import annotations

import math
import pickle

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
    seed_configs,
    seed_points,
    train_config,
)
from search_spaces.gan import DCGAN_D_DEPTHS, MLP_DEPTHS
from search_spaces.vae import DENSE_DEPTHS

optuna.logging.set_verbosity(optuna.logging.WARNING)
WIDTH_KEYS = {"gan": ("g_widths", "d_widths"), "vae": ("enc_widths", "dec_widths", "enc_channels",
                                                       "dec_channels")}


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
        seed_others = TrainConfig(model=seed).to_dict().items()
        assert others == {k: v for k, v in seed_others if k not in WIDTH_KEYS[family]}


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
    tune_config = {**flat, SPACE_KEY: {"dcgan_g_0": 128}}
    assert train_config(tune_config) == TrainConfig.from_dict(flat)
    with pytest.raises(ConfigError, match="unknown gan config keys"):
        train_config({**flat, "lr_gg": 1e-3})


def test_a_width_range_without_the_seed_width_is_refused():
    with pytest.raises(ConfigError, match="must contain 1.0"):
        SpaceOptions(width_range=(0.1, 0.5))
