"""Shared test fixtures: the real MNIST copy beside the checkout, loaded once per session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("STUDY_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from study.data import has_mnist

    assert has_mnist(DATA_DIR), f"tests need MNIST at {DATA_DIR} (set STUDY_DATA_DIR)"
    return DATA_DIR


@pytest.fixture(scope="session")
def mnist(data_dir):
    """The full train/validation/test split (uint8 tensors, ~1 s to load)."""
    from study.data import load_splits

    return load_splits(data_dir)


@pytest.fixture(scope="session")
def tiny_study_dirs(data_dir, tmp_path_factory):
    """analysis tests: a tiny GAN study and a tiny VAE study, really trained (tests/analysis_fixtures.py)."""
    from analysis_fixtures import build_tiny_studies

    return build_tiny_studies(tmp_path_factory.mktemp("analysis-studies"), data_dir.resolve())


class LaunchedStudies(NamedTuple):
    gan: Path
    vae: Path
    data_dir: Path


@pytest.fixture(scope="session")
def launched_studies(data_dir, tmp_path_factory) -> LaunchedStudies:
    """A GAN and a VAE study made by the real launcher (`python -m study.launch --smoke-test`:
    local Ray, Optuna, real metrics, 2,000 MNIST images), for the notebook and the report. No
    scheduler: every trial completes, so the report's importances (completed trials only; an
    early-stopped trial is PRUNED in optuna.db) have all 4 trials, whatever the machine's load."""
    storage = tmp_path_factory.mktemp("launched")
    dirs = {}
    for family in ("gan", "vae"):
        name = f"{family}-smoke"
        with socket.socket() as s:  # a free dashboard port, so parallel sessions do not collide
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "study.launch", "--family", family, "--smoke-test",
             "--data-dir", str(data_dir), "--storage-path", str(storage), "--name", name, "--num-cpus", "2",
             "--scheduler", "none", "--dashboard-port", str(port)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        dirs[family] = storage / name
    return LaunchedStudies(gan=dirs["gan"], vae=dirs["vae"], data_dir=Path(data_dir))
