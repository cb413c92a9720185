"""The one device check of the cluster path (issue 16): one command, at most 8 minutes on one GPU.

    python benchmarks/gpu_check.py --data-dir ../shared/data [--out DIR]     # DIR: $OUT or ./gpu_check_out

It runs, each step a subprocess with its own time limit (what is left of `--budget-s`):
  1. smoke training of both families under bf16 autocast and channels-last on CUDA (study.train);
  2. the bf16 and GPU tests of the fast suite (pytest -k bf16 / amp, on this machine's CUDA);
  3. every metric of one checkpoint on the CPU and on CUDA (study.evaluate: domain FID/KID/IS, PRDC,
     the VAE's NLL) and their largest relative difference;
  4. benchmarks/bench_gpu.py at 1, 2, 4 and 8 trials per GPU, about one epoch at full width: trials
     per hour, GPU busy share, CPU load;
  5. Inception FID of 10,000 generated images (study.evaluate --inception): images per second.
and writes gpu_check.md (a markdown table: step, status, seconds, figures) and gpu_check.json into
the output directory. Without CUDA it measures nothing, says "no GPU: nothing measured", writes
both files saying so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = "no GPU: nothing measured"
BUDGET_S = 480  # the 8 minutes


@dataclass
class Step:
    name: str
    status: str = "not run"  # ok, failed, timed out, skipped, not run
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


def markdown_table(steps: list[Step], header: str) -> str:
    """The report: one row per step; figures as key=value; the header line above it."""
    lines = [header, "", "| step | status | seconds | figures |", "|---|---|---:|---|"]
    for s in steps:
        figures = ", ".join(f"{k}={_fmt(v)}" for k, v in s.figures.items()) or (s.detail[:120] or "-")
        lines.append(f"| {s.name} | {s.status} | {s.seconds:.1f} | {figures.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_report(out: Path, steps: list[Step], device: str | None) -> tuple[Path, Path]:
    """gpu_check.md and gpu_check.json in `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    measured = device is not None and any(s.status == "ok" for s in steps)
    header = f"# gpu_check on {device}" if device else f"# gpu_check: {NO_GPU}"
    md, js = out / "gpu_check.md", out / "gpu_check.json"
    md.write_text(markdown_table(steps, header))
    js.write_text(json.dumps({"device": device, "measured": measured, "steps": [asdict(s) for s in steps]},
                             indent=1))
    return md, js


def run_step(step: Step, command: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str:
    """Run `command` for `step` (status, seconds, detail filled in); returns its stdout."""
    if timeout_s < 5:
        step.status, step.detail = "skipped", "no time left in the budget"
        return ""
    began = time.perf_counter()
    # its own process group: a step cut short takes its children with it (bench_gpu's Ray cluster and
    # trial workers would otherwise hold the GPU through the next step)
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=step_env(env), start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            step.status, step.detail = "timed out", f"after {timeout_s:.0f} s"
            return ""
        finally:
            step.seconds = time.perf_counter() - began
    step.status = "ok" if proc.returncode == 0 else "failed"
    if proc.returncode:
        step.detail = " ".join((stderr or stdout).strip().splitlines()[-1:])
    return stdout


def step_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a step: this one, with the checkout first on PYTHONPATH and whatever was
    already there kept after it (a GPU machine may carry its missing packages on PYTHONPATH)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def bench_figures(bench_json: Path) -> dict[str, Any]:
    """Trials per hour, GPU busy share and CPU load per packing from bench_gpu's JSON, which it
    rewrites after every packing: a step that ran out of time still reports the packings it finished."""
    try:
        rows = json.loads(bench_json.read_text())
    except (OSError, ValueError):
        return {}
    figures: dict[str, Any] = {}
    for row in rows:
        k = row["trials_per_gpu"]
        figures.update({f"k{k}_trials_per_h": row["trials_per_hour"],
                        f"k{k}_gpu_busy": row["gpu_util_mean"], f"k{k}_cpu_load": row["cpu_load"]})
    return figures


def largest_difference(cpu: dict[str, Any], cuda: dict[str, Any]) -> tuple[str, float]:
    """The metric whose CPU and CUDA values differ most (relative), and by how much. Timings are not
    metrics: on the first GPU run `eval_seconds` (1.3x apart) hid every metric's difference."""
    worst, name = 0.0, "-"
    for key, a in cpu.items():
        b = cuda.get(key)
        if "seconds" in key:
            continue
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            diff = abs(a - b) / max(abs(a), 1e-12)
            if diff >= worst:
                worst, name = diff, key
    return name, worst


def pytest_step(data_dir: str) -> tuple[list[str], dict[str, str]]:
    """The bf16 / amp tests of the fast suite: the command, and the environment that tells the tests
    where MNIST is (they look beside the checkout otherwise, where a GPU machine has none)."""
    return (_python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-k", "bf16 or amp",
                    "tests/test_gpu.py", "tests/test_train.py"), {"STUDY_DATA_DIR": data_dir})


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _left(deadline: float, share: float = 1.0) -> float:
    return max(0.0, (deadline - time.perf_counter()) * share)


def run_all(data_dir: str, out: Path, deadline: float) -> list[Step]:  # the check's script, step by step
    """The five steps on this machine's CUDA, each within what is left of the budget."""
    work, steps = out / "work", []
    for family in ("gan", "vae"):
        step = Step(f"train {family} bf16 channels-last")
        run_step(step, _python("-m", "study.train", "--family", family, "--smoke-test", "--device", "cuda",
                               "--set", "amp=bf16", "--set", "channels_last=true", "--data-dir", data_dir,
                               "--out", str(work / f"train-{family}")), _left(deadline, 0.1))
        steps.append(step)
    step = Step("bf16 / amp tests (fast suite)")
    command, env = pytest_step(data_dir)
    text = run_step(step, command, _left(deadline, 0.15), env)
    step.figures = {"summary": (text.strip().splitlines() or ["-"])[-1]}
    steps.append(step)
    for family in ("gan", "vae"):
        step = Step(f"metrics CPU vs CUDA ({family})")
        checkpoint = work / f"train-{family}" / "checkpoints" / "final.pt"
        for device in ("cpu", "cuda"):
            if device == "cuda" and step.status != "ok":
                break
            run_step(step, _python("-m", "study.evaluate", "--checkpoint", str(checkpoint), "--smoke-test",
                                   "--device", device, "--data-dir", data_dir,
                                   "--out", str(work / f"{family}-{device}.json")), _left(deadline, 0.1))
        if step.status == "ok":
            values = [json.loads((work / f"{family}-{d}.json").read_text()) for d in ("cpu", "cuda")]
            worst, diff = largest_difference(*values)
            step.figures = {"largest_rel_diff": diff, "metric": worst}
        steps.append(step)
    step = Step("bench_gpu 1/2/4/8 per GPU, full width, 1 epoch (GAN)")
    bench = work / "bench_gpu.json"
    # the GAN: the design card's study (`--family gan --trials 64`) is the one whose GPU time is estimated
    run_step(step, _python("benchmarks/bench_gpu.py", "--data-dir", data_dir, "--preset", "full",
                           "--family", "gan", "--max-epochs", "1", "--packings", "1", "2", "4", "8",
                           "--json", str(bench)),
             _left(deadline, 0.75))
    step.figures.update(bench_figures(bench))
    steps.append(step)
    step = Step("Inception FID, 10,000 images")
    checkpoint = work / "train-gan" / "checkpoints" / "final.pt"
    run_step(step, _python("-m", "study.evaluate", "--checkpoint", str(checkpoint), "--inception",
                           "--inception-samples", "10000", "--samples", "1000", "--device", "cuda",
                           "--data-dir", data_dir, "--out", str(work / "inception.json")), _left(deadline))
    if step.status == "ok":
        step.figures = {"images_per_s_incl_load": 10_000 / step.seconds}
    steps.append(step)
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir",
                   default=os.environ.get("STUDY_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    p.add_argument("--budget-s", type=float, default=BUDGET_S, help="all steps together (default 480)")
    args = p.parse_args(argv)
    import torch

    out = Path(args.out)
    if not torch.cuda.is_available():
        md, js = write_report(out, [], None)
        print(f"{NO_GPU} (CUDA is not available on this machine); wrote {md} and {js}")
        return 0
    steps = run_all(args.data_dir, out, time.perf_counter() + args.budget_s)
    md, js = write_report(out, steps, torch.cuda.get_device_name(0))
    print(md.read_text())
    return 0 if all(s.status == "ok" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
