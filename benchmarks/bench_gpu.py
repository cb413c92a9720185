"""Trials per hour and GPU utilisation at 1, 2, 4 and 8 trials per GPU (issue 12, item 5).

    python benchmarks/bench_gpu.py --data-dir ../shared/data                  # on a machine with CUDA
    python benchmarks/bench_gpu.py --data-dir D --family gan --trials 16 --max-epochs 3 --amp bf16
    python benchmarks/bench_gpu.py --data-dir D --smoke-test                  # the logic, on logical GPUs

For each packing k (trials per GPU) it runs one study, `python -m study.launch --address` joined to
a Ray this benchmark starts with the machine's GPUs (`--gpus-per-trial 1/k`, no scheduler, the
same seed and trials; wall: the launcher's own "finished in" time), samples
GPU utilisation every second (`nvidia-smi`, else `torch.cuda.utilization`) while it runs, and
prints: trials, wall seconds, trials per hour, mean and peak GPU utilisation, and the devices
the trials recorded. Without CUDA it prints "no GPU: nothing measured" and exits 0;
`--smoke-test` runs the same logic on a CPU Ray with one logical GPU (utilisation: not measured),
tiny studies, packings 1 and 4.
"""

from __future__ import annotations

import argparse
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


def measure(k: int, args: argparse.Namespace, address: str, storage: Path) -> dict:
    name = f"{args.family}-per-gpu-{k}"
    command = [sys.executable, "-m", "study.launch", "--family", args.family, "--data-dir", args.data_dir,
               "--storage-path", str(storage), "--name", name, "--address", address,
               "--trials", str(args.trials), "--max-epochs", str(args.max_epochs), "--scheduler", "none",
               "--gpus-per-trial", str(1 / k), "--cpus-per-trial", str(args.cpus_per_trial),
               "--amp", args.amp, "--eval-batch-size", str(args.eval_batch_size),
               *(["--channels-last"] if args.channels_last else []),
               *(["--smoke-test"] if args.smoke_test else ["--quick"])]
    sampler = Sampler()
    sampler.start()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    sampler.stopped.set()
    sampler.join()
    found = FINISHED.search(done.stdout)
    if done.returncode or not found:
        raise RuntimeError(f"packing {k}: the launcher failed ({done.returncode}):\n{done.stderr[-3000:]}")
    wall = float(found.group(1))
    trials = pd.read_parquet(storage / name / R.TRIALS_FILE)
    util = sampler.samples
    return {"trials_per_gpu": k, "trials": len(trials), "wall_s": round(wall, 1),
            "trials_per_hour": round(len(trials) * 3600 / wall, 1),
            "gpu_util_mean": round(sum(util) / len(util), 1) if util else float("nan"),
            "gpu_util_peak": max(util) if util else float("nan"),
            "devices": ",".join(sorted(set(map(str, trials[R.DEVICE]))))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=("gan", "vae"), default="vae")
    p.add_argument("--trials", type=int, default=16, help="trials per packing (default 16)")
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
        args.trials, args.max_epochs, args.packings = 4, 1, [1, 4]
    elif not torch.cuda.is_available():
        print("no GPU: nothing measured (CUDA is not available on this machine; "
              "--smoke-test runs the benchmark's logic on a logical GPU)")
        return 0
    # after the early return above: a run without a GPU needs neither Ray nor the data
    from ray.cluster_utils import Cluster

    from study.data import resolve_data_dir

    root, _ = resolve_data_dir(args.data_dir)
    args.data_dir = str(root)
    storage = Path(args.storage_path or tempfile.mkdtemp(prefix="bench-gpu-"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 1
    cpus = int(max(args.packings) * gpus * args.cpus_per_trial)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "num_gpus": gpus})
    try:
        rows = [measure(k, args, cluster.address, storage) for k in args.packings]
    finally:
        cluster.shutdown()
    print(f"{args.family}, {args.trials} trials of {args.max_epochs} epochs per packing, {gpus} GPU(s)"
          + (" (logical: CPU Ray, utilisation not measured)" if args.smoke_test else ""))
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
