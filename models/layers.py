"""Small building blocks shared by the four architectures."""

from __future__ import annotations

from torch import nn

IMAGE_SHAPE = (1, 28, 28)
IMAGE_PIXELS = 28 * 28


def activation(kind: str, slope: float) -> nn.Module:
    return nn.LeakyReLU(slope) if kind == "leaky_relu" else nn.ReLU()


def mlp(widths: list[int], act: str, slope: float, dropout: float = 0.0, batch_norm: bool = False) -> nn.Sequential:
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


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
