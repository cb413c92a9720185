"""What the benchmarks that run `python -m study.launch` studies share: a free dashboard port, and
the exit status and `error:` line when such a study fails."""

from __future__ import annotations

import socket
import subprocess
import sys

EXIT_BAD_INPUT = 2  # the launcher's exit status for bad input; it prints its own `error:` line


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launcher_failed(exc: subprocess.CalledProcessError) -> int:
    """The benchmark's exit status when a launcher study failed: 2 for bad input (the launcher's own
    one `error:` line stands), else 1 with one `error:` line naming the study (its --name)."""
    if exc.returncode == EXIT_BAD_INPUT:
        return EXIT_BAD_INPUT
    command = [str(part) for part in exc.cmd]
    name = command[command.index("--name") + 1] if "--name" in command else "?"
    print(f"error: the launcher's study {name} exited with {exc.returncode} (its output is above); fix "
          "that and rerun: finished studies are kept and skipped.", file=sys.stderr)
    return 1
