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


@pytest.fixture(scope="session")
def tiny_study_dirs(data_dir, tmp_path_factory):
    """analysis tests: a tiny GAN study and a tiny VAE study, really trained (tests/analysis_fixtures.py)."""
    from analysis_fixtures import build_tiny_studies

    return build_tiny_studies(tmp_path_factory.mktemp("analysis-studies"), data_dir.resolve())
