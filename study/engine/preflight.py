"""What a command settles before Ray is imported or started: the loopback switch Ray reads at import,
the dashboard's default port, and whether that port is free. Ray-free, so bad input is refused at once."""

from __future__ import annotations

import ipaddress
import socket

from models.config import ConfigError

# Ray's switch for single-node (laptop) clusters: its node address becomes 127.0.0.1, so the GCS,
# raylet, agents and workers listen on loopback only (on Linux Ray otherwise binds all interfaces).
# Ray reads it when it is imported: study.launch sets it before importing anything that imports Ray.
LOOPBACK_ENV = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
LOOPBACK_HOST = "127.0.0.1"  # the Ray dashboard's interface unless --dashboard-host says otherwise
DEFAULT_DASHBOARD_PORT = 8265  # the Ray dashboard of a local study (the next free one: engine/sharing.py)
TRACKERS = ("mlflow", "wandb")  # --tracker (repeatable): study/engine/tracking.py
TRACKER_PACKAGES = {"mlflow": ("mlflow", "MLflow", "'mlflow>=2'"), "wandb": ("wandb", "Weights & Biases",
                                                                            "'wandb>=0.19'")}


def bind_error(host: str, port: int) -> OSError | None:
    """Why a server cannot listen on host:port now, or None if it can. Bound as the dashboard's own
    server does (SO_REUSEADDR): a socket of a crashed study left in TIME_WAIT must not block an
    immediate --resume, while a port someone listens on still fails to bind."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None


def check_dashboard_port(host: str, port: int) -> None:
    """A local Ray cannot start its dashboard on a busy port; say so before starting anything."""
    if not 0 < port < 65536:
        raise ConfigError(f"--dashboard-port {port}: a port must be between 1 and 65535, "
                          "e.g. --dashboard-port 8265.")
    if (exc := bind_error(host, port)) is not None:
        raise ConfigError(
            f"the Ray dashboard cannot listen on {host}:{port} ({exc.strerror}); another Ray may be "
            f"running there: join it with --address auto, or pick a free port with --dashboard-port.")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tracker(trackers: tuple[str, ...] | list[str] | None, storage_is_uri: bool = False) -> None:
    """Refuse --tracker when it cannot work (no local study directory, the package missing), before Ray
    starts (ConfigError); the trackers themselves are study/engine/tracking.py."""
    import importlib.util

    for tracker in trackers or []:
        if storage_is_uri:
            raise ConfigError(f"--tracker {tracker}: the tracker's store lives in a local study directory; "
                              "use a local --storage-path.")
        module, label, requirement = TRACKER_PACKAGES[tracker]
        if importlib.util.find_spec(module) is None:  # an optional extra: only whether it is installed
            raise ConfigError(f"--tracker {tracker}: {label} is not installed; pip install -e '.[tracking]' "
                              f"(or pip install {requirement}).")
