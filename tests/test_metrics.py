"""Domain FID/KID/IS, the real-statistics cache, VAE metrics and TrialEvaluator, on real MNIST."""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from models import build_model, seed_model_config
from models.config import LOSS_KL, LOSS_RECON, TrainConfig
from search_spaces import scale_widths
from study import results as R
from study.data import SPLIT_TEST, SPLIT_VAL, load_splits
from study.loop.trial import run_trial
from study.metrics import domain as D
from study.metrics import evaluator as EV
from study.metrics import floors as FL
from study.metrics import likelihood as LK
from study.metrics import prdc as P
from study.metrics import real_stats as RS
from study.metrics import robustness as RB
from study.metrics.classifier import SHIPPED_SHA256, load_featurenet
from study.repeat import pinned_threads

DATA_DIR = os.environ.get("STUDY_DATA_DIR") or str(Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="module")
def data():
    return load_splits(DATA_DIR)


@pytest.fixture(scope="module")
def net():
    return load_featurenet()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("real_stats")


@pytest.fixture(scope="module")
def floors(data, net, cache_dir):
    """The full-size reference floors (10k vs 10k), computed once for the module."""
    return FL.reference_floors(data, net, num_images=10_000, seed=0, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def test_stats(data, net, cache_dir, floors):
    return D.real_stats_for(data.test.images, SPLIT_TEST, net, cache_dir=cache_dir)  # cached by `floors`


def tiny_model(family: str, arch: str):
    torch.manual_seed(0)
    return build_model(scale_widths(TrainConfig(model=seed_model_config(family, arch)), 0.125).model)


# --- reference floors: the deterministic checks of the issue ------------------------------------

def test_real_data_floor_is_small(floors):
    assert floors.featurenet_sha256 == SHIPPED_SHA256 and floors.num_images == 10_000
    assert 0 < floors.fid_train_test < 1.0
    assert abs(floors.kid_train_test) < 0.01
    # real digits against real digits: high fidelity and diversity, every class, a flat histogram
    assert min(floors.precision_train_test, floors.recall_train_test, floors.coverage_train_test) > 0.85
    assert 0.8 < floors.density_train_test < 1.2  # density is ~1 when the two sets share a distribution
    assert floors.class_coverage_train_test == 1.0 and floors.class_entropy_train_test > 0.99


def test_noise_is_far_above_the_floor(floors):
    assert floors.fid_noise_test > 100 * floors.fid_train_test
    assert floors.kid_noise_test > 100 * max(floors.kid_train_test, 1e-3)


def test_fid_rises_monotonically_with_blur(floors):
    fids = (floors.fid_train_test, *floors.fid_blur_test)
    assert len(floors.fid_blur_test) == len(FL.BLUR_SIGMAS) == 3
    assert all(a < b for a, b in zip(fids[:-1], fids[1:], strict=True)), fids


def test_inception_score_of_the_test_set(floors):
    assert 9.5 <= floors.is_test <= 10.0  # 10 is the maximum for 10 classes


# --- scoring: determinism, torchmetrics agreement, edge cases -------------------------------------

def test_preloaded_real_stats_match_torchmetrics_on_the_images(data, net, test_stats):
    """Loading cached states gives exactly what torchmetrics computes from the real images themselves
    (at the thread count the cached states were computed with: study/repeat.py)."""
    fake = data.val.images[:2000]
    with pinned_threads("cpu"):
        ours = D.score_images(RS.unit_batches(fake), test_stats, net, kid_subsets=10)
        memo = D._OneBatchMemo()
        fid = FrechetInceptionDistance(feature=D.FeatureTap(net, D.FEATURES, memo, torch.float64))
        for x in RS.unit_batches(data.test.images):
            fid.update(x, real=True)
        for x in RS.unit_batches(fake):
            fid.update(x, real=False)
        assert ours.fid == pytest.approx(float(fid.compute()), rel=1e-9)
    assert fid.compute().dtype == torch.float64


def test_scores_are_deterministic_and_seeded(data, net, test_stats):
    images = data.val.images[:1500]
    a = D.score_images(RS.unit_batches(images, 500), test_stats, net, seed=3, kid_subsets=20)
    b = D.score_images(RS.unit_batches(images, 500), test_stats, net, seed=3, kid_subsets=20)
    c = D.score_images(RS.unit_batches(images, 500), test_stats, net, seed=4, kid_subsets=20)
    d = D.score_images(RS.unit_batches(images, 300), test_stats, net, seed=3, kid_subsets=20)
    assert a == b  # the whole tuple, bit for bit
    assert a.fid == c.fid and a.kid != c.kid  # the seed only picks KID subsets / IS splits
    assert d == pytest.approx(a, rel=1e-9)  # other batching: only float summation order differs
    assert a.num_images == 1500


def test_few_samples_clip_kid_subsets_and_nan_images_score_nan(data, net, test_stats):
    few = D.score_images(RS.unit_batches(data.val.images[:50]), test_stats, net)
    assert few.num_images == 50 and all(math.isfinite(v) for v in few[:5])
    bad = torch.full((10, 1, 28, 28), float("nan"))
    assert all(math.isnan(v) for v in D.score_images([bad], test_stats, net)[:5])
    with pytest.raises(ValueError, match="at least 2 images"):
        D.score_images(RS.unit_batches(data.val.images[:1]), test_stats, net)


def test_stats_from_another_network_are_refused(data, net, test_stats):
    other = load_featurenet()
    other.sha256 = "f" * 64
    with pytest.raises(ValueError, match="recompute them with this network"):
        D.score_images(RS.unit_batches(data.val.images[:100]), test_stats, other)


# --- the on-disk cache ----------------------------------------------------------------------------

def test_cache_is_used_keyed_and_self_healing(data, net, tmp_path):
    images = data.val.images[:600]

    def compute():
        return D.compute_real_stats(images, SPLIT_VAL, net)

    def must_not_compute():
        raise AssertionError("the cached statistics should have been used")

    first = RS.cached_real_stats(images, SPLIT_VAL, net.sha256, compute, tmp_path)
    (path,) = tmp_path.glob("*.pt")
    assert path.name.startswith(f"{SPLIT_VAL}-600-") and not list(tmp_path.glob("*.tmp"))
    again = RS.cached_real_stats(images, SPLIT_VAL, net.sha256, must_not_compute, tmp_path)
    assert torch.equal(again.feature_cov_sum, first.feature_cov_sum) and torch.equal(again.features,
                                                                                     first.features)
    # other images or another network never reuse the file
    with pytest.raises(AssertionError, match="should have been used"):
        RS.cached_real_stats(data.val.images[:601], SPLIT_VAL, net.sha256, must_not_compute, tmp_path)
    with pytest.raises(AssertionError, match="should have been used"):
        RS.cached_real_stats(images, SPLIT_VAL, "e" * 64, must_not_compute, tmp_path)
    # a damaged file is recomputed (with a warning) and rewritten
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable real-statistics cache"):
        healed = RS.cached_real_stats(images, SPLIT_VAL, net.sha256, compute, tmp_path)
    assert torch.equal(healed.feature_sum, first.feature_sum)
    assert RS.cached_real_stats(images, SPLIT_VAL, net.sha256, must_not_compute, tmp_path).num_images == 600


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(RS.STATS_DIR_ENV, str(tmp_path))
    assert RS.stats_cache_dir() == tmp_path
    assert RS.stats_cache_dir(tmp_path / "x") == tmp_path / "x"


# --- TrialEvaluator ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def assets(data, net, cache_dir, floors):
    return EV.prepare_evaluation(data, featurenet=net, cache_dir=cache_dir)


def test_evaluator_from_shipped_assets_matches_one_that_loads_its_own(data, assets, cache_dir):
    shipped = pickle.loads(pickle.dumps(assets))  # what Ray's object store does
    model = tiny_model("gan", "mlp")
    a = EV.TrialEvaluator(data, num_samples=300, seed=1, featurenet=shipped.featurenet,
                         real_stats=shipped.real_stats).validation(model)
    b = EV.TrialEvaluator(data, num_samples=300, seed=1, cache_dir=cache_dir).validation(model)
    c = EV.TrialEvaluator(data, num_samples=300, seed=2, cache_dir=cache_dir).validation(model)
    assert a == b and set(a) == set(R.VALIDATION_METRICS)
    assert a[R.VAL_FID] != c[R.VAL_FID]  # the seed picks the generated samples
    assert model.training  # the evaluator hands the model back in the mode it came in


def test_evaluator_refuses_mismatched_stats(data, assets):
    with pytest.raises(ValueError, match="belong to split"):
        EV.TrialEvaluator(data, num_samples=10, real_stats={SPLIT_TEST: assets.real_stats[SPLIT_VAL]})
    with pytest.raises(ValueError, match="at least 2 generated images"):
        EV.TrialEvaluator(data, num_samples=1)


def test_test_metrics_per_family(data, assets):
    ev = EV.TrialEvaluator(data, num_samples=200, featurenet=assets.featurenet, real_stats=assets.real_stats,
                          iw_k=4, iw_images=100)
    gan = ev.test(tiny_model("gan", "dcgan"))
    domain = set(D.TEST_KEYS.values())
    assert set(gan) == domain and domain < set(R.TEST_METRICS)
    vae = ev.test(tiny_model("vae", "mlp"))
    vae_only = {R.TEST_RECON_MSE, R.TEST_BCE_NELBO, R.TEST_BINARIZED_NLL, R.IW_K, R.IW_IMAGES}
    assert set(vae) == domain | vae_only
    assert (vae[R.IW_K], vae[R.IW_IMAGES]) == (4, 100)
    assert 0 < vae[R.TEST_RECON_MSE] < 1
    # an untrained decoder puts p ~ 0.5 on every pixel: about 784 * ln 2 = 543 nats per image
    assert vae[R.TEST_BCE_NELBO] == pytest.approx(784 * math.log(2), rel=0.05)


def test_vae_importance_weighted_bound_is_tighter_than_the_elbo(data):
    model = tiny_model("vae", "conv")
    images = data.test.images[:300]
    k1 = LK.vae_scores(model, images, iw_k=1, iw_images=None)
    k32 = LK.vae_scores(model, images, iw_k=32, iw_images=None)
    # Burda et al. 2016: NLL <= IW-NLL_k <= IW-NLL_1 = NELBO in expectation (here of the binarized images)
    assert k32.binarized_nll < k1.binarized_nll
    assert k32.recon_mse == k1.recon_mse and k32.iw_images == 300
    assert LK.vae_scores(model, images, iw_k=2, iw_images=50).iw_images == 50


def test_vae_likelihood_noise_comes_from_a_cpu_generator(data):
    """vae_scores draws its noise on a seeded CPU generator (the same numbers on any device): the
    binarized IW-NLL equals the bound computed here with noise drawn on a CPU generator."""
    import math as m

    model = tiny_model("vae", "mlp").eval()
    images, seed, k = data.test.images[:40], 7, 3
    scores = LK.vae_scores(model, images, seed=seed, iw_k=k, iw_images=40, batch_size=40)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        x = RS.to_unit(images)
        mu, logvar = model.encoder(x)
        torch.randn(mu.shape, generator=generator)  # the ELBO's one sample comes first
        x = LK.binarized(images)
        mu, logvar = model.encoder(x)
        log_w = []
        for _ in range(k):
            eps = torch.randn(mu.shape, generator=generator)
            z = mu + eps * torch.exp(0.5 * logvar)
            log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
                model.decoder(z), x, reduction="none").flatten(1).sum(1)
            log_pz = -0.5 * (z.pow(2) + m.log(2 * m.pi)).sum(1)
            log_qz = -0.5 * (eps.pow(2) + logvar + m.log(2 * m.pi)).sum(1)
            log_w.append(log_px_z + log_pz - log_qz)
        expected = float(-(torch.logsumexp(torch.stack(log_w), 0) - m.log(k)).mean())
    assert scores.binarized_nll == pytest.approx(expected, rel=1e-6)


def test_metric_code_runs_in_full_fp32_and_restores_the_tf32_settings(data, net, val_stats):
    """Inside score_images and vae_scores: matmul precision "highest", cuDNN TF32 off (whatever
    training chose); the caller's settings afterwards."""
    seen = []

    def record(module, inputs, output):
        seen.append((torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32))

    saved = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    vae = tiny_model("vae", "mlp")
    hooks = [net.register_forward_hook(record), vae.encoder.register_forward_hook(record),
             vae.decoder.register_forward_hook(record)]
    try:
        images = [RS.to_unit(data.test.images[:32])]
        D.score_images(images, val_stats, net, kid_subsets=2, kid_subset_size=16, prdc=False)
        LK.vae_scores(vae, data.test.images[:20], iw_k=1, iw_images=10)
        after = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    finally:
        for hook in hooks:
            hook.remove()
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]
    assert len(seen) >= 3 and set(seen) == {("highest", False)}
    assert after == ("high", True)


def test_run_trial_reports_metrics_and_the_hash(data, assets):
    config = scale_widths(TrainConfig(model=seed_model_config("vae", "mlp"), epochs=2, batch_size=64,
                                      train_subset=256, eval_samples=128), 0.125)
    ev = EV.TrialEvaluator(data, num_samples=config.eval_samples, seed=config.seed,
                          featurenet=assets.featurenet,
                          real_stats=assets.real_stats, iw_k=2, iw_images=64)
    result = run_trial(config, data, evaluator=ev)
    assert all(math.isfinite(h[R.VAL_FID]) and set(R.VALIDATION_METRICS) <= set(h) for h in result.history)
    assert result.summary[R.FEATURENET_SHA256] == SHIPPED_SHA256
    assert result.summary[R.BEST_VAL_FID] == min(h[R.VAL_FID] for h in result.history)
    assert math.isfinite(result.summary[R.TEST_BINARIZED_NLL])


@pytest.mark.slow
def test_benchmark_smoke_test_prints_its_figures(tmp_path):
    env = {**os.environ, RS.STATS_DIR_ENV: str(tmp_path)}
    repo = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, str(repo / "benchmarks" / "bench_metrics.py"), "--smoke-test",
                          "--data-dir", DATA_DIR], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "real-statistics pass" in run.stdout and "FID+KID+IS on 1,000 generated images" in run.stdout
    assert "+ PRDC and class coverage" in run.stdout and "binarized IW-NLL (k=500)" in run.stdout
    assert "ms/image" in run.stdout  # the Inception per-image cost (the extra is installed in the dev venv)


# --- fidelity and diversity: PRDC (prdc package) and class coverage ------------------------------

def test_prdc_on_hand_made_features_identical_and_disjoint():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8)).astype(np.float32)
    same = P.prdc_scores(P.PRDCReal(real, P.prdc_real_radii(real)), real.copy())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = P.prdc_scores(P.PRDCReal(real, P.prdc_real_radii(real)), real + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    fake = rng.normal(0.5, 1.2, size=(200, 8)).astype(np.float32)
    cached = P.prdc_scores(P.PRDCReal(real, P.prdc_real_radii(real)), fake)
    assert cached == pytest.approx(P.quiet_compute_prdc(real, fake), abs=1e-12)  # prdc's own compute_prdc


def test_chunked_torch_prdc_equals_compute_prdc_on_real_features(val_stats):
    """The device implementation (blocks of cdist + topk) against prdc's own compute_prdc, on the
    feature network's features of 2 x 2,500 validation images, the fake half blurred in feature space
    by noise (several blocks, one partial)."""
    assert 2500 % P.PRDC_CHUNK != 0 and 2500 > 2 * P.PRDC_CHUNK
    real = val_stats.features[:2500].numpy().astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 0.2, size=real.shape).astype(np.float32)
    fake = val_stats.features[2500:5000].numpy().astype(np.float32) + noise
    radii = P.prdc_real_radii(real)
    assert isinstance(radii, np.ndarray) and radii.dtype == np.float32 and radii.shape == (2500,)
    expected = P.quiet_compute_prdc(real, fake)
    assert 0.3 < expected["precision"] < 1.0 and 0.3 < expected["coverage"] < 1.0  # not a trivial case
    assert P.prdc_scores(P.PRDCReal(real, radii), torch.from_numpy(fake)) == pytest.approx(expected, abs=1e-5)


def test_prdc_starts_no_threads_of_its_own():
    """PRDC runs on torch's threads (bounded per trial by torch.set_num_threads), not on a pool of
    its own: prdc's sklearn call starts 8 joblib threads per evaluation, in every trial at once."""
    import threading

    started = []

    def on_thread_start(frame, event, arg):
        started.append(threading.current_thread().name)
        sys.setprofile(None)  # record once per thread, then stay out of its way

    rng = np.random.default_rng(1)
    real = rng.normal(size=(300, 16)).astype(np.float32)
    fake = rng.normal(0.2, 1.0, size=(300, 16)).astype(np.float32)
    threading.setprofile(on_thread_start)
    try:
        scores = P.prdc_scores(P.PRDCReal(real, P.prdc_real_radii(real)), fake)
    finally:
        threading.setprofile(None)
    assert scores == pytest.approx(P.quiet_compute_prdc(real, fake), abs=1e-12)
    assert started == []


def test_class_coverage_counts_classes_and_normalises_the_entropy():
    balanced = torch.eye(10).repeat(10, 1)  # 100 predictions, 10 of each class
    assert D.class_coverage(balanced) == pytest.approx((1.0, 1.0))
    one = torch.zeros(100, 10)
    one[:, 3] = 1
    assert D.class_coverage(one) == pytest.approx((0.1, 0.0))
    rare = torch.cat([torch.eye(10)[:2].repeat(500, 1), torch.eye(10)[2:3]])  # class 2: 1 of 1001 < 1 %
    coverage, entropy = D.class_coverage(rare)
    assert coverage == pytest.approx(0.2) and 0.3 < entropy < 0.31  # ~ln 2 / ln 10


@pytest.fixture(scope="module")
def val_stats(data, net, cache_dir):
    return D.real_stats_for(data.val.images, SPLIT_VAL, net, cache_dir=cache_dir)


def test_mode_dropping_lowers_recall_and_class_coverage_blur_lowers_precision(data, net, val_stats):
    n = 2000
    images, labels = data.test.images, data.test.labels
    full = D.score_images(RS.unit_batches(images[:n]), val_stats, net, kid_subsets=5)
    five = D.score_images(RS.unit_batches(images[labels < 5][:n]), val_stats, net, kid_subsets=5)
    blurred = D.score_images((RB.blur(x, 2.0) for x in RS.unit_batches(images[:n])), val_stats, net,
                             kid_subsets=5)
    assert full.class_coverage == 1.0 and full.class_entropy > 0.99
    assert full.precision > 0.6 and full.recall > 0.6
    # real digits of half the classes: each looks real (precision stays high), half the manifold is missed
    assert five.class_coverage == 0.5 and five.class_entropy < 0.75
    assert five.recall < full.recall - 0.15 and five.coverage < full.coverage - 0.15
    assert five.precision > 0.8 * full.precision
    # a feature network that reads blurred digits (issue 10, item 0) keeps most blurred digits inside the
    # real manifold: precision drops a little, while the lost detail collapses recall and coverage
    assert blurred.precision < full.precision - 0.02
    assert blurred.recall < full.recall - 0.5 and blurred.coverage < full.coverage - 0.3


# --- the honest VAE likelihood -------------------------------------------------------------------

def test_binarized_test_set_is_fixed_and_binary(data):
    a, b = LK.binarized(data.test.images[:100]), LK.binarized(data.test.images[:100])
    assert torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 1.0}
    assert abs(a.mean().item() - RS.to_unit(data.test.images[:100]).mean().item()) < 0.01


def test_binarized_nll_matches_a_brute_force_integral_over_a_2d_latent(data):
    """-log p(x) = -log integral p(x|z) p(z) dz by a fine Riemann sum (a 2-d latent makes that exact
    to the grid's resolution; the grid spans +-12 posterior sds around the encoder's mean, where all
    the mass of a trained VAE's posterior lies) vs the importance-weighted estimate at k = 5000
    (Burda et al. 2016). The IW estimate's error depends on how well q(z|x) fits: within 0.5 % on
    every image and 0.3 nat on average here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: threads only contend
    try:
        torch.manual_seed(0)
        config = TrainConfig(model=seed_model_config("vae", "mlp"), batch_size=64).replace(
            latent_dim=2, enc_widths=[64], dec_widths=[64], binarize=True, lr=2e-3)
        model = build_model(config.model)
        optimizers = model.make_optimizers()
        images = RS.to_unit(data.train.images[:4096])
        for step in range(800):  # a posterior much narrower than the prior, as trained VAEs have
            model.train_step(images[(step * 64) % 4096:][:64], optimizers)
        model.eval()
        x = LK.binarized(data.test.images[:4])  # [4, 1, 28, 28]
        brute = []
        with torch.no_grad():
            mu, logvar = model.encoder(x)
            for image, centre, sd in zip(x, mu, (0.5 * logvar).exp(), strict=True):
                half, n = 12 * sd.max().item(), 301
                z = torch.cartesian_prod(*[torch.linspace(c - half, c + half, n) for c in centre.tolist()])
                log_pz = -0.5 * (z.pow(2).sum(1) + 2 * math.log(2 * math.pi))  # N(0, I), [G]
                logits = model.decoder(z)  # [G, 1, 28, 28]
                log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, image.expand_as(logits), reduction="none").flatten(1).sum(1)
                cell = (2 * half / (n - 1)) ** 2
                brute.append(-(torch.logsumexp(log_px_z + log_pz, 0) + math.log(cell)).item())
            iw = model.importance_weighted_nll(x, 5000, generator=torch.Generator().manual_seed(0)).tolist()
    finally:
        torch.set_num_threads(threads)
    assert iw == pytest.approx(brute, rel=5e-3)
    assert abs(np.mean(iw) - np.mean(brute)) < 0.3
    assert min(brute) > 50  # the likelihood of a digit, not of a degenerate model


def test_a_cpu_scores_in_chunks_with_the_numbers_of_whole_batches(data, net, assets, monkeypatch):
    """On a CPU the feature network, the generator and the VAE's networks see at most RS.CPU_CHUNK
    images per call (the activations stay in the cache: faster) and give the numbers that whole
    batches give, for the FID every epoch, the test suite and the VAE's likelihood."""
    sizes: list[int] = []

    def features(x):
        sizes.append(len(x))
        return net.features_and_logits(x)

    x = next(RS.unit_batches(data.val.images[:300]))
    with torch.no_grad():
        chunked, whole = RS.per_chunk(features, x), net.features_and_logits(x)
    assert sizes == [RS.CPU_CHUNK, RS.CPU_CHUNK, 300 - 2 * RS.CPU_CHUNK]
    for a, b in zip(chunked, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)

    config = TrainConfig(model=seed_model_config("vae", "conv"), eval_samples=300, seed=5)
    model = build_model(config.model)

    def scores():
        evaluator = assets.evaluator(config, data, "cpu")
        return (evaluator.validation(model, suite=False), evaluator.test(model, nll=False),
                LK.vae_scores(model, data.test.images[:300], iw_k=3, iw_images=300))

    in_chunks = scores()
    monkeypatch.setattr(RS, "CPU_CHUNK", 10**9)  # whole batches: the code before chunking
    for a, b in zip(in_chunks, scores(), strict=True):
        assert a == pytest.approx(b, rel=1e-6, nan_ok=True)


def test_the_feature_networks_pool_gives_max_pool2d_bit_for_bit_and_keeps_its_gradient():
    """MaxPool2x2's CPU path (four strided maxima, no autograd) equals F.max_pool2d exactly, ties of
    ReLU zeros included; with autograd it is the kernel itself (the gradient to one input of a tie)."""
    from study.metrics.classifier import MaxPool2x2

    torch.manual_seed(0)
    x = torch.relu(torch.randn(7, 5, 24, 24))  # half zeros: ties in most windows
    pool = MaxPool2x2()
    with torch.no_grad():
        assert torch.equal(pool(x), torch.nn.functional.max_pool2d(x, 2))
        assert torch.equal(pool(x[..., :23, :23]), torch.nn.functional.max_pool2d(x[..., :23, :23], 2))
    leaf = x.clone().requires_grad_()
    pool(leaf).sum().backward()
    kernel = x.clone().requires_grad_()
    torch.nn.functional.max_pool2d(kernel, 2).sum().backward()
    assert torch.equal(leaf.grad, kernel.grad)


def test_vae_scores_runs_the_encoder_once_per_batch_with_the_numbers_of_two_passes():
    """The reconstruction and the ELBO share one encoder pass (eval mode: the same mu, logvar), so the
    scores equal those of loss_terms' own encoder pass."""
    torch.manual_seed(3)
    model = build_model(seed_model_config("vae", "conv")).eval()
    images = (torch.rand(40, 28, 28) * 255).to(torch.uint8)
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    scores = LK.vae_scores(model, images, seed=1, batch_size=20, nll=False)
    assert len(calls) == 2  # one per batch of 20 (the CPU chunk is larger)
    x = images.unsqueeze(1).float().div(255.0)
    with torch.no_grad():
        terms = [model.loss_terms(b, generator=g)
                 for g in [torch.Generator().manual_seed(1)] for b in x.split(20)]
    nelbo = sum(float((t[LOSS_RECON] + t[LOSS_KL]).sum()) for t in terms) / 40
    assert scores.bce_nelbo == pytest.approx(nelbo, rel=1e-6)
