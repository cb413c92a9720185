"""Small building blocks shared by the four architectures."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from models.config import ModelConfig

IMAGE_PIXELS = 28 * 28

Autocast = Callable[[], AbstractContextManager[Any]]  # a fresh mixed-precision context per call


def activation(kind: str, slope: float) -> nn.Module:
    return nn.LeakyReLU(slope) if kind == "leaky_relu" else nn.ReLU()


def mlp(widths: list[int], act: str, slope: float, dropout: float = 0.0,
        batch_norm: bool = False) -> nn.Sequential:
    """Linear -> [BatchNorm] -> activation -> [Dropout] for each consecutive pair in `widths`."""
    layers: list[nn.Module] = []
    for d_in, d_out in zip(widths[:-1], widths[1:], strict=True):
        layers.append(nn.Linear(d_in, d_out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(activation(act, slope))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def conv_out_size(size: int, n_stride2: int) -> int:
    """Spatial size after n stride-2 'same' convolutions: ceil(size / 2) each time."""
    for _ in range(n_stride2):
        size = (size + 1) // 2
    return size


def chunked(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, chunk: int | None) -> Any:
    """fn(x) (a tensor or a tuple of tensors) computed at most `chunk` rows per call and concatenated
    (None, or a batch of at most `chunk`: one call); for per-example functions, i.e. networks in eval
    mode."""
    if chunk is None or len(x) <= chunk:
        return fn(x)
    parts = [fn(piece) for piece in x.split(max(1, chunk))]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))
    return torch.cat(parts)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class GenerativeModel(nn.Module):
    """What both families share: named networks, their sizes, and the latent prior N(0, I)."""

    config: ModelConfig  # the family's config dataclass (GANConfig or VAEConfig)
    family: str

    def networks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def decode_to_unit(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def train_step(self, x_unit: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   autocast: Autocast = contextlib.nullcontext) -> dict[str, torch.Tensor]:
        """One optimisation step. `autocast()` opens a mixed-precision context: only forward passes
        and losses run inside one, a fresh one per update, because autocast keeps its low-precision
        weight copies for the life of a context, and a pass after an optimiser step in the same
        context would go through the weights from before that step."""
        raise NotImplementedError

    def parameter_counts(self) -> dict[str, int]:
        return {name: count_parameters(net) for name, net in self.networks().items()}

    def sample_latent(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return torch.randn(n, self.config.latent_dim, generator=generator, device=device)
