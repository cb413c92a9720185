"""The MNIST feature network behind domain FID, KID and IS, its training command, its shipped weights.

A small CNN classifier trained on the training split. Its 128 penultimate features feed FID and
KID, its 10 logits feed the Inception Score: the MNIST-classifier variants of these metrics that
Ray's DCGAN example and much of the MNIST GAN literature use in place of ImageNet Inception-v3.
The shipped weights are identified by their SHA-256; every metric record carries that hash, so
numbers from different feature networks are never mixed.

    python -m study.featurenet train [--out PATH] [--seed 0] [--epochs 5] [--smoke-test]
    python -m study.featurenet evaluate [--weights PATH]     # test accuracy and hash
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from study.data import DataNotFoundError, Split, load_splits, to_unit
from study.results import EXIT_BAD_INPUT, atomic_path

WEIGHTS_PATH = Path(__file__).parent / "weights" / "featurenet.pt"
# The hash of the shipped weights file; `load_featurenet()` refuses a file that does not match.
SHIPPED_SHA256 = "e24502028a1d61bc28e9353c324e1edad7fd14b4dc2e03b6ac366f35e99c011d"
FEATURE_DIM = 128
NUM_CLASSES = 10
MIN_SHIPPED_ACCURACY = 0.993  # the bar for the shipped weights on the official test set
STATE_KEY = "state_dict"
META_KEY = "meta"
EVAL_BATCH = 1000


class FeatureNetError(RuntimeError):
    """The feature-network weights are missing, unreadable or not the ones we expect."""


class FeatureNet(nn.Module):
    """x [B, 1, 28, 28] in [0, 1] -> 128 penultimate features -> 10 class logits.

    LeNet-style conv-pool-conv-pool with BatchNorm (which makes input normalisation unnecessary):
    about 1.1M multiply-adds per image, so 10,000 images take ~1-2 s on two CPU cores.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.BatchNorm2d(16), nn.ReLU(),  # [B, 16, 24, 24]
            nn.MaxPool2d(2),  # [B, 16, 12, 12]
            nn.Conv2d(16, 32, 5), nn.BatchNorm2d(32), nn.ReLU(),  # [B, 32, 8, 8]
            nn.MaxPool2d(2),  # [B, 32, 4, 4]
            nn.Flatten(),  # [B, 512]
            nn.Linear(512, FEATURE_DIM), nn.BatchNorm1d(FEATURE_DIM), nn.ReLU(),  # [B, 128] features
        )
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)  # [B, 10] logits
        self.sha256 = ""  # set by load_featurenet: the hash of the weights file these came from
        self.meta: dict[str, Any] = {}

    def features_and_logits(self, x_unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(x_unit)
        return features, self.head(features)

    def forward(self, x_unit: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x_unit))


# --- loading the shipped (or any) weights ----------------------------------------------------------

def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_featurenet(path: str | Path | None = None, device: torch.device | str = "cpu",
                    expected_sha256: str | None = None) -> FeatureNet:
    """The feature network in eval mode with frozen weights and `.sha256` set.

    Without `path`, the shipped weights, whose hash must equal SHIPPED_SHA256. With `path`, any
    weights file written by `python -m study.featurenet train` (checked against
    `expected_sha256` when given). The file is hashed and loaded from the same bytes.
    """
    shipped = path is None
    path = WEIGHTS_PATH if path is None else Path(path)
    expected = SHIPPED_SHA256 if shipped else expected_sha256
    if not path.is_file():
        raise FeatureNetError(
            f"feature-network weights {path} do not exist. "
            + ("The package should ship them; reinstall it or run `python -m study.featurenet train` "
               f"and copy the result to {WEIGHTS_PATH}." if shipped else
               "Pass the path of a file written by `python -m study.featurenet train`.")
        )
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    if expected is not None and sha != expected:
        raise FeatureNetError(
            f"feature-network weights {path} have SHA-256 {sha}, expected {expected}. Metrics from "
            "different feature networks are not comparable, so we refuse to use them. Restore the "
            "shipped file (git checkout study/weights/), or, if you retrained it on purpose, update "
            "SHIPPED_SHA256 in study/featurenet.py and recompute every stored metric."
        )
    try:
        ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        net = FeatureNet()
        net.load_state_dict(ckpt[STATE_KEY])
    except Exception as exc:  # a truncated / foreign file: say which file and what to do
        why = ("not a torch file, or Python objects besides tensors: refused by weights-only loading"
               if isinstance(exc, pickle.UnpicklingError)  # torch's own text suggests weights_only=False
               else " ".join(f"{type(exc).__name__}: {exc}".split())[:200])  # one line
        raise FeatureNetError(
            f"could not read feature-network weights {path} ({why}); "
            "pass a file written by `python -m study.featurenet train`."
        ) from None
    net.sha256 = sha
    net.meta = dict(ckpt.get(META_KEY, {}))
    net.requires_grad_(False)
    return net.eval().to(device)


@torch.no_grad()
def accuracy(net: FeatureNet, split: Split, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy on a split (in eval mode)."""
    net.eval()
    correct = 0
    for start in range(0, len(split), EVAL_BATCH):
        x = to_unit(split.images[start:start + EVAL_BATCH]).to(device)
        correct += int((net(x).argmax(1).cpu() == split.labels[start:start + EVAL_BATCH]).sum())
    return correct / len(split)


# --- training ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 5
    batch_size: int = 128
    max_lr: float = 3e-3  # one-cycle peak (Smith & Topin 2019) on Adam
    max_shift: int = 2  # random translation of up to +-2 pixels per image
    seed: int = 0
    train_subset: int | None = None  # None: the full 50,000-image training split


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image independently by up to `max_shift` pixels (zero fill)."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)  # [B, 1, h + 2s, w + 2s]
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=generator)
    rows = (dy + torch.arange(h))[:, :, None]  # [B, h, 1]
    cols = (dx + torch.arange(w))[:, None, :]  # [B, 1, w]
    return padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)  # [B, 1, h, w]


def train_featurenet(train: Split, settings: TrainSettings, progress: bool = True) -> FeatureNet:
    """Seeded training on CPU: same settings, same machine -> the same weights, bit for bit."""
    torch.manual_seed(settings.seed)
    net = FeatureNet()
    images = train.images[: settings.train_subset] if settings.train_subset else train.images
    labels = train.labels[: len(images)]
    steps_per_epoch = len(images) // settings.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{len(images)} training images is less than one batch of {settings.batch_size}")
    opt = torch.optim.Adam(net.parameters(), lr=settings.max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.max_lr,
                                                total_steps=settings.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(settings.seed)
    from tqdm.auto import tqdm

    bar = tqdm(total=settings.epochs * steps_per_epoch, unit="step", disable=not progress, dynamic_ncols=True)
    for _ in range(settings.epochs):
        net.train()
        order = torch.randperm(len(images), generator=gen)
        for step in range(steps_per_epoch):
            idx = order[step * settings.batch_size:(step + 1) * settings.batch_size]
            x = random_shift(to_unit(images[idx]), settings.max_shift, gen)
            loss = F.cross_entropy(net(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    return net.eval()


def save_featurenet(net: FeatureNet, path: Path, meta: dict[str, Any]) -> str:
    """Write weights + meta atomically; returns the file's SHA-256."""
    buffer = io.BytesIO()
    torch.save({STATE_KEY: net.state_dict(), META_KEY: meta}, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


# --- command line -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.featurenet",
                                description="Train or check the MNIST feature network used by FID/KID/IS.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the feature network (seeded, CPU, a few minutes)")
    t.add_argument("--out", type=Path, default=Path("runs/featurenet/featurenet.pt"),
                   help="weights file to write (refused if it exists, unless --force)")
    t.add_argument("--force", action="store_true", help="overwrite --out")
    t.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    t.add_argument("--seed", type=int, default=TrainSettings.seed)
    t.add_argument("--smoke-test", action="store_true", help="1 epoch on 2,048 images: seconds, low accuracy")
    e = sub.add_parser("evaluate",
                       help="test accuracy and SHA-256 of a weights file (default: the shipped one)")
    e.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    for q in (t, e):
        q.add_argument("--data-dir",
                       help="directory holding MNIST/raw/ (default: $STUDY_DATA_DIR, else a download cache)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train" and args.out.exists() and not args.force:
            raise FileExistsError(f"--out {args.out} already exists: pass --force to overwrite it, or "
                                  "another --out")
        if args.command == "train" and args.epochs < 1:
            raise ValueError(f"--epochs {args.epochs}: must be at least 1")
        data = load_splits(args.data_dir)
        net = load_featurenet(args.weights) if args.command == "evaluate" else None
    except (FileExistsError, ValueError, DataNotFoundError, FeatureNetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command == "evaluate":
        assert net is not None  # loaded above
        print(f"weights      {args.weights or WEIGHTS_PATH}\nsha256       {net.sha256}")
        print(f"test accuracy {accuracy(net, data.test):.4f}  (validation {accuracy(net, data.val):.4f})")
        return 0

    settings = TrainSettings(epochs=args.epochs, seed=args.seed)
    if args.smoke_test:
        settings = TrainSettings(epochs=1, batch_size=64, seed=args.seed, train_subset=2048)
    started = time.perf_counter()
    net = train_featurenet(data.train, settings)
    seconds = time.perf_counter() - started
    test_acc, val_acc = accuracy(net, data.test), accuracy(net, data.val)
    meta = {**{k: v for k, v in asdict(settings).items() if v is not None},
            "test_accuracy": test_acc, "val_accuracy": val_acc}
    sha = save_featurenet(net, args.out, meta)
    print(f"trained in {seconds:.0f} s: test accuracy {test_acc:.4f}, validation accuracy {val_acc:.4f}")
    print(f"wrote {args.out}\nsha256 {sha}")
    if sha == SHIPPED_SHA256:
        print("identical to the shipped weights")
    elif not args.smoke_test:
        print(f"differs from the shipped weights ({SHIPPED_SHA256[:12]}...); to ship these, copy the file to "
              f"{WEIGHTS_PATH} and set SHIPPED_SHA256 in study/featurenet.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
