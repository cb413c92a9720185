"""Full float32 inside metric code: no TF32 in matmuls or cuDNN convolutions.

On Ampere and later GPUs, TF32 (10-bit mantissa) may be switched on for training speed
(`torch.set_float32_matmul_precision("high")`, cuDNN's default for convolutions). FID's covariances,
KID's kernels, PRDC's distances and the likelihood bounds would then depend on the GPU generation;
under `full_fp32()` they are computed in true float32 (a no-op on the CPU, which has no TF32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """Within: matmul precision "highest" and cuDNN TF32 off; the previous settings back on exit.
    Also a decorator (`@full_fp32()`)."""
    saved = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]
