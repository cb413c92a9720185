"""Real-image statistics (FID's running sums, KID's feature matrix) and their disk cache.

They are computed once per (split, exact images, network hash) and cached on disk, so trials,
re-exports and the Inception FID never pass the same real images through a network twice.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from models.layers import chunked
from study.data import to_unit

if TYPE_CHECKING:  # torchmetrics loads only where the metrics are computed
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

STATS_DIR_ENV = "STUDY_STATS_DIR"
_CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
DEFAULT_STATS_DIR = _CACHE_HOME / "ganvae-study" / "real_stats"
BATCH_SIZE = 1000  # images per generation / feature batch
# On a CPU a convolution over a 1,000-image batch runs ~1.6x slower than over 128-image chunks (the
# activations leave the cache; at one thread here: feature network 0.27 -> 0.17 s, seed conv VAE
# decoder 0.20 -> 0.11 s, DCGAN generator 0.34 -> 0.22 s per 1,000 images). Every layer is per image
# in eval mode, so the outputs are the same (bitwise on this machine's CPU); a GPU keeps the batch.
CPU_CHUNK = 128


@dataclass(frozen=True)
class RealStats:
    """One split's real-image statistics under one network, in the form of torchmetrics' states."""

    split: str
    images_sha256: str  # the exact uint8 images (so a different MNIST copy or subset never matches)
    network_sha256: str
    num_images: int
    feature_sum: torch.Tensor  # float64 [D]: FID's real_features_sum
    feature_cov_sum: torch.Tensor  # float64 [D, D]: FID's real_features_cov_sum (sum of f f^T)
    features: torch.Tensor | None = None  # float32 [N, D]: KID's real features (None for Inception FID)

    def load_into(self, fid: FrechetInceptionDistance, kid: KernelInceptionDistance | None = None) -> None:
        device = fid.real_features_sum.device
        fid.real_features_sum = self.feature_sum.to(device, torch.float64)
        fid.real_features_cov_sum = self.feature_cov_sum.to(device, torch.float64)
        fid.real_features_num_samples = torch.tensor(self.num_images, device=device)
        if kid is not None:
            assert self.features is not None, "Inception-FID statistics carry no KID features"
            kid.real_features = [self.features.to(device, torch.float32)]

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def images_sha256(images_uint8: torch.Tensor) -> str:
    return hashlib.sha256(images_uint8.contiguous().cpu().numpy().tobytes()).hexdigest()


def stats_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The flag, else $STUDY_STATS_DIR, else ~/.cache/ganvae-study/real_stats."""
    return Path(cache_dir or os.environ.get(STATS_DIR_ENV) or DEFAULT_STATS_DIR).expanduser()


def cached_real_stats(images_uint8: torch.Tensor, split: str, network_sha256: str,
                      compute: Callable[[], RealStats], cache_dir: str | Path | None = None,
                      variant: str = "") -> RealStats:
    """Load the stats of these images under this network from the cache, else compute and store them.

    The file is written atomically (temp file + rename), so concurrent trials computing the same
    stats never see half a file; an unreadable or mismatching file is recomputed, not trusted.
    `variant` goes into the file name: how `compute` computes (its thread count), so stats computed
    otherwise, a few ulps apart, are never taken for these.
    """
    image_hash = images_sha256(images_uint8)
    directory = stats_cache_dir(cache_dir)
    path = directory / f"{split}-{len(images_uint8)}-{image_hash[:16]}-{network_sha256[:16]}{variant}.pt"
    if path.is_file():
        try:
            stats = RealStats(**torch.load(path, map_location="cpu", weights_only=True))
            if (stats.images_sha256, stats.network_sha256) == (image_hash, network_sha256):
                return stats
        except Exception as exc:  # noqa: BLE001 - any unreadable cache file is recomputed
            warnings.warn(f"ignoring unreadable real-statistics cache {path} ({type(exc).__name__}); "
                          "recomputing",
                          stacklevel=2)
    stats = compute()
    if (stats.images_sha256, stats.network_sha256) != (image_hash, network_sha256):
        raise RuntimeError("real statistics were computed for other images or another network")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            torch.save(stats.to_dict(), handle)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared by several users' trials
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache costs time, not correctness
        warnings.warn(f"could not cache real statistics in {directory} ({exc}); set {STATS_DIR_ENV} to a "
                      "writable directory to avoid recomputing them", stacklevel=2)
    return stats


def cpu_chunk(device: torch.device | str) -> int | None:
    """The images per network call when scoring on `device`: CPU_CHUNK on a CPU, None (the whole
    batch) elsewhere."""
    return CPU_CHUNK if torch.device(device).type == "cpu" else None


def per_chunk(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Any:
    """`fn(x)` for a batch `x` on the CPU computed CPU_CHUNK images at a time and concatenated (a tensor
    or a tuple of tensors, as `fn` returns); on another device, or a batch of at most CPU_CHUNK, one
    call. For per-image functions (eval-mode networks) only."""
    return chunked(fn, x, cpu_chunk(x.device))


def unit_batches(images_uint8: torch.Tensor, batch_size: int = BATCH_SIZE) -> Iterator[torch.Tensor]:
    """uint8 [N, 28, 28] -> float [B, 1, 28, 28] batches in [0, 1]."""
    for start in range(0, len(images_uint8), batch_size):
        yield to_unit(images_uint8[start:start + batch_size])


