"""The launcher's console: a compact live view of a running study instead of Ray's boxed tables.

    console.configure(verbose=False)          # once per launcher, before Ray starts
    ray.init(..., **console.ray_init_options())
    tune.RunConfig(..., **console.run_options())   # study/engine/cluster.py: run_config

Without --verbose, Ray's own reporter is silenced (`RunConfig(verbose=0)`: no config box per trial,
no status tables), its INFO logs (file packages pushed to the cluster, Tune's state snapshots) and
the workers' stdout stay in Ray's session logs (`ray.init(logging_level=WARNING, log_to_driver=False)`),
and `StudyConsole`, a Tune callback in the driver, shows one line per running trial and a progress
line ("5/8 trials done, 2 running, best validation FID so far 47.0 (trial trial_0003_ab12cd34)").
On a terminal it redraws those lines in place; without one (CI, nohup, a pipe) it prints a trial's
end as one line and the progress line every `PLAIN_INTERVAL_S` seconds when it changed.
Once the first epochs are timed, the progress line says how long the rest will take
("..., about 2 h 10 min left at the current pace"): the epochs still to run (the scheduler's expected
epochs per trial, `StudyShape`) times the seconds per epoch each running trial spent so far (training,
validation, checkpoints, a finished trial's test scoring: R.TRIAL_SECONDS), the mean trial's for
trials not timed yet, over the trial slots, and never less than the longest running trial's rest.
Before that, a study on CPUs uses the pace a timed probe of a few training steps gave
(study/launcher/pipeline.py), and says so.
With --verbose, Ray's output is as Ray prints it and this callback stays out of the way.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ray import tune

from study import results as R

PLAIN_INTERVAL_S = float(os.environ.get("STUDY_CONSOLE_INTERVAL_S", "30"))
TTY_INTERVAL_S = 1.0
# Tune's warning that checkpoints trigger experiment snapshots often: about Tune's own bookkeeping
QUIET_ENV = {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
             # Tune's older output engine: with verbose=0 it prints nothing; the newer one still prints an
             # "experiment configuration" box and a TensorBoard hint into Ray's session folder
             "RAY_AIR_NEW_OUTPUT": "0"}


@dataclass(frozen=True)
class StudyShape:
    """What the time-left estimate needs to know of a study besides its results."""

    expected_epochs: float  # epochs a trial runs on average under the scheduler (max epochs without one)
    slots: int  # trials at once
    prior_epoch_s: float | None = None  # seconds per trial-epoch from a timed probe, until epochs are timed


@dataclass
class ConsoleSettings:
    """What the launcher asked for: Ray's full output (verbose) and extra Tune callbacks (trackers)."""

    verbose: bool = True  # library callers (tests, notebooks) keep Ray's output unless configured
    extra_callbacks: list[Any] = field(default_factory=list)
    shape: StudyShape | None = None  # the next experiment's (run_study, run_replicates set it)


SETTINGS = ConsoleSettings()


def configure(verbose: bool, extra_callbacks: list[Any] | None = None) -> None:
    """Set the console of this process's Tune experiments (the launcher calls it once)."""
    SETTINGS.verbose = verbose
    SETTINGS.extra_callbacks = list(extra_callbacks or [])
    if not verbose:
        os.environ.update(QUIET_ENV)
        import optuna  # only here: the searcher's "A new study created in RDB" INFO line

        optuna.logging.set_verbosity(optuna.logging.WARNING)


def ray_init_options() -> dict[str, Any]:
    """ray.init keywords: Ray's INFO logs and the workers' stdout off the console unless verbose."""
    if SETTINGS.verbose:
        return {}
    return {"log_to_driver": False, "logging_level": logging.WARNING}


def run_options() -> dict[str, Any]:
    """tune.RunConfig keywords: the study console (or Ray's reporter when verbose) and trackers."""
    callbacks = list(SETTINGS.extra_callbacks)
    if SETTINGS.verbose:
        return {"callbacks": callbacks} if callbacks else {}
    return {"verbose": 0, "callbacks": [StudyConsole(shape=SETTINGS.shape), *callbacks]}


def expect(shape: StudyShape | None) -> None:
    """The shape of the next experiment this process starts (its console's time-left estimate)."""
    SETTINGS.shape = shape


def duration(seconds: float) -> str:
    """'40 s', '12 min', '2 h 10 min', '3 d 4 h': two units at most, as a person says it."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def trial_label(trial) -> str:
    """The trial's directory name (trial_0001_<id>), else its Tune id."""
    path = getattr(trial, "path", None)
    return posixpath.basename(path.rstrip("/")) if path else str(trial.trial_id)


def _fid(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) and math.isfinite(value) else "-"


def _lr(config: dict[str, Any]) -> str:
    lr = config.get("lr", config.get("lr_g"))
    return f"lr {lr:.2g}" if isinstance(lr, int | float) else ""


class StudyConsole(tune.Callback):
    """One line per running trial plus a progress line; see the module docstring."""

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None,
                 interval_s: float | None = None, shape: StudyShape | None = None):
        self._stream = stream  # None: whatever sys.stdout is when a line is written
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.interval_s = interval_s if interval_s is not None else (
            TTY_INTERVAL_S if self.interactive else PLAIN_INTERVAL_S)
        self.total = 0
        self.done = 0
        self.errored = 0
        self.running: dict[str, Any] = {}  # label -> trial
        self.latest: dict[str, dict[str, Any]] = {}  # label -> last result
        self.best: tuple[float, str] | None = None
        self.shape = shape
        self.spent: dict[str, tuple[int, float]] = {}  # label -> (epochs, trial seconds) reported so far
        self.started: dict[str, float] = {}  # label -> time.monotonic() at its start
        self._drawn = 0  # lines of the live view on screen (terminal)
        self._last_time = 0.0
        self._last_text = ""

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks into the experiment (tuner.pkl); a stream does not pickle, so a
        restored console writes to the restoring process's sys.stdout."""
        return {**self.__dict__, "_stream": None}

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self.total = int(total_num_samples or num_samples or 0)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running[trial_label(trial)] = trial
        self.started.setdefault(trial_label(trial), time.monotonic())

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        label = trial_label(trial)
        self.latest[label] = result
        epoch, seconds = result.get(R.EPOCH), result.get(R.TRIAL_SECONDS)
        if isinstance(epoch, int | float) and isinstance(seconds, int | float) and math.isfinite(seconds):
            self.spent[label] = (int(epoch), float(seconds))
        fid = result.get(R.VAL_FID)
        if isinstance(fid, int | float) and math.isfinite(fid) and (self.best is None or fid < self.best[0]):
            self.best = (float(fid), label)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.errored += 1
        self._ended(trial, f"failed (error: {trial.error_file or 'see Ray logs'})")

    def on_step_end(self, iteration, trials, **info) -> None:
        self.refresh()

    def on_experiment_end(self, trials, **info) -> None:
        self.refresh(force=True)
        if self.interactive and self._drawn:
            self._drawn = 0  # leave the last view on screen

    def _ended(self, trial, how: str) -> None:
        label = trial_label(trial)
        self.running.pop(label, None)
        self.done += 1
        result = self.latest.get(label) or trial.last_result or {}
        line = (f"{label} {how}: {result.get(R.EPOCH, 0)} epoch(s), "
                f"validation FID {_fid(result.get(R.VAL_FID))}")
        if self.interactive:
            self._erase()
        self.stream.write(line + "\n")
        self.stream.flush()
        self._last_text = ""  # the next refresh prints the progress line again

    def trial_line(self, label: str) -> str:
        trial = self.running[label]
        result = self.latest.get(label, {})
        config = getattr(trial, "config", {}) or {}
        parts = [f"  {label}", f"epoch {result.get(R.EPOCH, 0)}/{config.get('epochs', '?')}",
                 f"val FID {_fid(result.get(R.VAL_FID))}", str(config.get("arch", "")),
                 f"batch {config.get('batch_size', '?')}", _lr(config)]
        return "  ".join(p for p in parts if p)

    def progress_line(self) -> str:
        text = f"{self.done}/{self.total} trials done, {len(self.running)} running"
        if self.errored:
            text += f", {self.errored} failed"
        if self.best is not None:
            text += f", best validation FID so far {self.best[0]:.1f} (trial {self.best[1]})"
        if (left := self.time_left()) is not None:
            text += f", {left}"
        return text

    def time_left(self) -> str | None:
        """'about 2 h 10 min left at the current pace' (see the module docstring), or None before
        anything is timed."""
        if self.shape is None or self.total == 0:
            return None
        paces = {label: s / e for label, (e, s) in self.spent.items() if e > 0}
        if paces:  # a trial's own pace for its own epochs; the mean trial's for trials not timed yet
            pace, how = sum(paces.values()) / len(paces), "at the current pace"
        elif self.shape.prior_epoch_s is not None:
            pace, how = self.shape.prior_epoch_s, "at a probe's pace (training only)"
        else:
            return None
        # a running trial still in its first epoch takes at least as long as it has run (a slow
        # DCGAN beside fast MLPs), and counts so in the mean trial's pace
        now = time.monotonic()
        for label in self.running:
            if label not in paces and label in self.started and now - self.started[label] > pace:
                paces[label] = now - self.started[label]
        if paces:
            pace = sum(paces.values()) / len(paces)
        expected = self.shape.expected_epochs
        running = [max(0.0, expected - self.spent.get(label, (0, 0.0))[0]) * paces.get(label, pace)
                   for label in self.running]
        waiting = max(0, self.total - self.done - len(self.running)) * expected * pace
        if not any(running) and waiting == 0:
            return None  # the experiment's end: nothing left to estimate
        slots = max(1, min(self.shape.slots, self.total - self.done or 1))
        left = max([*running, (sum(running) + waiting) / slots])  # no sooner than the longest running trial
        return f"about {duration(left)} left {how}"

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_time < self.interval_s:
            return
        lines = [self.progress_line()]
        if self.interactive:
            lines += [self.trial_line(label) for label in self.running]
        text = "\n".join(lines)
        if text == self._last_text and not self.interactive:
            return
        self._last_time, self._last_text = now, text
        if self.interactive:
            self._erase()
            self._drawn = len(lines)
        self.stream.write(text + "\n")
        self.stream.flush()

    def _erase(self) -> None:
        """Move up over the live view and clear it (ANSI: cursor previous line, erase to end)."""
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0


def hints(study_dir: str, local: bool) -> list[str]:
    """Where a person looks while the study runs (the Ray dashboard line is printed by start_ray)."""
    if not local:
        return [f"results: {study_dir} (TensorBoard: tensorboard --logdir {study_dir})"]
    return [f"TensorBoard:      tensorboard --logdir {study_dir}",
            f"Optuna dashboard: optuna-dashboard sqlite:///{study_dir}/{R.OPTUNA_DB}  "
            "(pip install optuna-dashboard)"]
