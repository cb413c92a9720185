"""Fixed-configuration runs (study.replicate, study.reproduce): no search, no scheduler.

A list of complete trial configs, each run to its last epoch by the study trainable
(study/engine/trainable.py) under Tune's FIFO scheduler: the searcher that suggests them and the
TuneConfig; the one runner (study/engine/runner.py FixedTrials) runs them, with retries from checkpoints
and Tune's experiment state, so a second invocation restores an interrupted run instead of starting again.
"""

from __future__ import annotations

import pickle
from typing import Any

from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import Searcher

from study.engine.cluster import dirname_creator


def fixed_configs_searcher(configs: list[dict[str, Any]]):
    """A Tune searcher that suggests `configs` once each, in order; its position is saved with the
    experiment, so a restored run never suggests a config twice. (Tune's points_to_evaluate need a
    param_space holding every key, which GAN and VAE configs do not share.)"""
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


def fixed_tune_config(configs: list[dict[str, Any]], slots: int, dirname_prefix: str) -> tune.TuneConfig:
    """FIFO over `configs`, `slots` trials at once, each slot keeping its worker (reuse_actors, as
    study/engine/study_run.py: no process start, torch import and actor set-up per trial)."""
    return tune.TuneConfig(search_alg=fixed_configs_searcher(configs), scheduler=FIFOScheduler(),
                           num_samples=len(configs), trial_dirname_creator=dirname_creator(dirname_prefix),
                           reuse_actors=True, max_concurrent_trials=slots)
