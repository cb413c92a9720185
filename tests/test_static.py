"""Static checks that run with the full suite (CI): mypy (configured in pyproject.toml) on models/ and
study/, and ruff on the tree. Marked slow so the fast loop stays fast; run them by hand with
`.venv/bin/ruff check . && .venv/bin/mypy models study`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow  # a cold mypy run is minutes on 2 cores
def test_mypy_finds_no_type_errors_in_models_and_study():
    result = subprocess.run([sys.executable, "-m", "mypy", "models", "study"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


@pytest.mark.slow
def test_ruff_finds_no_lint_or_line_length_errors_anywhere():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
