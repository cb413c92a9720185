"""Every command module runs as `python -m study.<command>`: its --help prints its usage and exits 0.

The other tests call the commands' `main()` in-process, which is how `python -m study.featurenet` lost
its `__main__` block unnoticed (it printed nothing and exited 0)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

COMMANDS = ("launch", "train", "evaluate", "replicate", "reproduce", "export", "featurenet")


@pytest.mark.slow  # seven interpreters importing torch: over a minute on 2 busy cores
def test_every_command_prints_its_usage_when_run_as_a_module():
    # all at once: each is an interpreter start and a torch import, a few seconds apiece
    runs = {name: subprocess.Popen([sys.executable, "-m", f"study.{name}", "--help"], cwd=REPO_ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in COMMANDS}
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"study.{name}: exit {proc.returncode}\n{err}"
        assert out.startswith(f"usage: python -m study.{name} "), (name, out[:200])
