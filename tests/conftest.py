"""Shared test fixtures: the real MNIST copy beside the checkout, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

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
