"""Studies side by side on one machine: each launcher's dashboard port and share of the CPUs.

Every launcher that starts a local Ray registers itself in a per-user directory of the machine
(`registry_dir()`): one file per launcher, `<pid>.json` with its study, dashboard port and CPUs,
held with `fcntl.flock` for as long as the launcher lives (the kernel drops the lock when the process
dies, SIGKILL included, so a dead launcher's file is recognised and removed by the next one). The
check and the claim happen under one registry-wide lock, so two launchers started at the same moment
never pick the same port.

- Dashboard port: `--dashboard-port` given: that port, refused at once if it is taken; not given:
  DEFAULT_DASHBOARD_PORT or the next port that is free and that no live launcher claimed.
- CPUs: `--num-cpus` given: that many; not given and other studies run: this machine's CPUs over
  the number of launchers (the others included), so two studies do not each start a Ray sized for the
  whole machine; alone: all of them (Ray's default).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.config import ConfigError
from study.engine.preflight import DEFAULT_DASHBOARD_PORT, bind_error, check_dashboard_port

PORT_TRIES = 100  # ports after the default that a launcher looks at


def registry_dir() -> Path:
    override = os.environ.get("STUDY_LAUNCHER_REGISTRY")  # tests: a registry of their own
    if override:
        return Path(override)
    return Path(tempfile.gettempdir()) / f"ganvae-study-launchers-{os.getuid()}"


def port_is_free(host: str, port: int) -> bool:
    """Whether a server can listen on host:port now (preflight.bind_error)."""
    return bind_error(host, port) is None


def _live(path: Path) -> dict[str, Any] | None:
    """The record of a live launcher, or None (and the file removed) if its launcher is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return {}
        path.unlink(missing_ok=True)  # we got the lock: nobody holds it, the launcher died
        return None
    finally:
        os.close(fd)


def live_launchers(exclude_pid: int | None = None) -> list[dict[str, Any]]:
    """The records of the launchers running now (this process's own left out)."""
    folder = registry_dir()
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        if exclude_pid is not None and path.stem == str(exclude_pid):
            continue
        if (record := _live(path)) is not None:
            records.append(record)
    return records


@dataclass
class Claim:
    """This launcher's registration: its dashboard port and CPUs; `release()` drops it."""

    port: int | None
    num_cpus: int | None
    others: list[dict[str, Any]]
    path: Path | None = None
    fd: int | None = None

    def release(self) -> None:
        if self.fd is not None and self.path is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


def _choose_port(host: str, requested: int | None, others: list[dict[str, Any]]) -> int:
    if requested is not None:
        check_dashboard_port(host, requested)  # again, under the registry's lock: taken since? refused
        return requested
    claimed = {o.get("port") for o in others}
    for port in range(DEFAULT_DASHBOARD_PORT, DEFAULT_DASHBOARD_PORT + PORT_TRIES):
        if port not in claimed and port_is_free(host, port):
            return port
    raise ConfigError(f"no free port for the Ray dashboard in {DEFAULT_DASHBOARD_PORT}.."
                      f"{DEFAULT_DASHBOARD_PORT + PORT_TRIES - 1}; pass a free one with --dashboard-port.")


def cpu_share(num_cpus: int | None, others: int, minimum: float = 1.0) -> int | None:
    """CPUs of this launcher's Ray: the flag's, else (other launchers running) this machine's CPUs over
    all the launchers, at least `minimum` (one trial); None: all (Ray's default)."""
    if num_cpus is not None or others == 0:
        return num_cpus
    machine = os.cpu_count() or 1
    return max(int(-(-minimum // 1)), machine // (others + 1))


def claim(study: str, host: str, requested_port: int | None, num_cpus: int | None,
          min_cpus: float = 1.0, dashboard: bool = True) -> Claim:
    """Register this launcher and choose its port and CPUs (ConfigError: the asked port is taken)."""
    folder = registry_dir()
    folder.mkdir(parents=True, exist_ok=True)
    guard = os.open(folder / ".claim", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one launcher at a time between the check and the claim
        others = live_launchers(exclude_pid=os.getpid())
        port = _choose_port(host, requested_port, others) if dashboard else None
        cpus = cpu_share(num_cpus, len(others), min_cpus)
        path = folder / f"{os.getpid()}.json"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        record = {"pid": os.getpid(), "study": study, "port": port, "num_cpus": cpus}
        os.write(fd, json.dumps(record).encode())
        return Claim(port, cpus, others, path, fd)
    finally:
        os.close(guard)


def describe(claimed: Claim, asked_cpus: int | None) -> str | None:
    """The line that tells a person their study shares the machine (None when it runs alone)."""
    if not claimed.others:
        return None
    names = ", ".join(f"{o.get('study')} (PID {o.get('pid')})" for o in claimed.others)
    cpus = (f"this study's Ray takes {claimed.num_cpus} of the {os.cpu_count()} CPUs (--num-cpus to choose)"
            if asked_cpus is None else f"this study's Ray takes --num-cpus {asked_cpus}")
    return f"other studies run on this machine: {names}; {cpus}"
