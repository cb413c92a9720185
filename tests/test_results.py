import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study import results as R
from study.results import atomic_path, write_text_atomic


def test_atomic_writes_replace_whole_files_and_a_failed_write_changes_nothing(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    write_text_atomic(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the second")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no .tmp left behind



def test_non_dominated_keeps_the_front_and_drops_dominated_ties_and_non_finite_rows():
    points = np.array([[1.0, 5.0], [2.0, 2.0], [5.0, 1.0], [2.0, 3.0], [2.0, 2.0], [np.nan, 0.0],
                       [0.5, np.inf]])
    # [2, 3] is dominated by [2, 2]; the two equal [2, 2] rows dominate neither other; NaN/inf rows are off
    assert R.non_dominated(points).tolist() == [True, True, True, False, True, False, False]
    assert R.non_dominated(np.zeros((0, 3))).tolist() == []
    assert R.non_dominated([[3.0], [1.0], [2.0]]).tolist() == [False, True, False]


def test_the_selection_rule_ranks_finite_values_lowest_first_ties_in_row_order():
    trials = pd.DataFrame({R.TRIAL_ID: list("abcde"),
                           R.SELECTION_METRIC: [3.0, math.nan, 1.0, 1.0, math.inf]})
    assert list(R.ranked(trials)[R.TRIAL_ID]) == ["c", "d", "a"]
    assert R.best_trial(trials)[R.TRIAL_ID] == "c"
    assert R.best_trial(trials.iloc[[1, 4]]) is None


NOBODY = 65534


def test_a_path_below_a_directory_the_user_cannot_enter_is_unwritable_not_a_crash(tmp_path):
    """As another user (the suite runs as root, who may enter anything): /root-like 0700 parents."""
    import os
    import subprocess
    import sys

    if os.geteuid() != 0:
        pytest.skip("needs root to run a check as another user")
    closed = tmp_path / "closed"
    (closed / "inside").mkdir(parents=True)
    closed.chmod(0o700)
    for parent in (tmp_path, *tmp_path.parents):  # the other user reaches tmp_path, not closed/
        parent.chmod(parent.stat().st_mode | 0o005)
    code = ("import sys; from study.results import unwritable_reason; "
            f"print(unwritable_reason({str(closed / 'inside' / 'results')!r}))")
    done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
                           sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not reachable by this user" in done.stdout


def test_a_trials_search_seconds_leave_out_the_likelihood_computed_after_the_search(tmp_path):
    """write_likelihood puts the picked trials' likelihood and its seconds beside trial_seconds, not in
    it; a table written before (legacy nll_seconds, added to trial_seconds) reads the same through
    R.search_seconds, and a re-export keeps its seconds under the new name without adding them."""
    from study.engine.trial_tables import _keep_post_search
    from study.followups.picked_nll import write_likelihood
    from study.store import StudyStore

    store = StudyStore(tmp_path)
    trials = pd.DataFrame({R.TRIAL_ID: ["a", "b"], R.TRIAL_SECONDS: [10.0, 20.0]})
    written = write_likelihood(store, trials.copy(), {"b": {R.TEST_BINARIZED_NLL: 95.0, R.IW_K: 500,
                                                            R.IW_IMAGES: 500, R.LIKELIHOOD_SECONDS: 7.0}})
    assert written[R.TRIAL_SECONDS].tolist() == [10.0, 20.0]
    assert written[R.LIKELIHOOD_SECONDS].fillna(0).tolist() == [0.0, 7.0]
    assert R.search_seconds(written).tolist() == [10.0, 20.0]
    assert R.after_search_seconds(written).tolist() == [0.0, 7.0]

    legacy = pd.DataFrame({R.TRIAL_ID: ["a", "b"], R.TRIAL_SECONDS: [10.0, 27.0],
                           R.TEST_BINARIZED_NLL: [np.nan, 95.0], R.LEGACY_NLL_SECONDS: [np.nan, 7.0]})
    assert R.search_seconds(legacy).tolist() == [10.0, 20.0]
    assert R.after_search_seconds(legacy).tolist() == [0.0, 7.0]
    store.write_table(legacy, R.TRIALS_FILE)
    reexported = _keep_post_search(store, trials.copy())  # trial_seconds from the artifacts: the search's
    assert reexported[R.TRIAL_SECONDS].tolist() == [10.0, 20.0]
    assert reexported[R.LIKELIHOOD_SECONDS].fillna(0).tolist() == [0.0, 7.0]
    assert reexported[R.TEST_BINARIZED_NLL].tolist()[1] == 95.0
