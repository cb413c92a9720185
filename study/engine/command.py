"""The one skeleton of a command that runs trials on Ray (study.launch, study.replicate, study.reproduce,
and each stage of `--family both`): every check before Ray loads, then Ray, the run, Ctrl-C and the exit
status.

    run_command(checks, start)

`checks()` refuses bad input (one `error:` line, exit 2, nothing written) before anything heavy is
imported; `start(checked)` makes the `Command`: how its Ray comes up, the work on it, the line that says
how to continue after an interruption and the end-of-run printout. This module imports no Ray: a command
imports it at its top and is still refused bad input in about a second.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from models.config import ConfigError
from study import results as R
from study.data import DataNotFoundError
from study.engine.lock import StudyLockedError
from study.engine.spec import RaySettings

P = TypeVar("P")
T = TypeVar("T")

# bad input found before Ray starts: flags, files, MNIST, another launcher holding the study's lock
BAD_INPUT_ERRORS = (ConfigError, DataNotFoundError, StudyLockedError)
# what ray.init raises when its dashboard or another part cannot start (a port taken since our check)
RAY_START_ERRORS = (ValueError, RuntimeError, ConnectionError, TimeoutError)


@dataclass
class Command(Generic[T]):
    """A checked command, ready for Ray: `run()` is its work on the initialised Ray (None: interrupted),
    `finished(result)` prints its outcome and returns the exit status, `interrupted` says how to
    continue. The local Ray gets `num_cpus` (default ray.num_cpus) and a dashboard on `dashboard`
    (host, port) or none; `callbacks` are the experiment trackers' (console.configure); `on_ray(started)`
    runs once Ray is up (started: this command started or joined it); `release()` runs at the end,
    whatever happened (the study's lock, the machine's CPU claim)."""

    ray: RaySettings
    run: Callable[[], T | None]
    finished: Callable[[T], int]
    interrupted: str
    num_cpus: int | None = None
    dashboard: tuple[str, int] | None = None
    callbacks: list[Any] = field(default_factory=list)
    on_ray: Callable[[bool], None] | None = None
    release: Callable[[], None] | None = None


def refuse(message: object) -> int:
    """One `error:` line on stderr; the bad-input exit status."""
    print(f"error: {message}", file=sys.stderr)
    return R.EXIT_BAD_INPUT


def run_command(checks: Callable[[], P], start: Callable[[P], Command[T]]) -> int:
    """checks -> the command -> Ray -> its run -> Ctrl-C -> the exit status: 0 (or what `finished` says),
    R.EXIT_BAD_INPUT for bad input (found by the checks, or once Ray is up: resources no node has, a
    Ray that did not start), R.EXIT_INTERRUPTED after Ctrl-C or a run left unfinished."""
    try:
        checked = checks()
    except BAD_INPUT_ERRORS as exc:
        return refuse(exc)
    try:
        command = start(checked)
    except ConfigError as exc:  # found after the checks, before Ray (e.g. this machine's CPUs are taken)
        return refuse(exc)
    try:
        result = _on_ray(command)
    except ConfigError as exc:  # resources no node has, or a Ray that did not start: before any trial
        return refuse(exc)
    finally:
        if command.release is not None:
            command.release()
    if result is None:
        print(command.interrupted, file=sys.stderr)
        return R.EXIT_INTERRUPTED
    return command.finished(result)


def _on_ray(command: Command[T]) -> T | None:
    """The command's run on its Ray (started or joined here, shut down after if so); None after Ctrl-C.
    A Ray that does not start is a ConfigError of one line."""
    # Ray loads only now: bad input was refused without waiting for it (and Ray reads the loopback
    # switch, study/engine/preflight.py LOOPBACK_ENV, when it is imported)
    import ray  # (third-party: for the shutdown of a Ray that half started)

    from study.engine import cluster, console

    settings = command.ray
    console.configure(settings.verbose, command.callbacks)  # the compact console, unless --verbose
    num_cpus = settings.num_cpus if command.num_cpus is None else command.num_cpus
    try:
        with ExitStack() as stack:
            try:
                session = cluster.ray_session(settings.address, num_cpus, command.dashboard)
                started = stack.enter_context(session)
            except RAY_START_ERRORS as exc:
                ray.shutdown()  # whatever of the local Ray had started
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"Ray did not start: {first}") from None
            if command.on_ray is not None:
                command.on_ray(started)
            return command.run()
    except KeyboardInterrupt:
        return None
