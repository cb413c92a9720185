"""PRDC: precision and recall (Kynkaenniemi et al. 2019), density and coverage (Naeem et al. 2020),
k = 5, on the domain features of n generated vs the first n real images of a split. The real side
(features and k-NN radii) is computed once per study and travels with the evaluation assets; an
evaluation pays only for its fake side.

Distances and k-NN radii are computed with torch on the evaluation's device, in row chunks of
`torch.cdist` (float64, then rounded to float32 as `prdc` does) + `topk`: no n x n matrix is ever
held, and the CPU work runs on torch's threads (the trial's --cpus-per-trial), not on the 8
joblib threads of `prdc`'s sklearn call. Equal to `prdc.compute_prdc` (tests compare).
"""

from __future__ import annotations

import contextlib
import io
from typing import NamedTuple

import numpy as np
import torch

from study.metrics.real_stats import RealStats
from study.repeat import pinned_threads

PRDC_K = 5  # nearest neighbours of the PRDC manifolds (Naeem et al. 2020 recommend k = 5)
PRDC_CHUNK = 1024  # rows per distance block: n x 1024 float64 (80 MB at n = 10,000)
PRDCKey = tuple[str, str, int, int]  # (images sha256, feature-network sha256, real images, k)


class PRDCReal(NamedTuple):
    """The real side of PRDC, computed once per (split, image count): features and k-NN radii."""

    features: np.ndarray  # float32 [n, D]: the domain features of the first n real images
    radii: np.ndarray  # float32 [n]: distance of each to its k-th nearest real neighbour


def prdc_key(real: RealStats, num_images: int, k: int = PRDC_K) -> PRDCKey:
    """Which real side `num_images` generated images of `real`'s split are compared with."""
    return (real.images_sha256, real.network_sha256, min(num_images, real.num_images), k)


def prdc_real(real: RealStats, num_images: int, k: int = PRDC_K,
              device: torch.device | str = "cpu") -> PRDCReal:
    """The first `num_images` real features of `real` and their k-NN radii (a k-NN search over the
    real images: compute it once per study, see EvaluationAssets.prdc)."""
    if real.features is None:
        raise ValueError("these real statistics carry no features (Inception-FID statistics have none)")
    features = real.features[: min(num_images, real.num_images)].numpy().astype(np.float32)
    return PRDCReal(features, prdc_real_radii(features, k, device))


def _distances(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Euclidean distances [len(rows), len(columns)], float64 arithmetic rounded to float32."""
    return torch.cdist(rows.double(), columns.double()).float()


def _radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row (the (k+1)-th smallest, itself at 0)."""
    return torch.cat([_distances(block, features).topk(k + 1, dim=1, largest=False).values[:, -1]
                      for block in features.split(PRDC_CHUNK)])


def prdc_real_radii(features: np.ndarray, k: int = PRDC_K,
                    device: torch.device | str = "cpu") -> np.ndarray:
    """Each real feature's distance to its k-th nearest real neighbour (float32 [n]), on a CPU at the
    trials' pinned thread count (the driver computes them for every trial)."""
    with torch.no_grad(), pinned_threads(device):
        return _radii(torch.from_numpy(features).to(device), k).cpu().numpy()


@torch.no_grad()
def prdc_scores(real: PRDCReal, fake_features: np.ndarray | torch.Tensor, k: int = PRDC_K,
                device: torch.device | str = "cpu") -> dict[str, float]:
    """Precision, recall, density, coverage of fake features against a cached real side.

    `prdc.compute_prdc` (Kynkaenniemi et al. 2019 Eq. 1-2; Naeem et al. 2020 Eq. 3-4) with the
    real radii passed in, computed block by block over the fake images on `device`.
    """
    real_x = torch.from_numpy(real.features).to(device)
    real_radii = torch.from_numpy(real.radii).to(device)
    fake_x = torch.as_tensor(fake_features, dtype=torch.float32).to(device)
    fake_radii = _radii(fake_x, k)
    inside_any = torch.zeros(len(fake_x), dtype=torch.bool, device=device)  # per fake: in some real ball
    inside_count = torch.zeros(len(fake_x), dtype=torch.float64, device=device)  # ... in how many
    recalled = torch.zeros(len(real_x), dtype=torch.bool, device=device)  # per real: in some fake ball
    nearest_fake = torch.full((len(real_x),), torch.inf, device=device)  # per real: nearest fake
    for start in range(0, len(fake_x), PRDC_CHUNK):
        block = slice(start, start + PRDC_CHUNK)
        distance = _distances(real_x, fake_x[block])  # [n_real, chunk]
        inside = distance < real_radii[:, None]  # fake j inside real i's k-NN ball
        inside_any[block] = inside.any(dim=0)
        inside_count[block] = inside.sum(dim=0).double()
        recalled |= (distance < fake_radii[None, block]).any(dim=1)
        nearest_fake = torch.minimum(nearest_fake, distance.min(dim=1).values)
    return {
        "precision": float(inside_any.double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(inside_count.mean() / k),
        "coverage": float((nearest_fake < real_radii).double().mean()),
    }


def quiet_compute_prdc(real_features: np.ndarray, fake_features: np.ndarray,
                       k: int = PRDC_K) -> dict[str, float]:
    """prdc.compute_prdc without its print to stdout (the reference the tests compare against)."""
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):
        return {key: float(v) for key, v in compute_prdc(real_features, fake_features, k).items()}
