"""Every bad input is refused cleanly, before any work starts (issue 11, item 1).

Each case drives a real command line (`main(argv)` in-process, or a real process where the user
or the process matters) with one bad input, and asserts the contract of every CLI: exit status 2,
one `error:` line naming the culprit (flag or file), no traceback, nothing written (the output
or storage directory absent or unchanged), and no Ray started. Broken MNIST copies are built
from the real files; checkpoints are real torch files.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR, REPO_ROOT

RAW = DATA_DIR / "MNIST" / "raw"
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
NOBODY = 65534


@dataclass
class Case:
    module: str  # the CLI: study.launch, study.train, ...
    argv: list[str]
    culprit: str  # the error line must contain this (the flag or the file)
    watch: list[Path] = field(default_factory=list)  # each must stay absent or unchanged
    process: list[str] | None = None  # run as this command line (a real process) instead of main(argv)
    after: Callable[[], None] | None = None  # extra checks


CASES: dict[str, Callable[[Path], Case]] = {}


def case(name: str):
    def register(setup: Callable[[Path], Case]):
        CASES[name] = setup
        return setup
    return register


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(paths: list[Path]) -> dict[str, tuple]:
    """Every file and directory under the watched paths, with size and modification time."""
    seen: dict[str, tuple] = {}
    for root in paths:
        if not root.exists() and not root.is_symlink():
            seen[str(root)] = ("absent",)
            continue
        items = [root, *root.rglob("*")] if root.is_dir() else [root]
        for item in items:
            st = item.lstat()
            seen[str(item)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return seen


def mnist_copy(tmp: Path, changes: dict[str, object]) -> Path:
    """A data dir whose MNIST/raw/ links the real files, except `changes`: name -> None (missing)
    or a function of the real bytes (the file's new content) or bytes (a new file)."""
    root = tmp / "mnist"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        if name not in changes:
            (raw / name).symlink_to(RAW / name)
    for name, change in changes.items():
        if callable(change):
            (raw / name).write_bytes(change((RAW / name).read_bytes()))
        elif change is not None:
            (raw / name).write_bytes(change)
    return root


def junk(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def launch(tmp: Path, *extra: str, data: Path = DATA_DIR, storage: Path | None = None) -> list[str]:
    storage = storage or tmp / "results"
    return ["--family", "gan", "--smoke-test", "--data-dir", str(data), "--storage-path", str(storage),
            "--dashboard-port", str(free_port()), *extra]


def train(tmp: Path, *extra: str, data: Path = DATA_DIR, out: Path | None = None) -> list[str]:
    out = out or tmp / "run"
    return ["--family", "gan", "--smoke-test", "--eval-samples", "0", "--data-dir", str(data),
            "--out", str(out), *extra]


# --- CLI values ------------------------------------------------------------------------------

def _launch_value(flags: list[str], culprit: str):
    return lambda tmp: Case("study.launch", launch(tmp, *flags), culprit, [tmp / "results"])


for _name, _flags, _culprit in [
    ("launch-trials-zero", ["--trials", "0"], "--trials 0"),
    ("launch-trials-negative", ["--trials", "-3"], "--trials -3"),
    ("launch-trials-not-a-number", ["--trials", "abc"], "--trials"),
    ("launch-max-epochs-zero", ["--max-epochs", "0"], "--max-epochs 0"),
    ("launch-grace-beyond-epochs", ["--grace-period", "9", "--max-epochs", "4"], "--grace-period 9"),
    ("launch-reduction-factor-one", ["--reduction-factor", "1"], "--reduction-factor 1"),
    ("launch-eval-samples-one", ["--eval-samples", "1"], "--eval-samples 1"),
    ("launch-eval-samples-negative", ["--eval-samples", "-5", "--scheduler", "none"], "--eval-samples -5"),
    ("launch-name-with-slash", ["--name", "a/b"], "--name 'a/b'"),
    ("launch-name-hidden", ["--name", ".."], "--name '..'"),
    ("launch-subset-below-batch", ["--train-subset", "10"], "--train-subset 10"),
    ("launch-cpus-per-trial-zero", ["--cpus-per-trial", "0"], "--cpus-per-trial 0"),
    ("launch-keep-checkpoints-zero", ["--keep-checkpoints", "0"], "--keep-checkpoints"),
    ("launch-gp-pareto", ["--sampler", "gp", "--objective", "pareto"], "--sampler gp"),
    ("launch-iw-images-zero", ["--iw-images", "0"], "--iw-images 0"),
    ("launch-bad-family", ["--family", "flow"], "--family"),
    ("launch-port-out-of-range", ["--dashboard-port", "70000"], "--dashboard-port 70000"),
    ("launch-num-cpus-zero", ["--num-cpus", "0"], "--num-cpus 0"),
    ("launch-gan-ema-one", ["--gan-ema", "1"], "--gan-ema 1"),
    ("launch-gan-ema-for-a-vae", ["--gan-ema", "0.99", "--family", "vae"], "--gan-ema 0.99"),
    ("launch-stop-signal-unknown", ["--stop-signal", "median"], "--stop-signal"),
]:
    CASES[_name] = _launch_value(_flags, _culprit)


def _train_value(flags: list[str], culprit: str):
    return lambda tmp: Case("study.train", train(tmp, *flags), culprit, [tmp / "run"])


for _name, _flags, _culprit in [
    ("train-single-width", ["--set", "g_widths=512"], "g_widths=(512,)"),  # dcgan needs 2
    ("train-lr-not-a-number", ["--set", "lr_g=abc"], "lr_g='abc'"),
    ("train-width-not-a-number", ["--set", "d_widths=64,abc"], "d_widths"),
    ("train-unknown-key", ["--set", "lr_q=1e-3"], "lr_q"),
    ("train-set-without-value", ["--set", "latent_dim"], "--set 'latent_dim'"),
    ("train-widths-wrong-length", ["--set", "g_widths=64,32,16"], "g_widths=(64, 32, 16)"),
    ("train-dropout-above-one", ["--set", "dropout=1.5"], "dropout=1.5"),
    ("train-epochs-zero", ["--epochs", "0"], "epochs=0"),
    ("train-batch-size-zero", ["--batch-size", "0"], "batch_size=0"),
    ("train-bad-arch", ["--arch", "resnet"], "arch='resnet'"),
    ("train-width-scale-zero", ["--width-scale", "0"], "--width-scale 0"),
    ("train-latent-dim-zero", ["--latent-dim", "0"], "latent_dim=0"),
    ("train-eval-samples-one", ["--eval-samples", "1"], "eval_samples=1"),
    ("train-subset-zero", ["--train-subset", "0"], "train_subset=0"),
    ("train-bad-device", ["--device", "banana"], "--device 'banana'"),
    ("train-ema-decay-one", ["--set", "ema_decay=1.0"], "ema_decay=1.0"),
]:
    CASES[_name] = _train_value(_flags, _culprit)


@case("train-batch-size-huge")
def _(tmp):  # without --smoke-test, whose batch size of 64 would replace it
    argv = train(tmp, "--batch-size", "100000")
    argv.remove("--smoke-test")
    return Case("study.train", argv, "--batch-size 100000", [tmp / "run"])


@case("train-out-is-a-file")
def _(tmp):
    (tmp / "run").write_text("not a directory")
    return Case("study.train", train(tmp), "--out", [tmp / "run"])


@case("train-out-below-a-file")
def _(tmp):
    (tmp / "file").write_text("not a directory")
    return Case("study.train", train(tmp, out=tmp / "file" / "run"), "--out", [tmp / "file"])


@case("evaluate-samples-one")
def _(tmp):
    return Case("study.evaluate", ["--reference", "--samples", "1", "--out", str(tmp / "m.json")],
                "--samples 1", [tmp / "m.json"])


@case("evaluate-out-is-a-directory")
def _(tmp):
    (tmp / "out").mkdir()
    return Case("study.evaluate", ["--reference", "--out", str(tmp / "out")], "--out", [tmp / "out"])


@case("report-resamples-zero")
def _(tmp):
    return Case("analysis.report", [str(tmp), "--resamples", "0", "--out", str(tmp / "rep")], "--resamples 0",
                [tmp / "rep"])


@case("featurenet-epochs-zero")
def _(tmp):
    return Case("study.featurenet", ["train", "--epochs", "0", "--out", str(tmp / "f.pt")], "--epochs 0",
                [tmp / "f.pt"])


# --- missing, partial and corrupt data -------------------------------------------------------------

@case("data-dir-missing")
def _(tmp):
    return Case("study.launch", launch(tmp, data=tmp / "nowhere"), str(tmp / "nowhere"),
                [tmp / "results", tmp / "nowhere"])


@case("data-dir-is-a-file")
def _(tmp):
    (tmp / "data").write_text("x")
    return Case("study.launch", launch(tmp, data=tmp / "data"), str(tmp / "data"),
                [tmp / "results", tmp / "data"])


@case("data-partial")
def _(tmp):
    data = mnist_copy(tmp, {TEST_IMAGES: None})
    return Case("study.launch", launch(tmp, data=data), str(data), [tmp / "results", data])


@case("data-truncated-train-images-launch")
def _(tmp):
    data = mnist_copy(tmp, {TRAIN_IMAGES: lambda b: b[: 16 + 784 * 100]})
    return Case("study.launch", launch(tmp, data=data), TRAIN_IMAGES, [tmp / "results", data])


@case("data-truncated-train-images-train")
def _(tmp):
    data = mnist_copy(tmp, {TRAIN_IMAGES: lambda b: b[: 16 + 784 * 100]})
    return Case("study.train", train(tmp, data=data), TRAIN_IMAGES, [tmp / "run", data])


@case("data-wrong-magic-test-labels")
def _(tmp):
    data = mnist_copy(tmp, {TEST_LABELS: lambda b: b"\x00\x00\x08\x03" + b[4:]})
    return Case("study.train", train(tmp, data=data), TEST_LABELS, [tmp / "run", data])


@case("data-foreign-shape-test-images")
def _(tmp):
    data = mnist_copy(tmp, {TEST_IMAGES: lambda b: b[:8] + (32).to_bytes(4, "big") + (24).to_bytes(4, "big")
                            + b[16:16 + 10_000 * 32 * 24]})
    return Case("study.evaluate", ["--reference", "--smoke-test", "--data-dir", str(data)], TEST_IMAGES,
                [data])


@case("data-random-bytes-train-labels")
def _(tmp):
    data = mnist_copy(tmp, {TRAIN_LABELS: lambda b: junk(len(b))})
    return Case("study.launch", launch(tmp, data=data), TRAIN_LABELS, [tmp / "results", data])


@case("data-garbage-gz")
def _(tmp):
    data = mnist_copy(tmp, {TRAIN_IMAGES: None, TRAIN_IMAGES + ".gz": b"\x1f\x8b\x08\x00" + junk(5000)})
    return Case("study.train", train(tmp, data=data), TRAIN_IMAGES + ".gz", [tmp / "run", data])


# --- corrupt or foreign checkpoints --------------------------------------------------------------

class Payload:
    """A pickle that runs code when unpickled: weights_only must refuse it before it runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def small_config(family: str):
    from models.config import TrainConfig, seed_model_config
    from search_spaces import scale_widths

    return scale_widths(TrainConfig(model=seed_model_config(family, "dcgan" if family == "gan" else "conv"),
                                    epochs=2, batch_size=64, eval_samples=0), 0.125)


def fake_trial_checkpoint(family: str) -> dict:
    """A real checkpoint dict of an untrained model (what a trial writes, minus the training)."""
    from models import build_model
    from models.checkpoint import CONFIG_KEY, MODEL_KEY

    config = small_config(family)
    return {CONFIG_KEY: config.to_json(), MODEL_KEY: build_model(config.model).state_dict(), "epoch": 1,
            "history": [], "train_seconds": 0.0}


def _evaluate_checkpoint(write: Callable[[Path], None], culprit: str = "ckpt.pt"):
    def setup(tmp):
        write(tmp / "ckpt.pt")
        return Case("study.evaluate", ["--checkpoint", str(tmp / "ckpt.pt"), "--smoke-test",
                                       "--data-dir", str(DATA_DIR)], culprit, [tmp])
    return setup


CASES["checkpoint-random-bytes"] = _evaluate_checkpoint(lambda p: p.write_bytes(junk(4096)))
CASES["checkpoint-empty-file"] = _evaluate_checkpoint(lambda p: p.write_bytes(b""))
CASES["checkpoint-without-config"] = _evaluate_checkpoint(lambda p: torch.save({"model": {}, "epoch": 3}, p))
CASES["checkpoint-plain-tensor"] = _evaluate_checkpoint(lambda p: torch.save(torch.zeros(3), p))
CASES["checkpoint-bad-config"] = _evaluate_checkpoint(
    lambda p: torch.save({"config_json": '{"family": "flow"}', "model": {}}, p))
CASES["checkpoint-weights-of-another-config"] = _evaluate_checkpoint(
    lambda p: torch.save({**fake_trial_checkpoint("gan"), "model": fake_trial_checkpoint("vae")["model"]}, p))
CASES["checkpoint-truncated"] = _evaluate_checkpoint(
    lambda p: (torch.save(fake_trial_checkpoint("gan"), p), p.write_bytes(p.read_bytes()[:2000])))


@case("checkpoint-pickle-with-code")
def _(tmp):
    marker = tmp / "payload-ran"
    torch.save(Payload(marker), tmp / "ckpt.pt")

    def payload_did_not_run():
        assert not marker.exists()
    c = _evaluate_checkpoint(lambda p: None)(tmp)
    c.after = payload_did_not_run
    return c


def _resume_with(write: Callable[[Path], None], culprit: str, family: str = "gan"):
    def setup(tmp):
        ckpts = tmp / "run" / "checkpoints"
        ckpts.mkdir(parents=True)
        write(ckpts / "epoch_001.pt")
        argv = train(tmp, "--resume")
        argv[argv.index("--family") + 1] = family
        return Case("study.train", argv, culprit, [tmp / "run"])
    return setup


CASES["resume-random-bytes-checkpoint"] = _resume_with(lambda p: p.write_bytes(junk(999)), "epoch_001.pt")
CASES["resume-checkpoint-of-another-family"] = _resume_with(
    lambda p: torch.save(fake_trial_checkpoint("vae"), p), "family: checkpoint 'vae' vs now 'gan'")
CASES["resume-without-checkpoint"] = _resume_with(lambda p: None, "--resume")


@case("featurenet-weights-random-bytes")
def _(tmp):
    (tmp / "w.pt").write_bytes(junk(2048))
    argv = ["evaluate", "--weights", str(tmp / "w.pt"), "--data-dir", str(DATA_DIR)]
    return Case("study.featurenet", argv, "w.pt", [tmp])


# --- directories that hold no study --------------------------------------------------------------

@case("export-empty-dir")
def _(tmp):
    (tmp / "study").mkdir()
    return Case("study.export", [str(tmp / "study")], str(tmp / "study"), [tmp / "study"])


@case("export-missing-dir")
def _(tmp):
    return Case("study.export", [str(tmp / "nowhere")], str(tmp / "nowhere"), [tmp / "nowhere"])


@case("export-dir-of-other-files")
def _(tmp):
    (tmp / "study").mkdir()
    (tmp / "study" / "notes.txt").write_text("hello")
    return Case("study.export", [str(tmp / "study")], str(tmp / "study"), [tmp / "study"])


@case("export-garbage-study-json")
def _(tmp):
    (tmp / "study").mkdir()
    (tmp / "study" / "study.json").write_text("{not json")
    return Case("study.export", [str(tmp / "study")], "study.json", [tmp / "study"])


@case("export-study-json-without-experiment")
def _(tmp):
    from study.launch import build_parser, plan_from_args

    plan = plan_from_args(build_parser().parse_args(launch(tmp, "--name", "s")))
    (tmp / "study").mkdir()
    (tmp / "study" / "study.json").write_text(plan.to_json())
    return Case("study.export", [str(tmp / "study")], str(tmp / "study"), [tmp / "study"])


@case("report-empty-dir")
def _(tmp):
    (tmp / "study").mkdir()
    return Case("analysis.report", [str(tmp / "study"), "--out", str(tmp / "rep")], "trials.parquet",
                [tmp / "study", tmp / "rep"])


@case("report-garbage-trials-parquet")
def _(tmp):
    (tmp / "study").mkdir()
    (tmp / "study" / "trials.parquet").write_bytes(junk(300))
    return Case("analysis.report", [str(tmp / "study"), "--out", str(tmp / "rep"), "--smoke-test"],
                "trials.parquet", [tmp / "study", tmp / "rep"])


@case("report-out-is-a-file")
def _(tmp):
    (tmp / "study").mkdir()
    (tmp / "study" / "trials.parquet").write_bytes(junk(300))
    (tmp / "rep").write_text("x")
    return Case("analysis.report", [str(tmp / "study"), "--out", str(tmp / "rep")], "--out", [tmp / "rep"])


def _resume(prepare: Callable[[Path], None], culprit: str):
    def setup(tmp):
        (tmp / "results" / "s").mkdir(parents=True)
        prepare(tmp / "results" / "s")
        return Case("study.launch", launch(tmp, "--resume", "--name", "s"), culprit, [tmp / "results"])
    return setup


CASES["resume-empty-study-dir"] = _resume(lambda d: None, "--resume")
CASES["resume-dir-of-other-files"] = _resume(lambda d: (d / "notes.txt").write_text("x"), "--resume")
CASES["resume-garbage-study-json"] = _resume(lambda d: (d / "study.json").write_text("[1, 2"), "study.json")
CASES["resume-foreign-study-json"] = _resume(lambda d: (d / "study.json").write_text('{"family": "gan"}'),
                                             "study.json")


CASES["resume-newer-schema-study-json"] = _resume(
    lambda d: (d / "study.json").write_text(json.dumps({"schema": 99, "family": "gan"})), "schema 99")


@case("resume-old-study-json-without-experiment")
def _(tmp):
    """A study.json written before the spec had a schema (a committed one, verbatim) is read: the resume
    gets as far as Ray's experiment state, which this directory lacks."""
    old = REPO_ROOT / "tests" / "fixtures" / "study-v0" / "study.json"
    name = json.loads(old.read_text())["name"]
    (tmp / "results" / name).mkdir(parents=True)
    shutil.copy(old, tmp / "results" / name / "study.json")
    return Case("study.launch", launch(tmp, "--resume", "--name", name), "has no Ray experiment state",
                [tmp / "results"])


@case("resume-study-json-without-experiment")
def _(tmp):
    from study.launch import build_parser, plan_from_args

    plan = plan_from_args(build_parser().parse_args(launch(tmp, "--name", "s")))
    (tmp / "results" / "s").mkdir(parents=True)
    (tmp / "results" / "s" / "study.json").write_text(plan.to_json())
    return Case("study.launch", launch(tmp, "--resume", "--name", "s"), "--resume", [tmp / "results"])


@case("resume-hyperband-study")
def _(tmp):
    """HyperBand's brackets are not rebuilt on a restore (Tune's own scheduler): refused, with the
    experiment state in place, before Ray starts."""
    from study.launch import build_parser, plan_from_args

    plan = plan_from_args(build_parser().parse_args(launch(tmp, "--name", "s", "--scheduler", "hyperband")))
    (tmp / "results" / "s").mkdir(parents=True)
    (tmp / "results" / "s" / "study.json").write_text(plan.to_json())
    (tmp / "results" / "s" / "tuner.pkl").write_bytes(b"")  # what can_restore looks for
    return Case("study.launch", launch(tmp, "--resume", "--name", "s"), "hyperband", [tmp / "results"])


@case("resume-moved-study")
def _(tmp):
    """A study copied from another storage path: Ray's saved state names the old one, where its new trials
    would go (or whose optuna.db the searcher would fail to open). Refused before Ray starts, with
    where to put it back."""
    from study.launch import build_parser, plan_from_args

    plan = plan_from_args(build_parser().parse_args(launch(tmp, "--name", "s")))
    moved = dataclasses.replace(plan, storage_path=str(tmp / "elsewhere"))
    (tmp / "results" / "s").mkdir(parents=True)
    (tmp / "results" / "s" / "study.json").write_text(moved.to_json())
    (tmp / "results" / "s" / "tuner.pkl").write_bytes(b"")  # what can_restore looks for
    return Case("study.launch", launch(tmp, "--resume", "--name", "s"),
                f"started under --storage-path {tmp / 'elsewhere'} and has moved", [tmp / "results"])


@case("launch-existing-name-without-resume")
def _(tmp):
    (tmp / "results" / "s").mkdir(parents=True)
    (tmp / "results" / "s" / "study.json").write_text("{}")
    return Case("study.launch", launch(tmp, "--name", "s"), "--name s", [tmp / "results"])


# --- storage paths -------------------------------------------------------------------------------

@case("storage-path-is-a-file")
def _(tmp):
    (tmp / "results").write_text("x")
    return Case("study.launch", launch(tmp), "--storage-path", [tmp / "results"])


@case("storage-path-below-a-file")
def _(tmp):
    (tmp / "file").write_text("x")
    return Case("study.launch", launch(tmp, storage=tmp / "file" / "results"), "--storage-path",
                [tmp / "file"])


@case("storage-path-is-a-file-on-resume")
def _(tmp):
    (tmp / "results").write_text("x")
    return Case("study.launch", launch(tmp, "--resume", "--name", "s"), "--storage-path", [tmp / "results"])


@case("storage-path-unwritable")
def _(tmp):
    """As another user when we are root (root may write anywhere), else a read-only directory."""
    storage = tmp / "readonly"
    storage.mkdir()
    storage.chmod(0o555)
    argv = launch(tmp, storage=storage / "results")
    if os.geteuid() != 0:
        return Case("study.launch", argv, "--storage-path", [storage])
    for parent in (tmp, *tmp.parents):  # the other user must reach the directory
        parent.chmod(parent.stat().st_mode | 0o005)
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
               sys.executable, "-m", "study.launch", *argv]
    return Case("study.launch", argv, "not writable", [storage], process=command)


# --- two launchers on one study ------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from study.engine.lock import StudyLock
lock = StudyLock.acquire(sys.argv[1], sys.argv[2])
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """A second process that holds the study lock of results/s, as a running launcher does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "results"), "s"],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield holder
    holder.kill()
    holder.wait()


# --- the matrix ----------------------------------------------------------------------------------

def run_case(c: Case, capsys) -> tuple[int, str]:
    if c.process is not None:
        done = subprocess.run(c.process, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stderr
    main = importlib.import_module(c.module).main
    try:
        rc = main(c.argv)
    except SystemExit as exc:  # argparse refuses a value before main's own checks
        rc = exc.code
    return rc, capsys.readouterr().err


def assert_refused(rc: int, err: str, c: Case) -> None:
    assert "Traceback" not in err, err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err  # one error line (argparse's usage line before it is fine)
    assert c.culprit in lines[0], (c.culprit, lines[0])


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_cleanly(name, tmp_path, capsys):
    import ray

    c = CASES[name](tmp_path)
    before = snapshot(c.watch)
    started = time.perf_counter()
    rc, err = run_case(c, capsys)
    seconds = time.perf_counter() - started
    assert_refused(rc, err, c)
    assert snapshot(c.watch) == before, "something was written"
    assert not ray.is_initialized()
    assert seconds < 30, f"refusing took {seconds:.1f} s: the check comes too late"
    if c.after:
        c.after()


def test_a_second_launcher_on_a_running_study_is_refused(tmp_path, lock_holder, capsys):
    from study import launch as L

    watch = [tmp_path / "results"]
    before = snapshot(watch)
    rc = L.main(launch(tmp_path, "--name", "s"))
    err = capsys.readouterr().err
    assert_refused(rc, err, Case("study.launch", [], f"PID {lock_holder.pid}"))
    assert "--name s" in err
    assert snapshot(watch) == before


def test_a_resume_while_the_study_runs_is_refused(tmp_path, lock_holder, capsys):
    from study import launch as L
    from study.launch import plan_from_args

    plan = plan_from_args(L.build_parser().parse_args(launch(tmp_path, "--name", "s")))
    (tmp_path / "results" / "s").mkdir()
    (tmp_path / "results" / "s" / "study.json").write_text(plan.to_json())
    (tmp_path / "results" / "s" / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    before = snapshot([tmp_path / "results"])
    rc = L.main(launch(tmp_path, "--name", "s", "--resume"))
    err = capsys.readouterr().err
    assert_refused(rc, err, Case("study.launch", [], f"PID {lock_holder.pid}"))
    assert snapshot([tmp_path / "results"]) == before


# --- a full disk while a checkpoint is written ------------------------------------------------------

def _mount_tmpfs(directory: Path, size: int) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                          capture_output=True)
    return done.returncode == 0


FIRST_EPOCH = ["--family", "gan", "--width-scale", "0.125", "--train-subset", "128", "--batch-size", "64",
               "--eval-samples", "0", "--data-dir", str(DATA_DIR), "--checkpoint-every", "1"]


@pytest.fixture(scope="module")
def first_epoch(tmp_path_factory) -> Path:
    """A real run of one epoch (two steps at 1/8 width), checkpointed, without final.pt."""
    from study import train as T

    first = tmp_path_factory.mktemp("first") / "run"
    assert T.main([*FIRST_EPOCH, "--epochs", "1", "--out", str(first)]) == 0
    (first / "checkpoints" / "final.pt").unlink()
    return first


@pytest.mark.parametrize("full_by", ["tmpfs", "file-size-limit"])
def test_a_full_disk_while_a_checkpoint_is_written_keeps_the_last_one(tmp_path, capsys, full_by, first_epoch):
    """Epoch 1 is trained and checkpointed; `--resume --epochs 2` then runs out of space writing
    epoch 2's checkpoint: on a real full disk (a tmpfs just too small; needs root to mount), or
    under a file-size limit (RLIMIT_FSIZE, any user) on a real process, which fails the same write
    with EFBIG. Decided behaviour: exit 2 with one `error:` line naming --out, the last complete
    checkpoint and `--resume`; that checkpoint is intact and no partial file is left."""
    import resource

    from study import train as T

    first, argv = first_epoch, FIRST_EPOCH
    capsys.readouterr()
    checkpoint = first / "checkpoints" / "epoch_001.pt"
    page = 4096
    used = sum(-(-p.stat().st_size // page) * page for p in first.rglob("*") if p.is_file())
    slack = 64 * 1024  # epoch 2's sample grid and metrics fit; its checkpoint does not
    assert checkpoint.stat().st_size > 2 * slack
    full = tmp_path / "full"
    full.mkdir()
    capsys.readouterr()
    mounted = full_by == "tmpfs" and _mount_tmpfs(full, used + slack)
    if full_by == "tmpfs" and not mounted:
        pytest.skip("mounting a tmpfs needs root; the file-size-limit case checks the same write")
    try:
        run = full / "run"
        shutil.copytree(first, run)
        saved = checkpoint.read_bytes()
        resume = [*argv, "--epochs", "2", "--out", str(run), "--resume"]
        if mounted:
            rc, err = T.main(resume), capsys.readouterr().err
        else:
            limit = checkpoint.stat().st_size // 2
            done = subprocess.run(
                [sys.executable, "-m", "study.train", *resume], cwd=REPO_ROOT, capture_output=True, text=True,
                timeout=120, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
            rc, err = done.returncode, done.stderr
        assert_refused(rc, err, Case("study.train", [], str(run)))
        assert "--resume" in err and "space" in err
        left = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert left == ["epoch_001.pt"]  # no half-written epoch_002.pt, no .tmp
        assert (run / "checkpoints" / "epoch_001.pt").read_bytes() == saved
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(full)], check=True)


# --- the lock on its own -------------------------------------------------------------------------

def test_the_study_lock_is_exclusive_released_and_reclaimed_after_a_crash(tmp_path):
    from study.engine.lock import StudyLock, StudyLockedError, holder, lock_path

    with StudyLock.acquire(tmp_path, "s") as lock:
        assert holder(lock.path)["pid"] == os.getpid()
        with pytest.raises(StudyLockedError, match=f"PID {os.getpid()}"):
            StudyLock.acquire(tmp_path, "s")  # a second descriptor: flock is per open file
        StudyLock.acquire(tmp_path, "other").release()  # other studies are not blocked
    assert not lock_path(tmp_path, "s").exists()  # released and removed

    crashed = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path), "s"], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert crashed.stdout.readline().strip() == "held"
    with pytest.raises(StudyLockedError, match=f"PID {crashed.pid}"):
        StudyLock.acquire(tmp_path, "s")
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    assert holder(lock_path(tmp_path, "s"))["pid"] == crashed.pid  # the stale file is still there
    with StudyLock.acquire(tmp_path, "s") as lock:  # ... and is locked again at once
        assert holder(lock.path)["pid"] == os.getpid()


@case("evaluate-bad-device")
def _(tmp):
    return Case("study.evaluate", ["--reference", "--smoke-test", "--device", "cuda:banana", "--out",
                                   str(tmp / "m.json")], "--device 'cuda:banana'", [tmp / "m.json"])


# --- an immediate resume after a crash: the port pre-check ------------------------------------------

def test_a_port_left_in_time_wait_by_a_crashed_study_does_not_refuse_a_resume():
    """The side that closes a connection first keeps it in TIME_WAIT for a minute; the dashboard
    binds with SO_REUSEADDR, so the pre-check must too. A port someone listens on is still refused."""
    from models.config import ConfigError
    from study.engine.preflight import check_dashboard_port

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
        check_dashboard_port("127.0.0.1", port)  # listening: busy
    accepted.close()  # the server side closes first: its end of the connection enters TIME_WAIT
    client.close()
    server.close()
    states = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert "TIME-WAIT" in states, states
    check_dashboard_port("127.0.0.1", port)  # no error: nobody listens there
