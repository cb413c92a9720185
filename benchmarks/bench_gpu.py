"""Trials per hour and GPU utilisation at 1, 2, 4 and 8 trials per GPU (issue 12, item 5).

    python benchmarks/bench_gpu.py --data-dir ../shared/data                  # on a machine with CUDA
    python benchmarks/bench_gpu.py --data-dir D --family gan --trials 16 --max-epochs 3 --amp bf16
    python benchmarks/bench_gpu.py --data-dir D --smoke-test                  # the logic, on logical GPUs

For each packing k (trials per GPU) it runs one study, `python -m study.launch --address` joined to
a Ray this benchmark starts with the machine's GPUs (`--gpus-per-trial 1/k`, no scheduler, the
random sampler with one seed, trials = --trials-per-slot x k x GPUs, no Inception step; wall: the
launcher's own "finished in" time), samples GPU utilisation every second (`nvidia-smi`, else
`torch.cuda.utilization`) and the machine's CPU busy share during the study only (from the
launcher's "study NAME:" line to its "finished" line), and prints: trials, wall seconds, trials per
hour, mean and peak GPU utilisation, CPU load, and the devices the trials recorded. `--preset full`
measures full-width models on all 50,000 images. Without CUDA it prints "no GPU: nothing measured"
and exits 0; `--smoke-test` runs the same logic on a CPU Ray with one logical GPU (utilisation: not measured),
tiny studies, packings 1 and 4.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from study import results as R  # noqa: E402
from study.data import resolve_data_dir  # noqa: E402
from study.engine import ALLOW_CPU_ON_GPU_ENV  # noqa: E402

PACKINGS = (1, 2, 4, 8)
FINISHED = re.compile(r"study \S+ finished in (\d+(?:\.\d+)?) s")


def gpu_utilisation() -> float | None:
    """Mean utilisation (%) over the visible GPUs now, or None when it cannot be read."""
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True)
        values = [float(v) for v in done.stdout.split() if v.strip().replace(".", "", 1).isdigit()]
        if done.returncode == 0 and values:
            return sum(values) / len(values)
    try:
        import torch

        if torch.cuda.is_available():
            return float(sum(torch.cuda.utilization(i) for i in range(torch.cuda.device_count()))
                         / torch.cuda.device_count())
    except Exception:  # torch.cuda.utilization needs pynvml; no reading is not an error here
        return None
    return None


class Sampler(threading.Thread):
    """GPU utilisation every `every` seconds until stopped."""

    def __init__(self, every: float = 1.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.stopped = every, [], threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            if (value := gpu_utilisation()) is not None:
                self.samples.append(value)


def cpu_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine so far (/proc/stat; zeros where it is missing)."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def launcher_command(k: int, gpus: int, args: argparse.Namespace, address: str, storage: Path) -> list[str]:
    """One study at k trials per GPU: random sampler and a fixed seed, so every packing runs the same
    sequence of configurations (a larger packing runs a longer prefix of it: trials = per-slot trials x
    k x GPUs, so each packing fills its slots the same number of times); no scheduler, no Inception."""
    return [sys.executable, "-m", "study.launch", "--family", args.family, "--data-dir", args.data_dir,
            "--storage-path", str(storage), "--name", f"{args.family}-per-gpu-{k}", "--address", address,
            "--trials", str(args.trials_per_slot * k * gpus), "--max-epochs", str(args.max_epochs),
            "--scheduler", "none", "--sampler", "random", "--seed", str(args.seed), "--inception", "none",
            "--gpus-per-trial", str(1 / k), "--cpus-per-trial", str(args.cpus_per_trial),
            "--amp", args.amp, "--eval-batch-size", str(args.eval_batch_size),
            *(["--channels-last"] if args.channels_last else []),
            *({"smoke": ["--smoke-test"], "quick": ["--quick"], "full": []}[args.preset])]


def run_sampled(command: list[str], name: str, sampler_factory=None) -> tuple[int, str, list[float], float]:
    """Run the launcher, sampling GPU utilisation and the CPU's busy share only during its study: from
    its "study NAME:" line (Ray up, data loaded) to its "study NAME finished" line. Returns (exit
    status, stdout, GPU samples, CPU busy share in %)."""
    sampler = (sampler_factory or Sampler)()
    lines, cpu0 = [], (0.0, 0.0)
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(f"study {name}:") and not sampler.is_alive():
                cpu0 = cpu_busy()
                sampler.start()
            elif line.startswith(f"study {name} finished"):
                break
        sampler.stopped.set()
        cpu1 = cpu_busy()
        lines.extend(proc.stdout)
    if sampler.is_alive():
        sampler.join()
    cpu = 100 * (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]) if cpu1[1] > cpu0[1] and cpu0[1] else float("nan")
    return proc.returncode, "".join(lines), sampler.samples, cpu


def measure(k: int, gpus: int, args: argparse.Namespace, address: str, storage: Path) -> dict:
    name = f"{args.family}-per-gpu-{k}"
    rc, stdout, util, cpu = run_sampled(launcher_command(k, gpus, args, address, storage), name)
    found = FINISHED.search(stdout)
    if rc or not found:
        raise RuntimeError(f"packing {k}: the launcher failed ({rc}):\n{stdout[-3000:]}")
    wall = float(found.group(1))
    trials = pd.read_parquet(storage / name / R.TRIALS_FILE)
    return {"trials_per_gpu": k, "trials": len(trials), "wall_s": round(wall, 1),
            "trials_per_hour": round(len(trials) * 3600 / wall, 1),
            "gpu_util_mean": round(sum(util) / len(util), 1) if util else float("nan"),
            "gpu_util_peak": max(util) if util else float("nan"),
            "cpu_load": round(cpu, 1), "devices": ",".join(sorted(set(map(str, trials[R.DEVICE]))))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=("gan", "vae"), default="vae")
    p.add_argument("--trials-per-slot", type=int, default=2,
                   help="trials per concurrent slot: k per GPU on G GPUs run this x k x G (default 2)")
    p.add_argument("--seed", type=int, default=0, help="the random sampler's seed, the same at every packing")
    p.add_argument("--preset", choices=("smoke", "quick", "full"), default="quick",
                   help="the studies' preset: quick (default; 4,000 images), full (full width and data)")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    p.add_argument("--max-epochs", type=int, default=3)
    p.add_argument("--packings", type=int, nargs="+", default=list(PACKINGS), help="trials per GPU")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--amp", choices=("none", "bf16"), default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--eval-batch-size", type=int, default=1000)
    p.add_argument("--data-dir")
    p.add_argument("--storage-path", help="where the studies go (default: a temporary directory)")
    p.add_argument("--smoke-test", action="store_true",
                   help="CPU Ray with one logical GPU, 4 smoke trials, packings 1 and 4 (tests the logic)")
    args = p.parse_args(argv)
    import torch

    if args.smoke_test:
        args.trials_per_slot, args.max_epochs, args.packings, args.preset = 1, 1, [1, 4], "smoke"
        os.environ[ALLOW_CPU_ON_GPU_ENV] = "1"  # the logical GPU has no CUDA behind it
    elif not torch.cuda.is_available():
        print("no GPU: nothing measured (CUDA is not available on this machine; "
              "--smoke-test runs the benchmark's logic on a logical GPU)")
        return 0
    # after the early return above: a run without a GPU needs no Ray
    from ray.cluster_utils import Cluster

    root, _ = resolve_data_dir(args.data_dir)
    args.data_dir = str(root)
    storage = Path(args.storage_path or tempfile.mkdtemp(prefix="bench-gpu-"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 1
    cpus = int(max(args.packings) * gpus * args.cpus_per_trial)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "num_gpus": gpus})
    try:
        rows = []
        for k in args.packings:
            rows.append(measure(k, gpus, args, cluster.address, storage))
            if args.json:  # after every packing: a run cut short still leaves the packings it measured
                Path(args.json).write_text(json.dumps(rows, indent=1))
    finally:
        cluster.shutdown()
    print(f"{args.family}, {args.preset} preset, {args.trials_per_slot} trial(s) per slot x packing x {gpus} "
          f"GPU(s) of {args.max_epochs} epoch(s), random sampler seed {args.seed}"
          + (" (logical: CPU Ray, GPU utilisation not measured)" if args.smoke_test else ""))
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
