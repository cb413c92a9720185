"""Where a computation runs: the device a command or trial uses, and the environment columns that
every result row carries (node, device, torch version, threads and CPU: study/repeat.py)."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from typing import Any

import torch

from models.config import ConfigError
from study import results as R
from study.repeat import repeat_columns


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


CUBLAS_WORKSPACE = ":4096:8"  # the cuBLAS workspace setting that makes its kernels deterministic


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Within: torch's deterministic algorithms only (an op without one raises), cuDNN deterministic
    and not autotuned, and CUBLAS_WORKSPACE_CONFIG set when unset (cuBLAS reads it when it creates
    its handle, so set it before a process's first CUDA matmul for it to take effect). The previous
    settings come back on exit. `enabled=False` changes nothing."""
    if not enabled:
        yield
        return
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]
        if saved[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def environment(device: torch.device | str) -> dict[str, Any]:
    """Node, device, torch version, torch threads, CPU model and fingerprint: what a row's numbers
    depend on besides its config (a CPU trial repeats bit for bit where all of them match)."""
    return {R.NODE: platform.node(), R.DEVICE: str(device), R.TORCH_VERSION: torch.__version__,
            **repeat_columns()}
