"""A study started before the engine's rename (issue 27.5: study/tune -> study/engine) still resumes: Ray
pickled its searcher, scheduler, callbacks and trial-directory namer by module path (study.tune.*) into
tuner.pkl and the searcher state, which Tuner.restore unpickles. study.engine.old_names maps those names
to the modules they became. The fixtures are a real study's pickles, written by the code before the
rename (a VAE chunk of the lab's table, random sampler, 2 trials; Ray 2.60)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from study import results as R
from tests.conftest import REPO_ROOT
from tests.test_launch import check_optuna_db, check_study, launch_args, run_launcher

OLD_STUDY = REPO_ROOT / "tests" / "fixtures" / "study-tune-era"

# In a subprocess: its imports start clean, and a development install's finder (an editable install of
# another checkout that still has study/tune/) cannot answer the old names in the finder's place.
UNPICKLE = """
import pickle, sys
from pathlib import Path
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
folder = Path(sys.argv[1])
tuner, searcher = folder / "tuner.pkl", next(folder.glob("searcher-state-*.pkl"))
try:
    pickle.loads(tuner.read_bytes())
except ModuleNotFoundError as exc:
    print("without the old names:", exc.name)
import study.engine.recovery
state = pickle.loads(tuner.read_bytes())
search = state["_tune_config"].search_alg
print("searcher:", type(search).__module__, type(search) is study.engine.recovery.ResumableOptunaSearch)
print("callbacks:", *sorted(type(c).__module__ for c in state["_run_config"].callbacks))
print("namer:", state["_tune_config"].trial_dirname_creator.__module__)
print("space:", pickle.loads(searcher.read_bytes())["_space"].func.__module__)
recovery = study.engine.recovery
print("spec kept:", recovery.__spec__.name, sys.modules["study.tune.recovery"] is recovery)
"""


def _old_storage_folder() -> Path:
    """The folder of the optuna.db the fixture's searcher pickle names (an absolute path on the machine
    that made it): unpickling the searcher opens that SQLite storage, which needs its folder."""
    found = re.search(rb"sqlite:///(/[^\s\x00]+?)/optuna\.db", (OLD_STUDY / "tuner.pkl").read_bytes())
    assert found, "the fixture's tuner.pkl names no SQLite optuna.db"
    return Path(found.group(1).decode())


def test_a_study_pickled_under_the_old_names_unpickles_into_the_engine():
    folder = _old_storage_folder()
    made = next((p for p in reversed([folder, *folder.parents]) if not p.exists()), None)
    folder.mkdir(parents=True, exist_ok=True)  # a fresh machine lacks it (it passed where it was left)
    try:
        run = subprocess.run([sys.executable, "-c", UNPICKLE, str(OLD_STUDY)], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=300)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines == ["without the old names: study.tune",
                     "searcher: study.engine.recovery True",
                     "callbacks: study.engine.console",
                     "namer: study.tune.cluster",  # a closure: pickled by value, its old module a string
                     "space: search_spaces.vae",
                     "spec kept: study.engine.recovery True"], run.stdout


# A smoke VAE study (4 trials, one at a time) started by the code before the rename (commit 458eb6a^)
# under --storage-path /tmp/ganvae-old-layout and interrupted with Ctrl-C after its first trial finished:
# its trial directories, checkpoints, optuna.db, Ray experiment state and pickles as that code wrote
# them (TensorBoard files left out). Ray's saved state holds absolute paths, and a study moved to another
# path does not resume (new trials would be written to the old one), so it is unpacked where it was made.
OLD_LAYOUT_STUDY = REPO_ROOT / "tests" / "fixtures" / "old-layout-study.tar.gz"
OLD_LAYOUT_STORAGE = Path("/tmp/ganvae-old-layout")
OLD_LAYOUT_NAME, OLD_LAYOUT_FINISHED = "old-layout", "trial_0001_369f2f66"


@pytest.mark.slow
def test_a_smoke_study_interrupted_under_the_old_layout_resumes_to_its_end(data_dir):
    shutil.rmtree(OLD_LAYOUT_STORAGE, ignore_errors=True)
    try:
        with tarfile.open(OLD_LAYOUT_STUDY) as archive:
            archive.extractall(OLD_LAYOUT_STORAGE, filter="data")
        study_dir = OLD_LAYOUT_STORAGE / OLD_LAYOUT_NAME
        assert b"study.tune" in (study_dir / "tuner.pkl").read_bytes()  # pickled under the old names
        spec = json.loads((study_dir / R.STUDY_JSON).read_text())
        spec["data_dir"] = str(data_dir)  # made on another machine: MNIST is where this one keeps it
        (study_dir / R.STUDY_JSON).write_text(json.dumps(spec))
        finished = (study_dir / OLD_LAYOUT_FINISHED / R.SUMMARY_JSON).read_bytes()
        assert not (study_dir / R.TRIALS_FILE).exists()

        rc, out = run_launcher(launch_args(data_dir, OLD_LAYOUT_STORAGE, OLD_LAYOUT_NAME, "--family", "vae",
                                           "--resume", num_cpus=1))
        assert rc == 0, out[-3000:]
        table = check_study(study_dir, "vae", trials=4, min_stopped=0)
        assert (study_dir / OLD_LAYOUT_FINISHED / R.SUMMARY_JSON).read_bytes() == finished  # not run again
        assert len(list(study_dir.glob("trial_*"))) == 4
        check_optuna_db(study_dir, table)  # the same Optuna study, continued: 4 trials, none twice
    finally:
        shutil.rmtree(OLD_LAYOUT_STORAGE, ignore_errors=True)
