"""MNIST as uint8 tensors, a fixed seeded train/validation/test split, and device-resident batches.

Splits: train 50,000 and validation 10,000 are carved from the official 60,000 training images
with a fixed split seed (the same for every trial, so every trial is selected on the same
held-out images); test is the official 10,000-image test set, used only for reporting.
Batches are slices of tensors that already live on the training device: no per-sample Python
transforms and no DataLoader workers, which on MNIST cost more than the networks.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

DATA_DIR_ENV = "STUDY_DATA_DIR"
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ganvae-study" / "data"
MNIST_RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# IDX headers (http://yann.lecun.com/exdb/mnist/): magic 0x00000803 = unsigned bytes, 3 dims;
# 0x00000801 = unsigned bytes, 1 dim; then each dim as a big-endian int32, then the data.
IDX_SHAPES = {
    "train-images-idx3-ubyte": (60_000, 28, 28),
    "train-labels-idx1-ubyte": (60_000,),
    "t10k-images-idx3-ubyte": (10_000, 28, 28),
    "t10k-labels-idx1-ubyte": (10_000,),
}
SPLIT_SEED = 20_240_601  # fixed: the validation split must not move with the trial seed
VALIDATION_SIZE = 10_000
TRAIN_SIZE = IDX_SHAPES["train-images-idx3-ubyte"][0] - VALIDATION_SIZE  # 50,000
SPLIT_TRAIN = "train"
SPLIT_VAL = "val"
SPLIT_TEST = "test"
SPLITS = (SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST)


class DataNotFoundError(FileNotFoundError):
    """MNIST is not where we looked and could not be downloaded."""


class DataCorruptError(DataNotFoundError):
    """An MNIST file is there but truncated, corrupt or not MNIST; the message names it."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 [N, 28, 28]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class MNISTSplits:
    train: Split
    val: Split
    test: Split
    data_dir: str

    def get(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}")
        return getattr(self, name)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Where MNIST lives: the flag, else $STUDY_DATA_DIR, else a per-user cache.

    Returns (root, explicit); an explicit root is only downloaded into when it lacks the files.
    """
    if data_dir:
        return Path(data_dir).expanduser(), True
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser(), True
    return DEFAULT_CACHE_DIR, False


def has_mnist(root: Path) -> bool:
    raw = root / "MNIST" / "raw"
    return all((raw / name).is_file() for name in MNIST_RAW_FILES)


def _corrupt(path: Path, what: str) -> DataCorruptError:
    return DataCorruptError(
        f"MNIST file {path} is {what}. Replace it with the original file (e.g. copy MNIST/raw/ again "
        f"from a good copy, or delete {path.parent.parent} and let torchvision download it), or point "
        f"--data-dir / {DATA_DIR_ENV} at an intact copy."
    )


def verify_mnist(root: Path) -> None:
    """Check the four IDX files' headers and sizes (a few bytes read each): a truncated, corrupt or
    foreign file raises DataCorruptError naming it, instead of a shape error deep in torchvision."""
    raw = root / "MNIST" / "raw"
    for name, shape in IDX_SHAPES.items():
        path = raw / name
        magic = 0x0800 + len(shape)
        expected_size = 4 + 4 * len(shape) + _prod(shape)
        try:
            with open(path, "rb") as f:
                header = f.read(4 + 4 * len(shape))
            size = path.stat().st_size
        except OSError as exc:
            raise _corrupt(path, f"unreadable ({exc.strerror})") from None
        if len(header) < 4 or int.from_bytes(header[:4], "big") != magic:
            raise _corrupt(path, f"not an IDX file of {len(shape)}-D unsigned bytes (wrong magic number)")
        dims = tuple(int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(len(shape)))
        if dims != shape:
            raise _corrupt(path, f"an IDX file of shape {dims}, not MNIST's {shape}")
        if size != expected_size:
            raise _corrupt(path, f"{size} bytes long instead of {expected_size} (truncated or padded)")


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def _unpack_gz(root: Path) -> None:
    """Unpack `NAME.gz` where NAME is missing; a damaged archive raises DataCorruptError and leaves
    no partial file."""
    raw = root / "MNIST" / "raw"
    for name in MNIST_RAW_FILES:
        packed, target = raw / f"{name}.gz", raw / name
        if target.exists() or not packed.is_file():
            continue
        try:  # in memory first (at most 47 MB): a damaged archive writes nothing
            content = gzip.decompress(packed.read_bytes())
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise _corrupt(packed, f"not a readable gzip archive ({type(exc).__name__}: {exc})") from None
        tmp = target.with_name(name + ".tmp")
        try:
            tmp.write_bytes(content)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)


def _missing_message(root: Path, reason: str) -> str:
    return (
        f"MNIST was not found under {root} and could not be downloaded ({reason}). "
        f"Expected the four IDX files {', '.join(MNIST_RAW_FILES)} in {root / 'MNIST' / 'raw'} "
        "(the layout torchvision.datasets.MNIST reads; .gz copies are unpacked automatically). "
        f"Point the study at an existing copy with --data-dir DIR or the environment variable "
        f"{DATA_DIR_ENV}=DIR, where DIR contains MNIST/raw/, or run once with internet access "
        "so that torchvision can download it."
    )


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = True) -> tuple[Split, Split, Path]:
    """The official (train 60k, test 10k) sets as uint8 tensors, downloading only when missing."""
    from torchvision.datasets import MNIST  # torchvision is only needed here

    root, _explicit = resolve_data_dir(data_dir)
    if not has_mnist(root) and (root / "MNIST" / "raw").is_dir():
        _unpack_gz(root)
    if not has_mnist(root):
        gz_present = (root / "MNIST" / "raw").is_dir() and any((root / "MNIST" / "raw").glob("*.gz"))
        if not (download or gz_present):
            raise DataNotFoundError(_missing_message(root, "download disabled"))
        created = _missing_dirs(root / "MNIST" / "raw")
        try:
            MNIST(root=str(root), train=True, download=True)
            MNIST(root=str(root), train=False, download=True)
        except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError variously
            _remove_partial_download(root, created)
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
            raise DataNotFoundError(_missing_message(root, reason)) from None
    verify_mnist(root)
    train = MNIST(root=str(root), train=True, download=False)
    test = MNIST(root=str(root), train=False, download=False)
    return (
        Split(train.data.clone(), train.targets.clone()),
        Split(test.data.clone(), test.targets.clone()),
        root,
    )


def _missing_dirs(path: Path) -> list[Path]:
    """The directories on the way to `path` that do not exist yet (deepest first)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing


def _remove_partial_download(root: Path, created_dirs: list[Path]) -> None:
    """A failed download leaves nothing behind: no partial archives, no empty directories."""
    raw = root / "MNIST" / "raw"
    for name in MNIST_RAW_FILES:
        for leftover in (raw / name, raw / f"{name}.gz"):
            if raw in created_dirs and leftover.exists():
                leftover.unlink()
    for directory in created_dirs:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def split_mnist(train_full: Split, test: Split,
                train_subset: int | None = None) -> tuple[Split, Split, Split]:
    """Fixed seeded split of the official training set into train/validation."""
    if len(train_full) <= VALIDATION_SIZE:
        raise ValueError(f"need more than {VALIDATION_SIZE} training images, got {len(train_full)}")
    order = torch.randperm(len(train_full), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val_idx, train_idx = order[:VALIDATION_SIZE], order[VALIDATION_SIZE:]
    if train_subset is not None:
        if train_subset < 1:
            raise ValueError(f"--train-subset {train_subset}: must be at least 1")
        train_idx = train_idx[:train_subset]
    pick = lambda idx: Split(train_full.images[idx], train_full.labels[idx])  # noqa: E731
    return pick(train_idx), pick(val_idx), test


def load_splits(data_dir: str | os.PathLike | None = None, train_subset: int | None = None,
                download: bool = True) -> MNISTSplits:
    """MNIST split into train (50k or the first `train_subset`), validation (10k) and test (10k)."""
    train_full, test, root = load_mnist(data_dir, download=download)
    train, val, test = split_mnist(train_full, test, train_subset)
    return MNISTSplits(train=train, val=val, test=test, data_dir=str(root))


def to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float [N, 1, 28, 28] in [0, 1]."""
    return images_uint8.unsqueeze(1).float().div_(255.0)


class BatchIterator:
    """Seeded, reshuffled-each-epoch batches sliced from a device-resident uint8 tensor.

    The last partial batch is dropped so every step sees `batch_size` images (BatchNorm and
    images/s stay comparable across configurations).
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int, device: torch.device | str = "cpu"):
        if batch_size > len(images):
            raise ValueError(f"batch size {batch_size} is larger than the {len(images)} training images")
        self.images = images.to(device)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def __iter__(self):
        order = torch.randperm(len(self.images), generator=self.generator).to(self.images.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield to_unit(self.images[order[start:start + self.batch_size]])
