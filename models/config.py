"""Typed configs: the only thing a model sees.

`GANConfig` / `VAEConfig` describe one network pair and its optimiser; `TrainConfig` wraps one
of them with the loop's settings. `study/` and `search_spaces/` translate flags and Optuna
trials into these; nothing here knows about argparse, Ray or Optuna, and this module does not
import torch, so `analysis/` can read configs cheaply.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass, field
from typing import Any

FAMILY_GAN = "gan"
FAMILY_VAE = "vae"
FAMILIES = (FAMILY_GAN, FAMILY_VAE)
AMP_NONE = "none"
AMP_BF16 = "bf16"
AMP_MODES = (AMP_NONE, AMP_BF16)  # TrainConfig.amp: mixed precision of the training steps

ARCH_DCGAN = "dcgan"
ARCH_MLP = "mlp"
ARCH_CONV = "conv"
ARCHS = {FAMILY_GAN: (ARCH_DCGAN, ARCH_MLP), FAMILY_VAE: (ARCH_CONV, ARCH_MLP)}


# Names of the per-step losses the families return; study/results.py re-exports them as columns.
LOSS_D = "loss_d"
LOSS_G = "loss_g"
D_REAL = "d_real"  # mean D(x) on real images, a GAN health signal
D_FAKE = "d_fake"
LOSS_NELBO = "loss_nelbo"  # VAE training loss: recon + kl_beta * KL, nats per image
LOSS_RECON = "loss_recon"
LOSS_KL = "loss_kl"


class ConfigError(ValueError):
    """A configuration that cannot be built; the message says what to change."""


def _check_types(cfg: Any) -> None:
    """Every field has the kind of value its default has (so `--set lr_g=abc` or `--set
    d_widths=512` fails here, naming the field, instead of deep inside a model)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        default = f.default
        if default is dataclasses.MISSING or (default is None and value is None):
            continue
        if isinstance(default, bool):
            ok = type(value).__name__ in ("bool", "bool_")
            kind, example = "true or false", "true"
        elif isinstance(default, tuple):
            ok = isinstance(value, tuple) and all(_is_int(v) for v in value)
            kind, example = "a comma-separated list of integers", ",".join(map(str, default))
        elif isinstance(default, str):
            ok = isinstance(value, str)
            kind, example = "text", default
        elif isinstance(default, int) or default is None:
            ok = _is_int(value)
            kind, example = "a whole number", str(default if default is not None else 1000)
        else:
            ok = isinstance(value, numbers.Real) and not _is_bool(value)
            kind, example = "a number", str(default)
        if not ok:
            raise ConfigError(f"{f.name}={value!r}: must be {kind}, e.g. {f.name}={example}.")


def _is_bool(value: Any) -> bool:
    return type(value).__name__ in ("bool", "bool_")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def _check_widths(name: str, widths: tuple[int, ...], exact_len: int | None = None) -> None:
    if not widths or any(int(w) < 1 for w in widths):
        raise ConfigError(f"{name}={widths!r}: every width must be a positive integer.")
    if exact_len is not None and len(widths) != exact_len:
        raise ConfigError(
            f"{name}={widths!r}: this architecture needs exactly {exact_len} widths."
        )


@dataclass(frozen=True)
class GANConfig:
    """A generator/discriminator pair and its two Adam optimisers.

    dcgan: g_widths = (channels of the 7x7 dense projection, channels of the 14x14 transposed
           conv); d_widths = filters of the stride-2 convs (any depth, 28 -> 14 -> 7 -> 4 -> 2).
    mlp:   g_widths / d_widths = hidden layer widths (depth = their length).
    """

    arch: str = ARCH_DCGAN
    latent_dim: int = 100
    g_widths: tuple[int, ...] = (128, 64)
    d_widths: tuple[int, ...] = (64, 128, 256, 512)
    leaky_slope: float = 0.2
    dropout: float = 0.0  # discriminator dropout after each hidden layer
    batch_norm: bool = False
    # dcgan only: the first seed study's printed second dense layer of 14*14*64 units (see
    # models/gan_model.py: DCGANGenerator for why it is off by default)
    printed_second_dense: bool = False
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # decay of an exponential moving average of the generator's weights (Yazici et al. 2019, "The
    # Unusual Effectiveness of Averaging in GAN Training"); samples and metrics then come from the
    # average. 0.0: off, the trained generator itself. Warmed up: min(decay, (1 + t) / (10 + t)).
    ema_decay: float = 0.0

    family = FAMILY_GAN

    def __post_init__(self) -> None:
        _check_types(self)
        _check_arch(FAMILY_GAN, self.arch)
        _validate_common(self)
        if self.arch == ARCH_DCGAN:
            _check_widths("g_widths", self.g_widths, exact_len=2)
            if len(self.d_widths) > 5:
                raise ConfigError(f"d_widths={self.d_widths!r}: at most 5 stride-2 convs fit 28x28.")
        else:
            _check_widths("g_widths", self.g_widths)
        _check_widths("d_widths", self.d_widths)
        for name in ("lr_g", "lr_d"):
            _check_positive(name, getattr(self, name))
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay={self.ema_decay}: must be in [0, 1) (0 turns the average off; "
                              "0.99 averages over about the last 100 steps).")


@dataclass(frozen=True)
class VAEConfig:
    """An encoder/decoder pair trained on the negative ELBO, and its Adam optimiser.

    conv: enc_channels = filters of the two stride-2 convs (28 -> 14 -> 7); dec_channels =
          (channels of the 7x7 projection and of the 14x14 transposed conv,).
    mlp:  enc_widths / dec_widths = hidden widths; the channel fields are ignored.
    """

    arch: str = ARCH_CONV
    latent_dim: int = 10
    enc_channels: tuple[int, ...] = (32, 64)
    enc_widths: tuple[int, ...] = (512, 256)
    dec_widths: tuple[int, ...] = (256, 512)
    dec_channels: tuple[int, ...] = (64,)
    activation: str = "leaky_relu"  # "leaky_relu" | "relu"
    leaky_slope: float = 0.2
    dropout: float = 0.0
    batch_norm: bool = False
    kl_beta: float = 1.0  # beta-VAE weight on the KL term; 1.0 is the true ELBO
    # train on dynamically binarized MNIST: every batch's pixels re-sampled as Bernoulli(intensity),
    # the standard for likelihood comparisons (Burda et al. 2016); off: the continuous grey pixels
    binarize: bool = False
    lr: float = 2e-4
    beta1: float = 0.9
    beta2: float = 0.999

    family = FAMILY_VAE

    def __post_init__(self) -> None:
        _check_types(self)
        _check_arch(FAMILY_VAE, self.arch)
        _validate_common(self)
        if self.activation not in ("leaky_relu", "relu"):
            raise ConfigError(f"activation={self.activation!r}: use 'leaky_relu' or 'relu'.")
        _check_widths("enc_widths", self.enc_widths)
        _check_widths("dec_widths", self.dec_widths)
        if self.arch == ARCH_CONV:
            _check_widths("enc_channels", self.enc_channels, exact_len=2)
            _check_widths("dec_channels", self.dec_channels, exact_len=1)
        _check_positive("lr", self.lr)
        if self.kl_beta < 0:
            raise ConfigError(f"kl_beta={self.kl_beta}: must be >= 0.")


ModelConfig = GANConfig | VAEConfig


@dataclass(frozen=True)
class TrainConfig:
    """Everything one trial needs besides the data: the model config and the loop's settings."""

    model: ModelConfig = field(default_factory=GANConfig)
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    checkpoint_every: int = 10  # the first seed study checkpoints every 10 epochs
    eval_samples: int = 10_000  # generated images per validation FID/KID/IS
    train_subset: int | None = None  # first N images of the training split, for quick runs
    # GPU speed options (they work on a CPU too, where they rarely help)
    amp: str = AMP_NONE  # "bf16": the training steps under bfloat16 autocast (no loss scaling needed)
    channels_last: bool = False  # 4-D weights (the conv models') in channels-last memory format
    eval_batch_size: int = 1000  # generated images per evaluation batch: larger keeps a GPU busy
    # deterministic algorithms, cuDNN without autotuning, cuBLAS's fixed workspace (study.devices):
    # the same CUDA run twice gives the same numbers, a little slower (a CPU run always does)
    deterministic: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, (GANConfig, VAEConfig)):
            raise ConfigError(f"model={self.model!r}: must be a GANConfig or VAEConfig.")
        _check_types(self)
        for name in ("epochs", "batch_size", "checkpoint_every", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be at least 1.")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp={self.amp!r}: choose one of {', '.join(AMP_MODES)}.")
        if self.eval_samples < 0 or self.eval_samples == 1:
            raise ConfigError(f"eval_samples={self.eval_samples}: give 0 (skips evaluation) or at least 2 "
                              "generated images (FID needs two to estimate a covariance).")
        if self.train_subset is not None and self.train_subset < 1:
            raise ConfigError(f"train_subset={self.train_subset}: give at least 1 image, "
                              "or leave it out for all.")

    @property
    def family(self) -> str:
        return self.model.family

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-able dict: loop fields plus the model fields plus `family`."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        flat.update(dataclasses.asdict(self.model))
        flat["family"] = self.family
        return {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, flat: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys are an error so a typo never passes silently."""
        flat = dict(flat)
        family = flat.pop("family", None)
        if family not in FAMILIES:
            raise ConfigError(f"family={family!r}: choose one of {', '.join(FAMILIES)}.")
        model_cls = GANConfig if family == FAMILY_GAN else VAEConfig
        loop_names = {f.name for f in dataclasses.fields(cls)} - {"model"}
        model_names = {f.name for f in dataclasses.fields(model_cls)}
        unknown = set(flat) - loop_names - model_names
        if unknown:
            raise ConfigError(
                f"unknown {family} config keys {sorted(unknown)}; valid keys are "
                f"{sorted(loop_names | model_names)}."
            )
        defaults = {f.name: f.default for f in dataclasses.fields(model_cls)}
        model_kwargs = {k: _tuple_if_list(v, defaults[k]) for k, v in flat.items() if k in model_names}
        loop_kwargs = {k: v for k, v in flat.items() if k in loop_names}
        return cls(model=model_cls(**model_kwargs), **loop_kwargs)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> TrainConfig:
        """Copy with loop and/or model fields changed (model fields are routed to the model)."""
        model_names = {f.name for f in dataclasses.fields(self.model)}
        loop_names = {f.name for f in dataclasses.fields(self)} - {"model"}
        unknown = set(changes) - model_names - loop_names
        if unknown:
            raise ConfigError(
                f"unknown {self.family} config keys {sorted(unknown)}; valid keys are "
                f"{sorted(model_names | loop_names)}."
            )
        model_changes = {k: _tuple_if_list(v, getattr(self.model, k))
                         for k, v in changes.items() if k in model_names}
        loop_changes = {k: v for k, v in changes.items() if k not in model_names}
        model = dataclasses.replace(self.model, **model_changes) if model_changes else self.model
        return dataclasses.replace(self, model=model, **loop_changes)


# --- the seed studies' printed configurations ---------------------------------------------------

def seed_model_config(family: str, arch: str) -> ModelConfig:
    """The configuration a seed study printed (with the misprint resolutions of the issues).

    gan/dcgan and vae/conv: first seed study (TensorFlow). gan/mlp and vae/mlp: second seed
    study (PyTorch). All use Adam at lr 2e-4, the first seed study's rate.
    """
    _check_arch(family, arch)
    if family == FAMILY_GAN and arch == ARCH_DCGAN:
        return GANConfig()
    if family == FAMILY_GAN:
        return GANConfig(arch=ARCH_MLP, g_widths=(256, 512, 1024), d_widths=(1024, 512, 256), dropout=0.3)
    if arch == ARCH_CONV:
        return VAEConfig()
    return VAEConfig(arch=ARCH_MLP, latent_dim=16, enc_widths=(512, 256), dec_widths=(256, 512),
                     activation="relu")


def _tuple_if_list(value: Any, current: Any = None) -> Any:
    """JSON lists become the tuples of the width fields; so does one width (`--set d_widths=512`)
    when the field holds a tuple. Anything else is left for `_check_types` to judge."""
    if isinstance(value, list):
        return tuple(int(v) if _is_int(v) else v for v in value)
    if isinstance(current, tuple) and _is_int(value):
        return (value,)
    return value


def _check_arch(family: str, arch: str) -> None:
    if family not in FAMILIES:
        raise ConfigError(f"family={family!r}: choose one of {', '.join(FAMILIES)}.")
    if arch not in ARCHS[family]:
        raise ConfigError(f"arch={arch!r} is not a {family} architecture: choose one of "
                          f"{', '.join(ARCHS[family])}.")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name}={value}: must be > 0.")


def _validate_common(cfg: GANConfig | VAEConfig) -> None:
    if int(cfg.latent_dim) < 1:
        raise ConfigError(f"latent_dim={cfg.latent_dim}: must be at least 1.")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"dropout={cfg.dropout}: must be in [0, 1).")
    if not (0.0 <= cfg.beta1 < 1.0 and 0.0 <= cfg.beta2 < 1.0):
        raise ConfigError(f"Adam betas ({cfg.beta1}, {cfg.beta2}): each must be in [0, 1).")
