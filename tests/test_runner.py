"""One runner, one command wrapper, one study-directory object (issue 27, items 2 and 3).

The structure is read from the source (as tests/test_imports.py reads the import graph): only the runner
(study/engine/runner.py) builds a Ray Tune run, only the export reads a finished experiment, no stage of a
command runs as a subprocess, and a study directory becomes a StudyStore at the edges only. The store's
layout and the command wrapper's exit statuses are checked by running them (no Ray, except the one
slow test of Ctrl-C on a real local Ray).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest

from models.config import ConfigError
from study import results as R
from study.data import DataNotFoundError
from study.engine.command import Command, run_command
from study.engine.spec import RaySettings
from study.store import StudyStore
from tests.conftest import REPO_ROOT

SCANNED = ("study", "benchmarks")


def _call_names(func: ast.expr) -> set[str]:
    """What a call's function is called: `f` for f(...), `f` and `X.f` for ....X.f(...)."""
    if isinstance(func, ast.Name):
        return {func.id}
    if not isinstance(func, ast.Attribute):
        return set()
    owner = func.value
    owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
    return {func.attr} | ({f"{owner_name}.{func.attr}"} if owner_name else set())


def calls_named(names: set[str]) -> dict[str, list[str]]:
    """Project file -> the calls in it whose function is one of `names` (`f(...)`, `x.f(...)`, `X.f`)."""
    found: dict[str, list[str]] = {}
    for package in SCANNED:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.Call):
                    continue
                for name in sorted(_call_names(node.func) & names):
                    found.setdefault(path.relative_to(REPO_ROOT).as_posix(), []).append(
                        f"{name}:{node.lineno}")
    return found


def test_only_the_runner_builds_a_ray_run_and_only_the_export_reads_one():
    """The search, the replicates, the reproduction and the lab's replicates all go through run_trials:
    nothing else makes a Tuner, restores one or gives a trainable its resources."""
    builders = calls_named({"Tuner", "Tuner.restore", "with_resources", "can_restore"})
    assert set(builders) == {"study/engine/runner.py", "study/engine/trial_tables.py",
                             "study/launcher/launch_plan.py", "study/launcher/both.py"}, builders
    # elsewhere only the question whether a run can be continued (--resume, --family both, study.export)
    assert {c.split(":")[0] for f, calls in builders.items() if f != "study/engine/runner.py"
            for c in calls} == {"can_restore"}
    assert {c.split(":")[0] for c in builders["study/engine/runner.py"]} == {
        "Tuner", "Tuner.restore", "with_resources", "can_restore"}
    readers = calls_named({"ExperimentAnalysis"})
    assert readers == {"study/engine/trial_tables.py": [readers["study/engine/trial_tables.py"][0]]}


def test_no_stage_of_a_command_runs_as_a_subprocess():
    """`--family both` calls its stages (the studies, the replicates, the report) in this process, where
    the import graph and the layer test see them, instead of starting `python -m ...`."""
    starters = calls_named({"call", "run", "Popen", "check_call", "check_output"})
    spawning = {file: calls for file, calls in starters.items() if file.startswith("study/")
                and "subprocess" in (REPO_ROOT / file).read_text()}
    assert not spawning, spawning
    assert not [p for p in (REPO_ROOT / "study").rglob("*.py") if "sys.executable" in p.read_text()]


# where a study directory may become a StudyStore: the store itself (a child directory), the specs (once
# per spec), and the edges where a directory arrives as a name or path (a command's argument, --resume's
# name, the comparison's two studies, a replicated study, a table's path, a lab folder)
WRAPPERS = {"study/store.py", "study/engine/spec.py", "study/engine/plan.py", "study/export.py",
            "study/launcher/both.py", "study/followups/replicate_plan.py", "study/metrics/inception.py",
            "benchmarks/lab_replicates.py"}


def test_a_study_directory_becomes_a_store_at_the_edges_only():
    made = calls_named({"StudyStore"})
    assert set(made) <= WRAPPERS, {f: c for f, c in made.items() if f not in WRAPPERS}
    assert sum(len(c) for f, c in made.items() if f.startswith("study/")) <= 8


def test_the_store_owns_the_layout_and_the_one_table_writer(tmp_path):
    store = StudyStore(tmp_path / "s")
    assert StudyStore.of(store) is store and StudyStore.of(str(tmp_path / "s")) == store
    assert str(store) == str(tmp_path / "s")
    layout = {store.study_json: R.STUDY_JSON, store.trials_file: R.TRIALS_FILE,
              store.history_file: R.HISTORY_FILE, store.replicates_file: R.REPLICATES_FILE,
              store.optuna_db: R.OPTUNA_DB,
              store.best_samples: R.BEST_SAMPLES_FILE, store.ray_session: R.RAY_SESSION_JSON,
              store.replicates_spec: f"{R.REPLICATES_DIR}/{R.REPLICATES_SPEC}"}
    assert {Path(p).relative_to(store.root).as_posix(): n for p, n in layout.items()} == {n: n for n in
                                                                                          layout.values()}
    assert store.replicates == StudyStore(tmp_path / "s" / R.REPLICATES_DIR)
    frame = pd.DataFrame({R.TRIAL_ID: ["a", "b"], R.FINAL_VAL_FID: [1.5, float("nan")]})
    store.write_table(frame, R.TRIALS_FILE)
    assert store.has(R.TRIALS_FILE) and not store.has(R.HISTORY_FILE)
    pd.testing.assert_frame_equal(store.read_table(R.TRIALS_FILE), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(store.trials_file), frame)  # an ordinary parquet file
    with pytest.raises(ValueError):  # a table that cannot be written leaves no file, not half of one
        store.write_table(pd.DataFrame({"x": [1, "a", object()]}), R.HISTORY_FILE)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [R.TRIALS_FILE]
    store.write_text(R.STUDY_JSON, '{"a": 1}')
    assert store.read_text(R.STUDY_JSON) == '{"a": 1}'


@pytest.mark.parametrize("error", [ConfigError("--trials 0: give at least 1."),
                                   DataNotFoundError("MNIST was not found under /nowhere")])
def test_the_command_wrapper_refuses_bad_input_in_one_line_before_anything_starts(error, capsys):
    started = []

    def checks():
        raise error

    assert run_command(checks, started.append) == R.EXIT_BAD_INPUT
    assert started == []
    assert capsys.readouterr().err == f"error: {error}\n"


def test_the_command_wrapper_refuses_what_its_start_finds_and_releases_nothing_it_did_not_take(capsys):
    """A ConfigError found after the checks, before Ray (this machine's CPUs taken): one line, exit 2."""
    def start(checked):
        assert checked == "checked"
        raise ConfigError("no CPUs left on this machine")

    assert run_command(lambda: "checked", start) == R.EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: no CPUs left on this machine\n"


@pytest.mark.slow
def test_ctrl_c_in_a_commands_run_is_the_interrupted_status_with_the_line_to_continue(capsys):
    """On a real local Ray: Ctrl-C during the run ends the command with R.EXIT_INTERRUPTED and the line
    that says how to continue, releases what the command holds and shuts the Ray it started down."""
    import ray

    events = []

    def run():
        events.append(("ray up", ray.is_initialized(), ray.cluster_resources().get("CPU")))
        raise KeyboardInterrupt

    command = Command(ray=RaySettings(num_cpus=1), run=run, finished=lambda _: 0,
                      interrupted="continue it with: python -m study.replicate DIR",
                      on_ray=lambda started: events.append(("started", started)),
                      release=lambda: events.append(("released", ray.is_initialized())))
    assert run_command(lambda: None, lambda _: command) == R.EXIT_INTERRUPTED
    assert events == [("started", True), ("ray up", True, 1.0), ("released", False)]
    assert not ray.is_initialized()
    err = capsys.readouterr().err
    assert re.search(r"^continue it with: python -m study\.replicate DIR$", err, re.MULTILINE), err
