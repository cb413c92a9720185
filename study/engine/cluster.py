"""The one Ray bring-up of every command, and what the cluster it finds can run.

`start_ray` joins a cluster (`--address`) or starts a local Ray of our own, with the dashboard on
loopback when asked (study.launch) or without one (study.replicate, study.reproduce). The project's
packages travel to every worker in the runtime environment. `resolve_gpus` and `trial_slots` read the
live nodes; `run_config` is the Tune RunConfig every experiment uses.
"""

from __future__ import annotations

import os
import posixpath
import signal
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
from ray import tune

import models
import search_spaces
import study
from models.config import ConfigError
from study.engine import ALLOW_CPU_ON_GPU_ENV, console
from study.engine.preflight import LOOPBACK_ENV, is_loopback


def code_runtime_env() -> dict[str, Any]:
    """Ship this project's packages to every worker (the nodes need only the dependencies), and the
    logical-GPU switch when the driver has it set."""
    env: dict[str, Any] = {"py_modules": [models, search_spaces, study]}
    if os.environ.get(ALLOW_CPU_ON_GPU_ENV):
        env["env_vars"] = {ALLOW_CPU_ON_GPU_ENV: os.environ[ALLOW_CPU_ON_GPU_ENV]}
    return env


def auth_token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"  # where Ray 2.60 keeps its token (ray get-auth-token)


def protect_auth_token() -> None:
    """Ray writes its token file with the umask (often world-readable): make it the owner's only."""
    path = auth_token_path()
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
    except FileNotFoundError:
        pass


def start_ray(address: str | None, num_cpus: int | None, dashboard: tuple[str, int] | None = None) -> bool:
    """Join the cluster at `address`, or start a local Ray (with its dashboard on `dashboard`'s host
    and port when given); True if this call started or joined it, False if Ray was already up."""
    if ray.is_initialized():
        return False
    if address:
        context = ray.init(address=address, runtime_env=code_runtime_env(), **console.ray_init_options())
    else:
        if dashboard is not None and not is_loopback(dashboard[0]):
            print(f"warning: the Ray dashboard listens on {dashboard[0]}, reachable from the network "
                  "(it asks for the cluster's auth token); use --dashboard-host 127.0.0.1 to keep it local.",
                  file=sys.stderr)
        os.environ.setdefault(*LOOPBACK_ENV)  # one node: loopback only (see LOOPBACK_ENV)
        # address="local": always a new Ray of our own; without it ray.init joins any Ray already
        # running on this machine (another study's) and refuses our num_cpus
        options = dashboard_options(dashboard)
        options.update(console.ray_init_options())  # Ray's INFO logs off the console unless --verbose
        context = ray.init(address="local", num_cpus=num_cpus, runtime_env=code_runtime_env(), **options)
    protect_auth_token()
    if dashboard is not None:
        if context.dashboard_url:
            print(f"Ray dashboard: http://{context.dashboard_url}  (log in with the token that "
                  "`ray get-auth-token` prints)", flush=True)
        else:
            print("Ray dashboard: not running on this cluster", flush=True)
    return True


def dashboard_options(dashboard: tuple[str, int] | None) -> dict[str, Any]:
    """ray.init's dashboard options for a local Ray: the dashboard on `dashboard`'s host and port, or
    none. A minimal Ray (`pip install ray`, without the `[default]` extra: a GPU machine's carried
    wheels, say) has no dashboard, and asking it for one is a traceback in ray.init; the study then
    runs without it, and says so in one line."""
    if dashboard is None:
        return {"include_dashboard": False}
    missing = ray._private.utils.get_dashboard_dependency_error()
    if missing:
        print(f"Ray dashboard: not started, this Ray lacks its packages ({missing}); "
              "pip install 'ray[default]' for it. The study runs without it.", flush=True)
        return {"include_dashboard": False}
    return {"include_dashboard": True, "dashboard_host": dashboard[0], "dashboard_port": dashboard[1]}


@contextmanager
def ray_session(address: str | None, num_cpus: int | None,
                dashboard: tuple[str, int] | None = None) -> Iterator[bool]:
    """`start_ray` for the block, and `ray.shutdown` after it if this call started or joined Ray;
    yields whether it did."""
    started = start_ray(address, num_cpus, dashboard)
    try:
        yield started
    finally:
        if started:
            ray.shutdown()


def _alive_nodes() -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def cluster_gpus(expect_gpus: int | None = None) -> float:
    """The cluster's GPUs: those of the live nodes, or the --expect-gpus of an autoscaling one."""
    return max(float(ray.cluster_resources().get("GPU", 0)), float(expect_gpus or 0))


def resolve_gpus(cpus_per_trial: float, gpus_per_trial: float | None,
                 expect_gpus: int | None = None) -> float:
    """GPUs per trial (None: 1 when the cluster has GPUs, else 0); refuses requests no node can meet
    (Tune would otherwise wait for them forever). The nodes are those alive now, unless `expect_gpus`
    (--expect-gpus) says GPU workers will join: then a trial of up to that many GPUs is accepted
    (the autoscaler starts the nodes it needs; their CPUs are not known yet)."""
    nodes = _alive_nodes()
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    has_gpus = max(most_gpus, expect_gpus or 0) > 0
    gpus = gpus_per_trial if gpus_per_trial is not None else (1.0 if has_gpus else 0.0)
    if expect_gpus:
        if gpus > expect_gpus:
            raise ConfigError(f"--gpus-per-trial {gpus:g}: more than the {expect_gpus} GPU(s) of "
                              "--expect-gpus.")
        return gpus
    if cpus_per_trial > most_cpus or gpus > most_gpus:
        raise ConfigError(f"a trial asks for {cpus_per_trial:g} CPU + {gpus:g} GPU, but the largest node of "
                          f"this Ray cluster has {most_cpus:g} CPU + {most_gpus:g} GPU; lower the trial's "
                          "resources (--cpus-per-trial / --gpus-per-trial) or use a larger --num-cpus "
                          "(the nodes alive now count: on an autoscaling cluster whose GPU workers start "
                          "from zero, give --expect-gpus N).")
    return gpus


def trial_slots(cpus_per_trial: float, gpus_per_trial: float, expect_gpus: int | None = None) -> int:
    """How many trials the cluster runs at once (its nodes' CPUs and GPUs over a trial's; with
    `expect_gpus`, at least the expected GPUs over a trial's, for the nodes still to come)."""
    slots = 0
    for node in _alive_nodes():
        fits = int(node.get("CPU", 0) // cpus_per_trial)
        if gpus_per_trial > 0:
            fits = min(fits, int(node.get("GPU", 0) / gpus_per_trial + 1e-9))
        slots += fits
    if expect_gpus and gpus_per_trial > 0:
        slots = max(slots, int(expect_gpus / gpus_per_trial + 1e-9))
    return max(1, slots)


def dirname_creator(prefix: str):
    """prefix_0001_<id>: creation order first (Tune's experiment tag starts with the trial counter),
    so the seed configurations' trials sort first."""
    def name(trial) -> str:
        counter = str(trial.experiment_tag).split("_", 1)[0]
        if not counter.isdigit():
            return f"{prefix}_{trial.trial_id}"
        return f"{prefix}_{counter.zfill(4)}_{trial.trial_id}"

    return name


trial_dirname = dirname_creator("trial")  # a study's trials: trial_0001_<id>


def run_config(name: str, storage_path: str, max_failures: int, keep_checkpoints: int) -> tune.RunConfig:
    """The experiment's storage, retries and kept checkpoints; trial files synced into the trial dir."""
    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        failure_config=tune.FailureConfig(max_failures=max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=keep_checkpoints),
        sync_config=tune.SyncConfig(sync_artifacts=True),  # trial files -> trial directory
        **console.run_options(),  # the study console instead of Ray's tables; trackers
    )


def _node_tasks(fn, *args, gpus: bool = False) -> dict[str, Any]:
    """`fn(*args)` once on every live node (on each node with a GPU, asking for a sliver of one so
    Ray sets its CUDA_VISIBLE_DEVICES): {node id: result}."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, num_gpus=0.01, max_calls=1)(fn) if gpus else ray.remote(num_cpus=0)(fn)
    refs = {}
    for node in ray.nodes():
        if not node.get("Alive") or (gpus and node["Resources"].get("GPU", 0) <= 0):
            continue
        where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        refs[node["NodeID"]] = task.options(scheduling_strategy=where).remote(*args)
    try:
        return dict(zip(refs, ray.get(list(refs.values()), timeout=300), strict=True))
    except ray.exceptions.GetTimeoutError:
        raise ConfigError("a probe task found no room on every node within 5 minutes (is the cluster "
                          "busy with another job?); try again when it has free CPUs and GPUs.") from None


def _read_marker(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def check_shared_storage(storage_path: str) -> None:
    """On a cluster of several nodes, a local (non-URI) storage path must be one filesystem that every
    node sees (NFS): the driver writes a marker there and a task on each node must read it back."""
    if "://" in storage_path or sum(1 for n in ray.nodes() if n.get("Alive")) < 2:
        return
    root = Path(storage_path).resolve()
    root.mkdir(parents=True, exist_ok=True)
    token = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(8).hex()}"
    marker = root / f".storage-probe-{token}"
    marker.write_text(token)
    try:
        seen = _node_tasks(_read_marker, str(marker))
    finally:
        marker.unlink(missing_ok=True)
    blind = sorted(node for node, text in seen.items() if text != token)
    if blind:
        raise ConfigError(
            f"--storage-path {storage_path}: {len(blind)} of the cluster's {len(seen)} nodes (Ray node "
            f"{', '.join(n[:12] for n in blind)}) do not see a file the launcher wrote to {root}, so their "
            "trials could not write checkpoints there; give a path on a filesystem every node mounts "
            "(NFS) or an s3:// / gs:// URI.")


def _cuda_probe() -> dict[str, Any]:
    import torch

    usable = torch.cuda.is_available()
    return {"usable": usable, "host": socket.gethostname(), "torch": torch.__version__,
            "cuda_build": torch.version.cuda, "device": torch.cuda.get_device_name(0) if usable else None}


def check_cuda_on_gpu_nodes() -> dict[str, dict[str, Any]]:
    """Probe CUDA once on every node with GPUs: a node where Ray has GPUs but torch cannot use CUDA (a
    CPU wheel, a driver too old for the wheel's CUDA) would train its trials on one CPU thread, so
    it is refused, unless ALLOW_CPU_ON_GPU_ENV is set (logical GPUs in tests). Returns the probes."""
    probes = _node_tasks(_cuda_probe, gpus=True)
    broken = {node: p for node, p in probes.items() if not p["usable"]}
    if broken and not os.environ.get(ALLOW_CPU_ON_GPU_ENV):
        node, p = next(iter(broken.items()))
        raise ConfigError(
            f"{len(broken)} GPU node(s) cannot use CUDA (e.g. {p['host']}, Ray node {node[:12]}: torch "
            f"{p['torch']}, CUDA build {p['cuda_build']}); their trials would silently train on the CPU. "
            "Install a torch build whose CUDA matches the node's driver (docs/cluster.md), or set "
            f"{ALLOW_CPU_ON_GPU_ENV}=1 where the GPUs are logical (tests).")
    return probes


def tune_was_interrupted(handler_before) -> bool:
    """Whether Ctrl-C ended Tuner.fit: Tune's SIGINT handler (ray/tune/tune.py) puts the previous
    handler back when it fires, and only then (it installs itself only on the main thread)."""
    if threading.current_thread() is not threading.main_thread() or os.getenv("TUNE_DISABLE_SIGINT_HANDLER",
                                                                             "0") != "0":
        return False
    return signal.getsignal(signal.SIGINT) is handler_before


def fit(tuner: tune.Tuner) -> tuple[tune.ResultGrid, bool]:
    """`tuner.fit()`, and whether Ctrl-C ended it: Ctrl-C marks the running trials TERMINATED in
    memory, so their count alone cannot tell an interrupted experiment from a finished one."""
    handler = signal.getsignal(signal.SIGINT)
    results = tuner.fit()
    interrupted = tune_was_interrupted(handler)
    signal.signal(signal.SIGINT, handler)
    return results, interrupted


def errored_trial_dirs(results: tune.ResultGrid) -> set[str]:
    """The trial directory names of the experiment's trials that Ray ended in error."""
    return {posixpath.basename(results[i].path) for i in range(len(results)) if results[i].error is not None}
