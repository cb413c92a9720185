"""What a CPU trial's numbers depend on besides its configuration and seed: the torch intra-op
thread count, pinned here, and the processor, recorded in every result row.

CPU kernels split their sums by thread (oneDNN's convolutions, MKL's matrix products, ATen's
reductions), so the same configuration trained with 1 and with 2 threads ends a few ulps apart, and
a GAN amplifies that over epochs (issue 28: the seed DCGAN at quarter width, seed 3, 2000 images:
validation FID 177.0501577 with 1 thread and 177.0502369 with 2 after one epoch, 175.6842460 and
175.6840644 after two). `python -m study.train` used every core, a Tune trial its --cpus-per-trial,
and the real-image statistics the count of whichever process computed them first. `pinned_threads`
gives every CPU trial, its evaluation and the real statistics one fixed count, so a configuration
and seed train bit for bit in any process and at any trial concurrency on one machine.

The processor is not pinnable: oneDNN picks its convolution kernels and their blocking by the
CPU's instruction sets and cache sizes, so two machines (or two VMs on different hosts) can train
the same configuration differently at the same thread count. `repeat_columns` records the count and
a fingerprint of the CPU in every row, so studies can be compared knowingly (docs/training.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import torch

from study import results as R

# Torch intra-op threads of every CPU trial (training, its evaluation) and of the real-image
# statistics. One: a study runs many small trials side by side, one per core, which uses the cores
# better than threads within a small model's kernels, and it is what every study so far ran with
# (--cpus-per-trial 1). Changing it changes every CPU trial's numbers (the rows record it).
REPEAT_THREADS = 1

CPUINFO = Path("/proc/cpuinfo")
CACHE_DIRS = "/sys/devices/system/cpu/cpu0/cache/index*"
# the /proc/cpuinfo fields that decide which kernels the libraries pick
CPU_FIELDS = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags")


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run with `n` intra-op threads, then restore: CPU reductions split differently across threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def pinned_threads(device: torch.device | str) -> Iterator[None]:
    """Within: REPEAT_THREADS intra-op threads when `device` is a CPU (a CUDA or meta computation is
    left alone); the process's own count comes back on exit."""
    if torch.device(device).type != "cpu":
        yield
        return
    with intra_op_threads(REPEAT_THREADS):
        yield


@cache
def cpu_description() -> tuple[str, str]:
    """(model name, fingerprint): the fingerprint is 16 hex digits of the SHA-256 of the CPU's
    vendor, family, model, stepping, instruction-set flags and cache sizes (what oneDNN and MKL
    choose kernels by); the platform's processor string where /proc/cpuinfo is missing."""
    fields: dict[str, str] = {}
    try:
        for line in CPUINFO.read_text().splitlines():
            key, sep, value = line.partition(":")
            if not sep and fields:
                break  # the first processor's block ends at its blank line
            if key.strip() in CPU_FIELDS:
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        fields = {"model name": platform.processor() or platform.machine()}
    caches = []
    for index in sorted(Path("/").glob(CACHE_DIRS.lstrip("/"))):
        try:
            caches.append(f"L{(index / 'level').read_text().strip()}{(index / 'type').read_text().strip()}"
                          f"={(index / 'size').read_text().strip()}")
        except OSError:
            continue
    text = "\n".join([*(f"{k}={fields[k]}" for k in sorted(fields)), *caches])
    return fields.get("model name", "unknown"), hashlib.sha256(text.encode()).hexdigest()[:16]


def repeat_columns() -> dict[str, Any]:
    """The row's torch thread count now (inside a trial: REPEAT_THREADS), CPU model and fingerprint."""
    model, fingerprint = cpu_description()
    return {R.TORCH_THREADS: torch.get_num_threads(), R.CPU_MODEL: model, R.CPU_ID: fingerprint}
