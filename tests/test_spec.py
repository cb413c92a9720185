"""The one spec below the commands (issue 27, item 1): every command turns its flags into a frozen,
typed spec; the search, replicate and reproduce specs extend one base (RunSpec) whose JSON, study.json,
carries a schema version; a study.json written before the version existed still reads (and resumes);
the Ray connection is a separate frozen object; one table of presets, one chooser. No Ray here.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shutil

import pytest

from models.config import ConfigError
from study import launch, reproduce
from study import results as R
from study import smoke as SMOKE
from study.engine.plan import StudyPlan, load_resume_plan, resolve_plan
from study.engine.spec import (
    PRESETS,
    SCHEMA_KEY,
    SPEC_SCHEMA,
    RunSpec,
    SpecFormatError,
    reproduction_preset,
    search_preset,
)
from study.followups.replicate_plan import ReplicatePlan
from study.followups.reproduce_plan import ReproducePlan, check_study_dir
from study.launcher import BOTH, both
from study.store import StudyStore, normalize_storage_path
from tests.conftest import REPO_ROOT
from tests.test_imports import COMMANDS, project_modules

# verbatim copy of benchmarks/results/bench-search/studies/gan-tpe-asha-rep0/study.json (commit 39a4750),
# written by the launcher before the spec had a schema (and before --suite-every existed)
OLD_STUDY_JSON = REPO_ROOT / "tests" / "fixtures" / "study-v0" / R.STUDY_JSON


def _as_json(value):
    return list(value) if isinstance(value, tuple) else value


def test_a_study_json_written_by_the_old_code_reads_and_round_trips():
    saved = json.loads(OLD_STUDY_JSON.read_text())
    assert SCHEMA_KEY not in saved and "suite_every" not in saved  # the old layout
    plan = StudyPlan.from_json(OLD_STUDY_JSON.read_text())
    assert {key: _as_json(getattr(plan, key)) for key in saved} == saved
    assert plan.suite_every == 0 and plan.width_range == (0.25, 1.0) and plan.batch_sizes == (32, 64, 128)
    rewritten = json.loads(plan.to_json())
    assert rewritten.pop(SCHEMA_KEY) == SPEC_SCHEMA and rewritten.pop("suite_every") == 0
    assert rewritten == saved  # nothing else added, dropped or changed
    assert StudyPlan.from_json(plan.to_json()) == plan


def test_resume_reads_a_study_json_written_by_the_old_code(tmp_path):
    saved = json.loads(OLD_STUDY_JSON.read_text())
    study = tmp_path / "moved" / saved["name"]
    study.mkdir(parents=True)
    shutil.copy(OLD_STUDY_JSON, study / R.STUDY_JSON)
    plan = load_resume_plan(saved["name"], str(tmp_path / "moved"), "gan")
    assert plan.storage_path == normalize_storage_path(str(tmp_path / "moved")) != saved["storage_path"]
    assert plan.study_dir == str(study) and plan.trials == saved["trials"] and plan.scheduler == "asha"
    with pytest.raises(ConfigError, match="a gan study, not vae"):
        load_resume_plan(saved["name"], str(tmp_path / "moved"), "vae")


def test_every_committed_study_json_reads():
    committed = sorted((REPO_ROOT / "benchmarks" / "results").rglob(R.STUDY_JSON))
    assert len(committed) >= 1
    for path in committed:
        plan = StudyPlan.from_json(path.read_text())
        assert StudyPlan.from_json(plan.to_json()) == plan, path


@pytest.mark.parametrize("change, words", [
    ({SCHEMA_KEY: SPEC_SCHEMA + 1}, "newer ganvae-study"),
    ({"colour": "red"}, "does not have: colour"),
    ({"family": None}, "missing: family"),
])
def test_a_study_json_this_version_cannot_read_names_why(change, words):
    saved = json.loads(OLD_STUDY_JSON.read_text())
    saved.update(change)
    saved = {key: value for key, value in saved.items() if value is not None}
    with pytest.raises(SpecFormatError, match=words):
        StudyPlan.from_json(json.dumps(saved))
    with pytest.raises(SpecFormatError, match="not JSON"):
        StudyPlan.from_json("{not json")


def test_the_search_replicate_and_reproduce_specs_share_one_base(tmp_path, data_dir):
    base = {f.name for f in dataclasses.fields(RunSpec)}
    for spec in (StudyPlan, ReplicatePlan, ReproducePlan):
        assert issubclass(spec, RunSpec) and base <= {f.name for f in dataclasses.fields(spec)}
        assert spec.__dataclass_params__.frozen  # type: ignore[attr-defined]
    args = launch.build_parser().parse_args(["--family", "gan", "--smoke-test", "--data-dir", str(data_dir),
                                             "--storage-path", str(tmp_path), "--name", "s"])
    search = launch.plan_from_args(args)
    study = StudyStore(tmp_path / "s")
    replicates = ReplicatePlan.of(search, study, top=2, seeds=3, epochs=None)
    assert replicates.study_dir == f"{tmp_path}/s/{R.REPLICATES_DIR}"  # the replicates' Ray experiment
    assert replicates.source_dir == str(tmp_path / "s") and replicates.study == "s"
    # the specs carry their directories as the one object that owns the files
    assert replicates.source == study and replicates.store == study.replicates == search.store.replicates
    assert {k: getattr(replicates, k) for k in base - {"name", "storage_path"}} == \
        {k: getattr(search, k) for k in base - {"name", "storage_path"}}
    assert ReplicatePlan.of(search, study, 2, 3, epochs=9).max_epochs == 9
    assert ReplicatePlan.from_json(replicates.to_json()) == replicates
    with pytest.raises(SpecFormatError, match="does not have"):  # a search's settings, not a reproduction's
        ReproducePlan.from_json(search.to_json())


def test_a_reproduction_written_by_the_old_code_is_continued_and_another_refused(tmp_path, data_dir):
    argv = ["--seed-study", "2", "--smoke-test", "--storage-path", str(tmp_path), "--data-dir", str(data_dir)]
    plan = reproduce.plan_from_args(reproduce.build_parser().parse_args(argv))
    assert plan.epochs == tuple(range(1, SMOKE.EPOCHS + 1)) and plan.train_subset == SMOKE.TRAIN_IMAGES
    study = tmp_path / plan.name
    study.mkdir()
    # the old code's study.json: the same settings, no schema key, its own key order
    old = dict(reversed(list(dataclasses.asdict(plan).items())))
    (study / R.STUDY_JSON).write_text(json.dumps(old, indent=1))
    check_study_dir(plan)  # the same reproduction: continue it
    other = reproduce.plan_from_args(reproduce.build_parser().parse_args([*argv, "--seeds", "3"]))
    with pytest.raises(ConfigError, match="something else than this reproduction"):
        check_study_dir(other)


def test_family_both_makes_each_familys_spec_by_replacing_fields(tmp_path, data_dir):
    args = launch.build_parser().parse_args(
        ["--family", "both", "--smoke-test", "--gan-ema", "0.99", "--data-dir", str(data_dir),
         "--storage-path", str(tmp_path), "--tracker", "mlflow", "--num-cpus", "2"])
    spec = launch.spec_from_args(args)
    gan, vae = both.family_spec(spec, "gan", "c-gan"), both.family_spec(spec, "vae", "c-vae")
    assert spec.study.family == BOTH and spec.replicate_top is None  # the command's spec is unchanged
    assert (gan.study.family, gan.study.name, gan.study.gan_ema) == ("gan", "c-gan", 0.99)
    assert (vae.study.family, vae.study.gan_ema) == ("vae", 0.0)  # --gan-ema is the GAN study's
    assert gan.replicate_top == vae.replicate_top == both.BOTH_TOP
    assert gan.replicate_seeds == both.SMOKE_SEEDS  # smoke preset
    assert gan.ray == vae.ray == spec.ray and spec.ray.trackers == ("mlflow",) and spec.ray.num_cpus == 2
    assert spec.ray.local and spec.ray.dashboard_host == "127.0.0.1"
    assert resolve_plan(vae.study).gan_ema == 0.0 and resolve_plan(gan.study).gan_ema == 0.99
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.study.name = "x"  # type: ignore[misc]


def test_one_presets_table_serves_the_search_and_the_reproduction():
    for name in PRESETS:
        search, reproduction = search_preset(name), reproduction_preset(name)
        assert "seeds" not in search and reproduction["seeds"] >= 1
        assert reproduction["width_scale"] == search["width_scale"]
    assert search_preset("smoke")["train_subset"] == SMOKE.STUDY_TRAIN_IMAGES  # trials that differ
    assert reproduction_preset("smoke")["train_subset"] == SMOKE.TRAIN_IMAGES  # single runs
    assert reproduction_preset("quick")["train_subset"] == search_preset("quick")["train_subset"]


def _source(module: str) -> str:
    return project_modules()[module].read_text()


def _assigned_names(module: str) -> set[str]:
    """The names a module assigns anywhere (module constants, locals)."""
    names = set()
    for node in ast.walk(ast.parse(_source(module))):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_no_argparse_namespace_below_the_commands_one_presets_one_chooser():
    below = [name for name in project_modules() if name.startswith("study.") and name not in COMMANDS]
    raw = [name for name in below if re.search(r"Namespace|getattr\(args", _source(name))]
    assert not raw, f"an argparse Namespace travels below the commands into {raw}"
    assert [name for name in project_modules() if "PRESETS" in _assigned_names(name)] == ["study.engine.spec"]
    # the preset's name from --smoke-test / --quick, chosen in one place
    choosers = [name for name in project_modules()
                if re.search(r'smoke_test else .*(QUICK_PRESET|"quick")', _source(name))]
    assert choosers == ["study.engine.spec"]


def test_the_evaluate_and_train_commands_read_their_flags_without_writing_into_them(data_dir):
    from study import evaluate, train

    args = evaluate.build_parser().parse_args(["--reference", "--smoke-test", "--data-dir", str(data_dir)])
    spec = evaluate.checked_spec(args)
    assert (spec.samples, spec.iw_k, spec.iw_images) == (SMOKE.REFERENCE_IMAGES, SMOKE.IW_K, SMOKE.IW_IMAGES)
    assert args.samples == 10_000 and args.inception_samples is None  # the flags as given
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.samples = 3  # type: ignore[misc]
    args = train.build_parser().parse_args(["--family", "gan", "--smoke-test"])
    smoke = train.config_from_args(args)
    assert args.width_scale == 1.0 and train.config_from_args(args) == smoke  # twice: the same config


def test_the_quick_preset_runs_the_labs_design_per_family_and_a_flag_still_overrides_it(tmp_path, data_dir):
    """The quick search is the lab's design (docs/search.md): GAN 12 and VAE 16 trials with rungs at
    epochs 1 and 3; --family both gives each family its own count; --trials overrides both."""
    def plan(*flags):
        args = launch.build_parser().parse_args(
            ["--family", "gan", "--quick", "--data-dir", str(data_dir), "--storage-path", str(tmp_path),
             *flags])
        return resolve_plan(launch.spec_from_args(args).study)

    gan = plan()
    assert (gan.trials, gan.grace_period, gan.reduction_factor, gan.scheduler) == (12, 1, 3.0, "asha")
    assert plan("--family", "vae").trials == 16 and plan("--trials", "8").trials == 8
    spec = launch.spec_from_args(launch.build_parser().parse_args(
        ["--family", "both", "--quick", "--data-dir", str(data_dir), "--storage-path", str(tmp_path)]))
    trials = [resolve_plan(both.family_spec(spec, f, f"c-{f}").study).trials for f in ("gan", "vae")]
    assert trials == [12, 16]
    assert "trials=gan 12 / vae 16" in launch.build_parser().format_help()
    assert search_preset("full")["trials"] == 16 and search_preset("quick", "vae")["trials"] == 16
