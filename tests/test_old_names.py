"""A study started before the engine's rename (issue 27.5: study/tune -> study/engine) still resumes: Ray
pickled its searcher, scheduler, callbacks and trial-directory namer by module path (study.tune.*) into
tuner.pkl and the searcher state, which Tuner.restore unpickles. study.engine.old_names maps those names
to the modules they became. The fixtures are a real study's pickles, written by the code before the
rename (a VAE chunk of the lab's table, random sampler, 2 trials; Ray 2.60)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

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


def test_a_study_pickled_under_the_old_names_unpickles_into_the_engine():
    run = subprocess.run([sys.executable, "-c", UNPICKLE, str(OLD_STUDY)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines == ["without the old names: study.tune",
                     "searcher: study.engine.recovery True",
                     "callbacks: study.engine.console",
                     "namer: study.tune.cluster",  # a closure: pickled by value, its old module a string
                     "space: search_spaces.vae",
                     "spec kept: study.engine.recovery True"], run.stdout
