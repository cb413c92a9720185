"""Models: typed configs, the four seed architectures and their per-family steps (torch only)."""

from __future__ import annotations

from models.config import (
    FAMILY_GAN,
    FAMILY_VAE,
    GANConfig,
    ModelConfig,
    TrainConfig,
    VAEConfig,
    seed_model_config,
)
from models.gan_model import GAN
from models.layers import GenerativeModel
from models.vae_model import VAE


def build_model(cfg: ModelConfig) -> GenerativeModel:
    """Config -> the family's nn.Module (GAN or VAE), each with the same small interface:
    networks(), parameter_counts(), make_optimizers(), sample_latent(), decode_to_unit(),
    train_step(x_unit, optimizers)."""
    if isinstance(cfg, GANConfig):  # family gan
        return GAN(cfg)
    return VAE(cfg)


__all__ = ["FAMILY_GAN", "FAMILY_VAE", "GANConfig", "VAEConfig", "TrainConfig", "ModelConfig",
           "seed_model_config", "build_model"]
