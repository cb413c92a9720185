"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from analysis_fixtures import TinyStudies, build_tiny_studies

MNIST_DIR = Path(os.environ.get("STUDY_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_study_dirs(tmp_path_factory) -> TinyStudies:
    """analysis tests: a tiny GAN study and a tiny VAE study, really trained (tests/analysis_fixtures.py)."""
    return build_tiny_studies(tmp_path_factory.mktemp("analysis-studies"), MNIST_DIR.resolve())
