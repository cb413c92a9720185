"""Scoring after the search in long-lived workers: the test metrics (and the stop epoch's validation
suite) of the trials the scheduler stopped, and the costly likelihood of the trials a report picks.

One `ScoringWorker` per trial slot, with a trial's resources, each holding the data and evaluation
assets once: a worker scores one checkpoint after another instead of a fresh process (and, on a GPU,
a fresh CUDA context) per trial. Between two checkpoints it drops every reference to the model it
scored and calls study.loop.trial.release_memory (gc, then the CUDA caching allocator's cached
blocks), so a GPU's memory goes back between trials; the workers are killed when the step ends.
On a CPU the tests check what can be checked there: after a task, no reference to its model is left
(tests/test_launch.py, `test_scoring_worker_keeps_no_model_between_trials`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import ray
import torch

from models.checkpoint import load_model
from study import results as R
from study.engine.trainable import TrialSetup, evaluate_stopped_trial, trial_device
from study.loop.trial import release_memory
from study.repeat import pinned_threads
from study.store import StudyStore


class ScoringWorker:
    """Scores checkpoints one after another with one copy of the setup (a Ray actor in a pool)."""

    def __init__(self, setup: TrialSetup):
        self.setup = setup
        self.device = trial_device()
        torch.set_num_threads(max(1, setup.threads))
        self.last_model: weakref.ref | None = None  # the model of the last task (dead once it returned)

    def stopped(self, checkpoint) -> dict[str, Any]:
        """A stopped trial's summary row from its last Tune checkpoint (trainable.stopped_trial_summary)."""
        row = evaluate_stopped_trial(checkpoint, self.setup, on_model=self._watch)
        release_memory(self.device)
        return row

    def likelihood(self, store: StudyStore, checkpoint: str) -> dict[str, Any]:
        """The likelihood columns (with R.LIKELIHOOD_SECONDS) of the model in `checkpoint` (relative to the
        study directory `store`, as trials.parquet's CHECKPOINT column)."""
        row = self._likelihood(store, checkpoint)
        release_memory(self.device)
        return row

    def _likelihood(self, store: StudyStore, checkpoint: str) -> dict[str, Any]:
        started = time.perf_counter()
        path = store.path(checkpoint)
        config, model, _ = load_model(path, data=store.read_bytes(path))
        model = model.to(self.device)
        self._watch(model)
        assets = self.setup.assets
        if assets is None:
            return {}
        evaluator = assets.evaluator(config, self.setup.data, self.device)
        if evaluator is None:
            return {}
        with pinned_threads(self.device):  # as the trials' own test metrics (study/repeat.py)
            row = evaluator.likelihood(model)
        row[R.LIKELIHOOD_SECONDS] = time.perf_counter() - started
        return row

    def _watch(self, model) -> None:
        self.last_model = weakref.ref(model)

    def holds_model(self) -> bool:
        """Whether the last task's model is still reachable (it never should be once a task returned)."""
        return self.last_model is not None and self.last_model() is not None


PLACE_TIMEOUT_S = 60.0  # how long a pool's further workers may take to start before the pool does without


def placed_actors(actors: list, timeout_s: float = PLACE_TIMEOUT_S) -> list:
    """The actors that started: the first however long it takes, the rest within `timeout_s` of it;
    the others are killed. An actor the cluster cannot place (a node lost since the slots were
    counted) would take its share of an ActorPool's tasks and never run them: the pool waited for
    ever (seen in the node-removal fault test)."""
    pings = {actor.holds_model.remote(): actor for actor in actors}
    ready, pending = ray.wait(list(pings), num_returns=1)
    if pending:
        more, pending = ray.wait(pending, num_returns=len(pending), timeout=timeout_s)
        ready += more
    for ref in pending:
        ray.kill(pings[ref])
    return [pings[ref] for ref in ready]


@contextmanager
def scoring_pool(setup: TrialSetup, workers: int, cpus: float, gpus: float,
                 place_timeout_s: float = PLACE_TIMEOUT_S) -> Iterator[Callable]:
    """`map(method, [args, ...])` over up to `workers` ScoringWorker actors (each with a trial's
    resources; those the cluster does not start within `place_timeout_s` are left out), results in
    the order of the arguments; the actors are killed when the block ends."""
    options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus}
    actor_class: Any = ray.remote(**options)(ScoringWorker)
    setup_ref = ray.put(setup)
    actors = placed_actors([actor_class.remote(setup_ref) for _ in range(max(1, workers))], place_timeout_s)

    def run(method: str, calls: Sequence[tuple]) -> list[Any]:
        from ray.util import ActorPool

        pool = ActorPool(actors)
        return list(pool.map(lambda actor, args: getattr(actor, method).remote(*args), list(calls)))

    try:
        yield run
    finally:
        for actor in actors:
            ray.kill(actor)  # its process, and on a GPU its CUDA context, end here
