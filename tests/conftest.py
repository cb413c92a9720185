"""Shared test fixtures: the real MNIST copy beside the checkout, loaded once per session; and the
guard of the fast loop (`pytest -m "not slow"`): a test not marked slow that starts Ray fails."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("STUDY_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))

# Every Ray this test session starts, in this process or in a launcher it spawns (children inherit
# the environment), keeps its session_* directories under one private temp dir, so a new one there
# means a test started Ray, and other sessions on the machine do not count. Short: Ray's socket
# paths must stay under 108 characters.
_OWN_RAY_TMPDIR = "RAY_TMPDIR" not in os.environ
if _OWN_RAY_TMPDIR:
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
RAY_TMPDIR = os.environ["RAY_TMPDIR"]
RAY_SESSIONS_DIR = Path(RAY_TMPDIR) / "ray"


def pytest_unconfigure(config):
    if _OWN_RAY_TMPDIR:  # removed when no Ray started (the fast loop); else kept with Ray's logs
        try:
            os.rmdir(RAY_TMPDIR)
        except OSError:
            pass


_RAY_BEFORE = pytest.StashKey[tuple[bool, frozenset[str]]]()


def ray_sessions() -> frozenset[str]:
    """The Ray session directories started so far (by this test session, see RAY_TMPDIR)."""
    if not RAY_SESSIONS_DIR.is_dir():
        return frozenset()
    return frozenset(p.name for p in RAY_SESSIONS_DIR.iterdir()
                     if p.name.startswith("session_") and p.name != "session_latest")


def ray_initialized() -> bool:
    ray = sys.modules.get("ray")  # never import Ray just to ask
    return ray is not None and ray.is_initialized()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    item.stash[_RAY_BEFORE] = (ray_initialized(), ray_sessions())  # before the test's fixtures
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Fails a test not marked slow that started Ray (its fixtures included): left it initialised
    here, or started a session here or in a child process (a launcher: `python -m study.launch`,
    study.replicate, study.reproduce), even one shut down again. Such a test belongs in the slow suite."""
    result = yield
    if item.get_closest_marker("slow") is None and _RAY_BEFORE in item.stash:
        was_initialized, before = item.stash[_RAY_BEFORE]
        started = sorted(ray_sessions() - before)
        if started or (ray_initialized() and not was_initialized):
            where = f"new Ray session(s) {started} under {RAY_SESSIONS_DIR}" if started else "ray.init()"
            pytest.fail(f"this test is not marked slow but started Ray ({where}): mark it "
                        "@pytest.mark.slow, or refuse its input before Ray starts; `pytest -m 'not slow'` "
                        "starts no Ray and no launcher.", pytrace=False)
    return result


@pytest.fixture(autouse=True)
def _keep_rays_loopback_switch():
    """`study.launch.main` sets Ray's single-node switch (LOOPBACK_ENV) in os.environ for the rest of
    its process; a test that calls it in-process must not hand that switch to a later test's Ray
    nodes (a worker node started with it cannot join a multi-node test cluster)."""
    from study.engine.preflight import LOOPBACK_ENV  # models.config only: cheap

    before = os.environ.get(LOOPBACK_ENV[0])
    yield
    if before is None:
        os.environ.pop(LOOPBACK_ENV[0], None)
    else:
        os.environ[LOOPBACK_ENV[0]] = before


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
