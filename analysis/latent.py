"""The best VAE's latent space in 2-D: encoder means of test images, projected when latent > 2.

As in the first seed study's latent-cluster figure. Loads the trial's final checkpoint through
models.checkpoint.load_model (weights_only) and MNIST through study.data; torch is imported
only here, so the rest of analysis/ stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import final_checkpoint
from analysis.selection import SELECT
from models.config import FAMILY_VAE
from study import results as R

PCA = "pca"
TSNE = "tsne"
METHODS = (PCA, TSNE)


@dataclass(frozen=True)
class LatentEmbedding:
    coords: np.ndarray  # [N, 2]
    labels: np.ndarray  # [N] digit of each image
    method: str  # "identity" when the latent is already 2-D, else pca / tsne
    latent_dim: int
    explained_variance: tuple[float, ...]  # PCA: fraction per axis; empty otherwise
    trial_id: str
    checkpoint: Path


def best_vae(trials: pd.DataFrame, select: str = SELECT) -> tuple[pd.Series, Path] | None:
    """(row, final checkpoint) of the VAE trial with the lowest `select` that left one, or None."""
    vaes = trials[(trials[R.FAMILY] == FAMILY_VAE) & trials[select].notna()]
    vaes = vaes.sort_values(select, kind="stable")
    for _, row in vaes.iterrows():
        checkpoint = final_checkpoint(row)
        if checkpoint is not None:
            return row, checkpoint
    return None


def encode_means(checkpoint: Path, images_uint8, batch_size: int = 1000) -> np.ndarray:
    """Encoder means mu(x) [N, latent] of uint8 [N, 28, 28] images."""
    # torch and the model load only when a latent figure is drawn: the rest of analysis/ is pandas
    import torch

    from models.checkpoint import load_model
    from study.data import to_unit

    config, model, _ = load_model(checkpoint)
    if config.family != FAMILY_VAE:
        raise ValueError(f"{checkpoint} holds a {config.family} model; the latent plot needs a VAE "
                         "checkpoint.")
    means = []
    with torch.no_grad():
        for start in range(0, len(images_uint8), batch_size):
            mu, _logvar = model.encoder(to_unit(images_uint8[start:start + batch_size]))  # [B, latent]
            means.append(mu.numpy())
    return np.concatenate(means)


def project_2d(means: np.ndarray, method: str = PCA,
               seed: int = 0) -> tuple[np.ndarray, str, tuple[float, ...]]:
    """[N, latent] -> ([N, 2], method used, PCA explained-variance ratios)."""
    if means.shape[1] == 2:
        return means, "identity", ()
    if means.shape[1] == 1:
        return np.column_stack([means[:, 0], np.zeros(len(means))]), "identity", ()
    if method == PCA:
        from sklearn.decomposition import PCA as SkPCA

        pca = SkPCA(n_components=2, random_state=seed).fit(means)
        return pca.transform(means), PCA, tuple(float(v) for v in pca.explained_variance_ratio_)
    if method == TSNE:
        from sklearn.manifold import TSNE as SkTSNE

        coords = SkTSNE(n_components=2, init="pca", random_state=seed,
                        perplexity=min(30.0, (len(means) - 1) / 3))
        return coords.fit_transform(means), TSNE, ()
    raise ValueError(f"latent projection {method!r}: choose one of {', '.join(METHODS)}.")


def latent_embedding(trial_id: str, checkpoint: Path, data_dir: str | Path | None, n_images: int = 3000,
                     method: str = PCA, seed: int = 0) -> LatentEmbedding:
    """Encode the first `n_images` test images with a VAE checkpoint and project them to 2-D."""
    from study.data import load_splits  # as in encode_means: torch only for the latent figure

    test = load_splits(data_dir, download=False).test
    images, labels = test.images[:n_images], test.labels[:n_images].numpy()
    means = encode_means(checkpoint, images)
    coords, used, explained = project_2d(means, method, seed)
    return LatentEmbedding(coords=coords, labels=labels, method=used, latent_dim=int(means.shape[1]),
                           explained_variance=explained, trial_id=str(trial_id), checkpoint=Path(checkpoint))
