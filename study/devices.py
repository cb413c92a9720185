"""Where a computation runs: the device a command or trial uses, and the environment columns that
every result row carries (node, device, torch version)."""

from __future__ import annotations

import platform
from typing import Any

import torch

from models.config import ConfigError
from study import results as R


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` (cpu, cuda, cuda:N) checked against this machine; None: CUDA when available."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ConfigError(f"--device {requested!r}: not a torch device; "
                              "use cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {requested}: CUDA is not available on this machine; "
                              "use --device cpu")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def environment(device: torch.device | str) -> dict[str, Any]:
    return {R.NODE: platform.node(), R.DEVICE: str(device), R.TORCH_VERSION: torch.__version__}
