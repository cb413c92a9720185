"""PRDC: precision and recall (Kynkaenniemi et al. 2019), density and coverage (Naeem et al. 2020),
k = 5, on the domain features of n generated vs the first n real images of a split. The real side
(features and k-NN radii) is computed once per study and travels with the evaluation assets; an
evaluation pays only for its fake side. The `prdc` package's own functions compute the distances.
"""

from __future__ import annotations

import contextlib
import io
from typing import NamedTuple

import numpy as np

from study.metrics.real_stats import RealStats

PRDC_K = 5  # nearest neighbours of the PRDC manifolds (Naeem et al. 2020 recommend k = 5)
PRDCKey = tuple[str, str, int, int]  # (images sha256, feature-network sha256, real images, k)


class PRDCReal(NamedTuple):
    """The real side of PRDC, computed once per (split, image count): features and k-NN radii."""

    features: np.ndarray  # float32 [n, D]: the domain features of the first n real images
    radii: np.ndarray  # float32 [n]: distance of each to its k-th nearest real neighbour


def prdc_key(real: RealStats, num_images: int, k: int = PRDC_K) -> PRDCKey:
    """Which real side `num_images` generated images of `real`'s split are compared with."""
    return (real.images_sha256, real.network_sha256, min(num_images, real.num_images), k)


def prdc_real(real: RealStats, num_images: int, k: int = PRDC_K) -> PRDCReal:
    """The first `num_images` real features of `real` and their k-NN radii (a k-NN search over the
    real images: compute it once per study, see EvaluationAssets.prdc)."""
    if real.features is None:
        raise ValueError("these real statistics carry no features (Inception-FID statistics have none)")
    features = real.features[: min(num_images, real.num_images)].numpy().astype(np.float32)
    return PRDCReal(features, prdc_real_radii(features, k))


def prdc_real_radii(features: np.ndarray, k: int = PRDC_K) -> np.ndarray:
    """Each real feature's distance to its k-th nearest real neighbour (prdc's own function)."""
    from prdc.prdc import compute_nearest_neighbour_distances

    return compute_nearest_neighbour_distances(features, k)


def prdc_scores(real: PRDCReal, fake_features: np.ndarray, k: int = PRDC_K) -> dict[str, float]:
    """Precision, recall, density, coverage of fake features against a cached real side.

    Exactly `prdc.compute_prdc` (Kynkaenniemi et al. 2019 Eq. 1-2; Naeem et al. 2020 Eq. 3-4) with
    the real radii passed in, so an evaluation pays only for the fake side; prdc's own functions
    compute the distances (tests check the equality with compute_prdc).
    """
    from prdc.prdc import compute_nearest_neighbour_distances, compute_pairwise_distance

    fake_radii = compute_nearest_neighbour_distances(fake_features, k)
    distance = compute_pairwise_distance(real.features, fake_features)  # [n_real, n_fake]
    inside_real = distance < real.radii[:, None]  # fake j inside real i's k-NN ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((distance < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((distance.min(axis=1) < real.radii).mean()),
    }


def quiet_compute_prdc(real_features: np.ndarray, fake_features: np.ndarray,
                       k: int = PRDC_K) -> dict[str, float]:
    """prdc.compute_prdc without its print to stdout (the reference the tests compare against)."""
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):
        return {key: float(v) for key, v in compute_prdc(real_features, fake_features, k).items()}
