"""Loading study directories into tidy frames (analysis/load.py) from the really-trained fixture studies."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from analysis import columns as C
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
        "vae": [R.STOP_COMPLETED] * 3 + [R.STOP_DIVERGED, R.STOP_EARLY],
    }
    assert trials[R.TEST_INCEPTION_FID].isna().all()  # not written by the study: added as NaN
    assert trials[R.CONFIG_JSON].notna().all() and trials[R.hp_column("latent_dim")].notna().all()
    # every history row carries its trial's configuration
    merged = history.merge(
        trials[[R.STUDY, R.TRIAL_ID, R.hp_column("latent_dim"), R.CONFIG_JSON]],
        on=[R.STUDY, R.TRIAL_ID],
        suffixes=("", "_trial"),
    )
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
    assert sorted(ends.index) == [
        "gan_00000",
        "gan_00001",
        "gan_00002",
        "gan_00003",
        "vae_00000",
        "vae_00001",
        "vae_00002",
        "vae_00003",
    ]
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
    tiny_study_dirs, tmp_path
):
    trials = load_study(tiny_study_dirs.vae).trials
    row = trials.set_index(R.TRIAL_ID).loc["vae_00001"].copy()
    assert final_checkpoint(row) == trial_path(row) / R.CHECKPOINTS_DIR / R.FINAL_CHECKPOINT
    # a Ray trial directory: no checkpoints/final.pt, one epoch file per checkpoint_NNNNNN/ folder
    ray_trial = tmp_path / "trial_0001"
    for folder, epoch in (("checkpoint_000000", 1), ("checkpoint_000001", 2)):
        (ray_trial / folder).mkdir(parents=True)
        shutil.copyfile(
            trial_path(row) / R.CHECKPOINTS_DIR / R.checkpoint_name(epoch),
            ray_trial / folder / R.checkpoint_name(epoch),
        )
    row[C.STUDY_PATH], row[R.TRIAL_DIR] = str(tmp_path), "trial_0001"
    assert final_checkpoint(row) == ray_trial / "checkpoint_000001" / R.checkpoint_name(2)
    row[R.TRIAL_DIR] = None
    assert final_checkpoint(row) is None


def copy_study(src, root, name, **changes):
    """A copy of a study directory under a new name, its rows renamed (and `changes` applied)."""
    dst = root / name
    shutil.copytree(src, dst)
    for file in (R.TRIALS_FILE, R.HISTORY_FILE):
        frame = pd.read_parquet(dst / file)
        frame[R.STUDY] = name
        for column, value in changes.items():
            if file == R.TRIALS_FILE:
                frame[column] = value
        frame.to_parquet(dst / file)
    return dst


def test_studies_under_different_protocols_are_refused_unless_allowed(tiny_study_dirs, tmp_path):
    # study.json (the launcher's settings) says 1,000 samples per FID and 8 epochs; the GAN study 400 and 3
    other = copy_study(tiny_study_dirs.vae, tmp_path, "other-vae")
    (other / R.STUDY_JSON).write_text(
        json.dumps(
            {
                C.PLAN_EVAL_SAMPLES: 1000,
                C.PLAN_TRAIN_SUBSET: 256,
                C.PLAN_MAX_EPOCHS: 8,
                C.PLAN_SAMPLER: "tpe",
                C.PLAN_SCHEDULER: "asha",
            }
        )
    )
    with pytest.raises(StudyLoadError) as error:
        load_studies([tiny_study_dirs.gan, other])
    message = str(error.value)
    assert "different protocols" in message and "--allow-mixed" in message and "\n" not in message
    assert "generated samples per FID differs (tiny-gan: 400; other-vae: 1000)" in message
    assert "max epochs differs (tiny-gan: 3; other-vae: 8)" in message
    assert "training subset differs" not in message and "feature networks (" not in message  # those agree
    studies = load_studies([tiny_study_dirs.gan, other], allow_mixed=True)
    assert studies.protocols[
        [R.STUDY, C.PLAN_EVAL_SAMPLES, C.PLAN_MAX_EPOCHS, C.PLAN_SAMPLER]
    ].values.tolist() == [["tiny-gan", "400", "3", "unknown"], ["other-vae", "1000", "8", "tpe"]]


def test_a_seed_study_reproduction_is_exempt_from_the_protocol_check_and_from_the_search(
    tiny_study_dirs, tmp_path
):
    repro = copy_study(tiny_study_dirs.vae, tmp_path, "repro-2")
    (repro / R.STUDY_JSON).write_text(
        json.dumps(
            {C.REPRODUCES: 2, C.PLAN_EVAL_SAMPLES: 10_000, C.PLAN_TRAIN_SUBSET: None, C.PLAN_MAX_EPOCHS: 50}
        )
    )
    studies = load_studies([tiny_study_dirs.gan, tiny_study_dirs.vae, repro])
    assert set(studies.search()[R.STUDY]) == {"tiny-gan", "tiny-vae"}
    assert studies.protocols.set_index(R.STUDY).loc["repro-2", C.PLAN_TRAIN_SUBSET] == "full"
    assert set(studies.trials.loc[studies.trials[R.STUDY] == "repro-2", C.GROUP]) == {"repro-2"}


def test_two_studies_of_one_family_are_two_labelled_groups(tiny_study_dirs, tmp_path):
    twin = copy_study(tiny_study_dirs.gan, tmp_path, "gan-twin")
    studies = load_studies([tiny_study_dirs.gan, twin, tiny_study_dirs.vae])
    groups = studies.trials.groupby(C.GROUP)[R.STUDY].unique().map(list).to_dict()
    assert groups == {"tiny-gan": ["tiny-gan"], "gan-twin": ["gan-twin"], "vae": ["tiny-vae"]}
    assert set(studies.history[C.GROUP]) == {"tiny-gan", "gan-twin", "vae"}


def test_the_protocol_says_what_the_scheduler_decided_on():
    from analysis.load import scheduler_text

    plan = {C.PLAN_SCHEDULER: "asha", "grace_period": 4, "reduction_factor": 2.0, "stop_signal": "best"}
    assert scheduler_text(plan) == "asha (first rung epoch 4, factor 2, signal best)"
    del plan["stop_signal"]  # a study.json from before the stop signal existed decided on the epoch's FID
    assert scheduler_text(plan).endswith("signal raw)")
    assert scheduler_text({C.PLAN_SCHEDULER: "none", "grace_period": 2}) == "none"
    assert scheduler_text({}) == "unknown"
