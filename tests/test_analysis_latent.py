"""The latent-space embedding of the best VAE (analysis/latent.py)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.latent import PCA, TSNE, best_vae, encode_means, latent_embedding, project_2d
from analysis.load import load_studies, trial_path
from study import results as R


def test_project_2d_keeps_a_2d_latent_and_finds_a_line_with_pca():
    means = np.array([[0.0, 1.0], [2.0, 3.0]])
    coords, method, explained = project_2d(means)
    assert (method, explained) == ("identity", ()) and coords is means
    line = np.outer(np.arange(10.0), [1.0, 2.0, 2.0])  # all variance along one direction
    coords, method, explained = project_2d(line, PCA)
    assert method == PCA and explained == pytest.approx((1.0, 0.0), abs=1e-12)
    assert np.abs(coords[:, 0]).max() == pytest.approx(4.5 * 3.0)  # centred, |(1, 2, 2)| = 3
    with pytest.raises(ValueError, match="choose one of pca, tsne"):
        project_2d(line, "umap")


def test_tsne_separates_two_far_clusters():
    rng = np.random.default_rng(0)
    means = np.vstack([rng.normal(0, 0.1, (30, 5)), rng.normal(10, 0.1, (30, 5))])
    coords, method, _ = project_2d(means, TSNE, seed=0)
    assert method == TSNE and coords.shape == (60, 2)
    a, b = coords[:30].mean(axis=0), coords[30:].mean(axis=0)
    spread = max(coords[:30].std(axis=0).max(), coords[30:].std(axis=0).max())
    assert np.linalg.norm(a - b) > 3 * spread


def test_best_vae_embedding_is_the_encoder_means_of_test_images(tiny_study_dirs):
    trials = load_studies([tiny_study_dirs.vae]).trials
    row, checkpoint = best_vae(trials)
    finite = trials[trials[R.FINAL_VAL_FID].notna()]
    assert row[R.TRIAL_ID] == finite.loc[finite[R.FINAL_VAL_FID].idxmin(), R.TRIAL_ID]
    assert checkpoint == trial_path(row) / R.CHECKPOINTS_DIR / R.FINAL_CHECKPOINT
    # the 2-D latent trial is plotted as is: coordinates are exactly its encoder means
    two_d = trials.set_index(R.TRIAL_ID).loc["vae_00003"]
    two_d_ckpt = trial_path(two_d) / R.CHECKPOINTS_DIR / R.FINAL_CHECKPOINT
    embedding = latent_embedding("vae_00003", two_d_ckpt, tiny_study_dirs.data_dir, n_images=200)
    from study.data import load_splits

    test = load_splits(tiny_study_dirs.data_dir, download=False).test
    assert (embedding.method, embedding.latent_dim, embedding.coords.shape) == ("identity", 2, (200, 2))
    np.testing.assert_array_equal(embedding.labels, test.labels[:200].numpy())
    np.testing.assert_allclose(embedding.coords, encode_means(two_d_ckpt, test.images[:200]))


def test_a_gan_checkpoint_is_refused_for_the_latent_plot(tiny_study_dirs):
    trials = load_studies([tiny_study_dirs.gan]).trials
    row = trials.set_index(R.TRIAL_ID).loc["gan_00001"]
    with pytest.raises(ValueError, match="holds a gan model"):
        encode_means(trial_path(row) / R.CHECKPOINTS_DIR / R.FINAL_CHECKPOINT,
                     np.zeros((2, 28, 28), np.uint8))
