"""Static checks that run with the suite: mypy (configured in pyproject.toml) on models/ and study/."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_mypy_finds_no_type_errors_in_models_and_study():
    result = subprocess.run([sys.executable, "-m", "mypy", "models", "study"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_ruff_finds_no_lint_or_line_length_errors_anywhere():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
