"""Seconds each quality metric costs: the real-statistics pass, domain FID+KID+IS, PRDC and class
coverage, the VAEs' binarized IW-NLL, Inception FID per image.

    python benchmarks/bench_metrics.py --data-dir ../shared/data [--device cuda] [--smoke-test]

Target (issue 3): domain FID+KID+IS on 10,000 generated images in <= 10 s on the project's 2-core
CPU. Timings on a shared machine vary with its load, so each figure is the median of --repeats
runs, and the load average is printed alongside.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from models import build_model, seed_model_config  # noqa: E402
from models.config import ARCHS, FAMILIES  # noqa: E402
from study.data import SPLIT_VAL, load_splits  # noqa: E402
from study.metrics.classifier import load_featurenet  # noqa: E402
from study.metrics.domain import compute_real_stats, score_images  # noqa: E402
from study.metrics.evaluator import TrialEvaluator  # noqa: E402
from study.metrics.inception import INCEPTION_BATCH, InceptionUnavailable, load_inception  # noqa: E402
from study.metrics.likelihood import IW_K, vae_scores  # noqa: E402
from study.metrics.prdc import prdc_real  # noqa: E402
from study.metrics.sampling import generate  # noqa: E402


class Timing(float):
    """Median seconds over the repeats (a float), printed with the fastest run beside it."""

    def __new__(cls, seconds: list[float]):
        self = super().__new__(cls, statistics.median(seconds))
        self.fastest = min(seconds)
        return self

    def __format__(self, spec: str) -> str:
        return f"{float(self):{spec}} s (fastest {self.fastest:.2f})"


def timed(fn, repeats: int) -> tuple[Timing, object]:
    """(seconds over `repeats` runs, the last result)."""
    seconds, result = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return Timing(seconds), result


def time_binarized_nll(data, device: torch.device, args: argparse.Namespace) -> None:
    """The VAEs' binarized IW-NLL (k = IW_K) per image on a few test images, scaled to 10,000."""
    images = data.test.images[: 10 if args.smoke_test else args.nll_images]
    for arch in ARCHS["vae"]:
        torch.manual_seed(0)
        model = build_model(seed_model_config("vae", arch)).to(device)
        nll_s, _ = timed(lambda m=model: vae_scores(m, images, iw_k=IW_K, iw_images=None), 1)
        per_image = nll_s / len(images)
        print(f"binarized IW-NLL (k={IW_K}) + BCE + MSE, vae/{arch:<4} {nll_s:7.2f}   on {len(images)} test "
              f"images = {per_image * 1000:.0f} ms/image, ~{per_image * 10_000 / 60:.1f} min per 10,000")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--samples", type=int, default=10_000,
                   help="generated images per evaluation (default 10000)")
    p.add_argument("--inception-images", type=int, default=32,
                   help="images timed through Inception (default 32)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--nll-images", type=int, default=100, help="test images the binarized NLL is timed on")
    p.add_argument("--smoke-test", action="store_true", help="1,000 samples, 4 Inception images, 1 repeat")
    args = p.parse_args(argv)
    if args.smoke_test:
        args.samples, args.inception_images, args.repeats = 1000, 4, 1
    device = torch.device(args.device)
    print(f"device {device} ({torch.get_num_threads()} CPU threads, {os.cpu_count()} cores), torch "
          f"{torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")

    data = load_splits(args.data_dir)
    load_s, net = timed(lambda: load_featurenet(device=device), 1)
    print(f"feature network load + SHA-256 check      {load_s:7.2f}")
    real_s, real = timed(lambda: compute_real_stats(data.val.images, SPLIT_VAL, net, device), args.repeats)
    print(f"real-statistics pass (10,000 val images)  {real_s:7.2f}   once per split, then cached on disk")

    torch.manual_seed(0)
    model = build_model(seed_model_config("gan", "mlp")).to(device).eval()
    images = [x.cpu() for x in generate(model, args.samples, seed=0)]
    threads = torch.get_num_threads()
    # on a CPU shared with other jobs, 1 thread can beat 2 (OpenMP oversubscription)
    for n_threads in sorted({1, threads}):
        torch.set_num_threads(n_threads)
        score_s, scores = timed(lambda: score_images(images, real, net, device=device, prdc=False),
                                args.repeats)
        print(f"FID+KID+IS on {args.samples:,} generated images, {n_threads} thread(s)  {score_s:7.2f}   "
              f"target <= 10 s (images already generated; FID {scores.fid:.2f})")
        with torch.no_grad():
            forward_s, _ = timed(lambda: [net.features_and_logits(x.to(device)) for x in images],
                                 args.repeats)
        print(f"  of which the feature-network pass               {forward_s:7.2f}   the rest: mostly KID's "
              "100 subsets")
        # PRDC's real side (k-NN radii of the split's first n features) once per split and count
        radii_s, prdc_side = timed(lambda: prdc_real(real, args.samples), 1)
        print(f"  PRDC real side (k-NN radii of {prdc_side.features.shape[0]:,} real images)  "
              f"{radii_s:7.2f}   once per split, then memoised")
        all_s, _ = timed(lambda: score_images(images, real, net, device=device, prdc=True), args.repeats)
        print(f"  + PRDC and class coverage (the generated side)  {all_s - score_s:7.2f}   "
              f"(all domain metrics {all_s:.2f} s)")
    torch.set_num_threads(threads)
    time_binarized_nll(data, device, args)

    if not args.smoke_test:
        print(f"TrialEvaluator.validation on {args.samples:,} samples, untrained full-width seed models "
              "(generation included):")
        evaluator = TrialEvaluator(data, num_samples=args.samples, device=device, featurenet=net,
                                   real_stats={SPLIT_VAL: real})
        for family in FAMILIES:
            for arch in ARCHS[family]:
                torch.manual_seed(0)
                m = build_model(seed_model_config(family, arch)).to(device)
                gen_s, _ = timed(lambda m=m: list(generate(m.eval(), args.samples, seed=0)), 1)
                val_s, _ = timed(lambda m=m: evaluator.validation(m), args.repeats)
                print(f"  {family}/{arch:<6} {val_s:7.2f}   generation alone {gen_s:.2f}")

    try:
        tap, _sha = load_inception(device)
    except InceptionUnavailable as exc:
        print(f"Inception FID: skipped ({exc})")
        return 0
    batch = torch.rand(args.inception_images, 1, 28, 28)
    with torch.no_grad():
        tap(batch[:2].to(device))  # warm-up: TorchScript optimises on the first calls
        inc_s, _ = timed(lambda: [tap(x.to(device)) for x in batch.split(INCEPTION_BATCH)], 1)
    per_image = inc_s / args.inception_images
    print(f"Inception-v3 features, {args.inception_images} images          {inc_s:7.2f}   = "
          f"{per_image * 1000:.0f} ms/image; "
          f"the 10k generated + 10k test protocol would take ~{per_image * 20_000 / 60:.0f} min here "
          f"(~{per_image * 10_000 / 60:.0f} min with the test statistics cached)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
