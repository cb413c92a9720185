"""Ray plumbing shared by the commands that run fixed configurations (study.replicate, study.reproduce).

No search, no scheduler: a list of complete trial configs, each run to its last epoch by the
study trainable (study/trainable.py) under Tune's FIFO scheduler, with retries from checkpoints
and Tune's experiment state, so a second invocation restores an interrupted run instead of
starting again. `study.launch` keeps its own dashboard-starting variant of `start_ray`.
"""

from __future__ import annotations

import sys
from typing import Any

from models.config import ConfigError

EXIT_INTERRUPTED = 130  # as study.launch: Ctrl-C before every run finished; run the command again


def code_runtime_env() -> dict[str, Any]:
    """Ship this project's packages to every worker (the nodes need only the dependencies)."""
    import models
    import search_spaces
    import study

    return {"py_modules": [models, search_spaces, study]}


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join a cluster or start a local Ray (no dashboard); True if we started or joined it here."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, runtime_env=code_runtime_env())
    else:
        # "local": always a new local Ray, never a cluster some other `ray start` left running
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, runtime_env=code_runtime_env())
    return True


def resolve_gpus(cpus_per_trial: float, gpus_per_trial: float | None) -> float:
    """GPUs per trial (None: 1 when the cluster has GPUs, else 0); refuses requests no node can meet
    (Tune would otherwise wait for them forever)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    gpus = gpus_per_trial if gpus_per_trial is not None else (1.0 if most_gpus > 0 else 0.0)
    if cpus_per_trial > most_cpus or gpus > most_gpus:
        raise ConfigError(f"a trial asks for {cpus_per_trial:g} CPU + {gpus:g} GPU, but the largest node of "
                          f"this Ray cluster has {most_cpus:g} CPU + {most_gpus:g} GPU; lower the trial's "
                          "resources (--cpus-per-trial / --gpus-per-trial) or use a larger --num-cpus.")
    return gpus


def dirname_creator(prefix: str):
    """prefix_0001_<id>: creation order first (Tune's experiment tag starts with the trial counter)."""
    def name(trial) -> str:
        counter = str(trial.experiment_tag).split("_", 1)[0]
        if not counter.isdigit():
            return f"{prefix}_{trial.trial_id}"
        return f"{prefix}_{counter.zfill(4)}_{trial.trial_id}"

    return name


def fixed_configs_searcher(configs: list[dict[str, Any]]):
    """A Tune searcher that suggests `configs` once each, in order; its position is saved with the
    experiment, so a restored run never suggests a config twice. (Tune's points_to_evaluate need a
    param_space holding every key, which GAN and VAE configs do not share.)"""
    import pickle

    from ray.tune.search import Searcher

    class FixedConfigs(Searcher):
        def __init__(self, configs: list[dict[str, Any]]):
            super().__init__()
            self.configs, self.position = [dict(c) for c in configs], 0

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True  # nothing to search: the configs are complete

        def suggest(self, trial_id: str):
            if self.position >= len(self.configs):
                return Searcher.FINISHED
            self.position += 1
            return dict(self.configs[self.position - 1])

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            pass

        def save(self, checkpoint_path: str) -> None:
            with open(checkpoint_path, "wb") as f:
                pickle.dump((self.configs, self.position), f)

        def restore(self, checkpoint_path: str) -> None:
            with open(checkpoint_path, "rb") as f:
                self.configs, self.position = pickle.load(f)  # our own file, in the experiment directory

    return FixedConfigs(configs)


def run_fixed_configs(trainable, configs: list[dict[str, Any]], *, storage_path: str, name: str,
                      max_failures: int, keep_checkpoints: int, dirname_prefix: str):
    """Run every config once (FIFO, to its last epoch) as the Tune experiment storage_path/name, or
    continue that experiment where an earlier call was interrupted. Returns (ResultGrid, finished):
    finished is False when the run was interrupted before every trial ended."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    uri = f"{storage_path.rstrip('/')}/{name}"
    if tune.Tuner.can_restore(uri):
        print(f"continuing the interrupted run in {uri} (finished trials are not run again)", flush=True)
        tuner = tune.Tuner.restore(uri, trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=fixed_configs_searcher(configs),
                scheduler=FIFOScheduler(), num_samples=len(configs),
                trial_dirname_creator=dirname_creator(dirname_prefix)),
            run_config=tune.RunConfig(
                name=name, storage_path=storage_path,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=keep_checkpoints),
                sync_config=tune.SyncConfig(sync_artifacts=True),  # trial files -> trial directory
            ),
        )
    results = tuner.fit()
    return results, results.num_terminated + results.num_errors >= len(configs)


def print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
