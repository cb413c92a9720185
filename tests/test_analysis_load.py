"""Loading study directories into tidy frames (analysis/load.py) from the really-trained fixture studies."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from analysis.load import (
    StudyLoadError,
    epoch_curves,
    final_checkpoint,
    load_studies,
    load_study,
    trial_path,
)
from study import results as R


def test_both_studies_load_into_tidy_frames_with_config_and_family(tiny_study_dirs):
    studies = load_studies([tiny_study_dirs.gan, tiny_study_dirs.vae])
    trials, history = studies.trials, studies.history
    assert studies.paths == (tiny_study_dirs.gan.resolve(), tiny_study_dirs.vae.resolve())
    assert trials.groupby(R.FAMILY).size().to_dict() == {"gan": 5, "vae": 5}
    assert trials.groupby(R.FAMILY)[R.STOP_REASON].apply(sorted).to_dict() == {
        "gan": [R.STOP_COMPLETED] * 3 + [R.STOP_EARLY, R.STOP_ERROR],
        "vae": [R.STOP_COMPLETED] * 3 + [R.STOP_DIVERGED, R.STOP_EARLY]}
    assert trials[R.TEST_INCEPTION_FID].isna().all()  # not written by the study: added as NaN
    assert trials[R.CONFIG_JSON].notna().all() and trials[R.hp_column("latent_dim")].notna().all()
    # every history row carries its trial's configuration
    merged = history.merge(trials[[R.STUDY, R.TRIAL_ID, R.hp_column("latent_dim"), R.CONFIG_JSON]],
                           on=[R.STUDY, R.TRIAL_ID], suffixes=("", "_trial"))
    assert len(merged) == len(history) > 0
    assert (merged[R.hp_column("latent_dim")] == merged[R.hp_column("latent_dim") + "_trial"]).all()
    assert (merged[R.CONFIG_JSON] == merged[R.CONFIG_JSON + "_trial"]).all()
    assert history[R.FAMILY].notna().all() and history[R.PARAMS_TOTAL].notna().any()
    # a trial's artifacts resolve from its row
    row = trials[trials[R.STOP_REASON] == R.STOP_COMPLETED].iloc[0]
    assert (trial_path(row) / R.CHECKPOINTS_DIR / R.FINAL_CHECKPOINT).is_file()


def test_epoch_curves_end_where_each_trial_stopped(tiny_study_dirs):
    studies = load_studies([tiny_study_dirs.gan, tiny_study_dirs.vae])
    curves = epoch_curves(studies.trials, studies.history)
    ends = curves.groupby(R.TRIAL_ID).tail(1).set_index(R.TRIAL_ID)
    # no FID: error, diverged
    assert sorted(ends.index) == ["gan_00000", "gan_00001", "gan_00002", "gan_00003",
                                  "vae_00000", "vae_00001", "vae_00002", "vae_00003"]
    assert (ends[R.EPOCH] == ends[R.EPOCHS_RUN]).all()
    # stopped after epoch 1 of 3
    assert ends.loc["gan_00002", [R.EPOCH, R.STOP_REASON]].tolist() == [1, R.STOP_EARLY]
    assert ends.loc["vae_00002", [R.EPOCH, R.STOP_REASON]].tolist() == [2, R.STOP_EARLY]
    assert np.isfinite(curves[R.VAL_FID]).all()


def test_missing_directory_and_missing_trials_file_are_clear_errors(tmp_path):
    with pytest.raises(StudyLoadError, match=r"does not exist.*results/<name>/"):
        load_study(tmp_path / "nope")
    with pytest.raises(StudyLoadError, match=r"holds no trials.parquet.*--resume"):
        load_study(tmp_path)
    with pytest.raises(StudyLoadError, match="at least one"):
        load_studies([])


def test_foreign_or_damaged_files_are_refused(tmp_path):
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / R.TRIALS_FILE)
    with pytest.raises(StudyLoadError, match=r"lacks the columns \['trial_id', 'family'"):
        load_study(tmp_path)
    (tmp_path / R.TRIALS_FILE).write_text("not parquet")
    with pytest.raises(StudyLoadError, match="cannot read"):
        load_study(tmp_path)


def test_the_same_study_twice_and_mixed_feature_networks_are_refused(tiny_study_dirs, tmp_path):
    with pytest.raises(StudyLoadError, match="more than once"):
        load_studies([tiny_study_dirs.gan, tiny_study_dirs.gan])
    other = tmp_path / "other-vae"
    shutil.copytree(tiny_study_dirs.vae, other)
    trials = pd.read_parquet(other / R.TRIALS_FILE)
    trials[R.FEATURENET_SHA256] = "0123456789abcdef" * 4
    trials[R.STUDY] = "other-vae"
    trials.to_parquet(other / R.TRIALS_FILE)
    with pytest.raises(StudyLoadError, match="2 different feature networks"):
        load_studies([tiny_study_dirs.gan, other])


def test_final_checkpoint_prefers_final_pt_else_the_latest_epoch_anywhere_in_the_trial(
        tiny_study_dirs, tmp_path):
    trials = load_study(tiny_study_dirs.vae).trials
    row = trials.set_index(R.TRIAL_ID).loc["vae_00001"].copy()
    assert final_checkpoint(row) == trial_path(row) / R.CHECKPOINTS_DIR / R.FINAL_CHECKPOINT
    # a Ray trial directory: no checkpoints/final.pt, one epoch file per checkpoint_NNNNNN/ folder
    ray_trial = tmp_path / "trial_0001"
    for folder, epoch in (("checkpoint_000000", 1), ("checkpoint_000001", 2)):
        (ray_trial / folder).mkdir(parents=True)
        shutil.copyfile(trial_path(row) / R.CHECKPOINTS_DIR / R.checkpoint_name(epoch),
                        ray_trial / folder / R.checkpoint_name(epoch))
    row[R.STUDY_PATH], row[R.TRIAL_DIR] = str(tmp_path), "trial_0001"
    assert final_checkpoint(row) == ray_trial / "checkpoint_000001" / R.checkpoint_name(2)
    row[R.TRIAL_DIR] = None
    assert final_checkpoint(row) is None
