"""The one Ray bring-up of every command, and what the cluster it finds can run.

`start_ray` joins a cluster (`--address`) or starts a local Ray of our own, with the dashboard on
loopback when asked (study.launch) or without one (study.replicate, study.reproduce). The project's
packages travel to every worker in the runtime environment. `resolve_gpus` and `trial_slots` read the
live nodes; `run_config` is the Tune RunConfig every experiment uses.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray import tune

import models
import search_spaces
import study
from models.config import ConfigError
from study.tune import console
from study.tune.preflight import LOOPBACK_ENV, is_loopback


def code_runtime_env() -> dict[str, Any]:
    """Ship this project's packages to every worker (the nodes need only the dependencies)."""
    return {"py_modules": [models, search_spaces, study]}


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
        options: dict[str, Any] = {"include_dashboard": False}
        if dashboard is not None:
            options = {"include_dashboard": True, "dashboard_host": dashboard[0],
                       "dashboard_port": dashboard[1]}
        options.update(console.ray_init_options())  # Ray's INFO logs off the console unless --verbose
        context = ray.init(address="local", num_cpus=num_cpus, runtime_env=code_runtime_env(), **options)
    if dashboard is not None:
        if context.dashboard_url:
            print(f"Ray dashboard: http://{context.dashboard_url}  (log in with the token that "
                  "`ray get-auth-token` prints)", flush=True)
        else:
            print("Ray dashboard: not running on this cluster", flush=True)
    return True


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


def resolve_gpus(cpus_per_trial: float, gpus_per_trial: float | None) -> float:
    """GPUs per trial (None: 1 when the cluster has GPUs, else 0); refuses requests no node can meet
    (Tune would otherwise wait for them forever)."""
    nodes = _alive_nodes()
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    gpus = gpus_per_trial if gpus_per_trial is not None else (1.0 if most_gpus > 0 else 0.0)
    if cpus_per_trial > most_cpus or gpus > most_gpus:
        raise ConfigError(f"a trial asks for {cpus_per_trial:g} CPU + {gpus:g} GPU, but the largest node of "
                          f"this Ray cluster has {most_cpus:g} CPU + {most_gpus:g} GPU; lower the trial's "
                          "resources (--cpus-per-trial / --gpus-per-trial) or use a larger --num-cpus.")
    return gpus


def trial_slots(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the cluster runs at once (its nodes' CPUs and GPUs over a trial's)."""
    slots = 0
    for node in _alive_nodes():
        fits = int(node.get("CPU", 0) // cpus_per_trial)
        if gpus_per_trial > 0:
            fits = min(fits, int(node.get("GPU", 0) / gpus_per_trial + 1e-9))
        slots += fits
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
