"""Seconds the analysis maths takes on study-sized inputs: Pareto fronts, exact hypervolumes
(2 and 3 objectives), exact budget curves (Dodge et al.) and the equal-count hypervolume
comparison with its bootstrap, on random trials.

    python benchmarks/bench_analysis.py [--smoke-test]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.budget import budget_curve  # noqa: E402
from analysis.pareto import Objective, hypervolume, nadir_reference, pareto_front  # noqa: E402
from analysis.tradeoff import compare, reference_point  # noqa: E402
from study import results as R  # noqa: E402


def random_trials(n: int, seed: int = 0) -> pd.DataFrame:
    """FID falls with size and time, with noise: fronts of realistic shape."""
    rng = np.random.default_rng(seed)
    params = 10 ** rng.uniform(4, 7, n)
    seconds = 10 ** rng.uniform(0, 3, n)
    fid = 2000 / np.log10(params) ** 2 * rng.lognormal(0, 0.4, n) + 300 / np.sqrt(seconds)
    return pd.DataFrame(
        {
            R.TEST_FID: fid,
            R.FINAL_VAL_FID: fid * rng.lognormal(0, 0.05, n),
            R.STUDY: "bench",
            R.PARAMS_TOTAL: params,
            R.TRAIN_SECONDS: seconds,
            R.EPOCHS_RUN: 4,
            R.STOP_REASON: R.STOP_COMPLETED,
            R.SEED_CONFIG: np.arange(n) < 2,
        }
    )


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke-test", action="store_true", help="small sizes, seconds-long")
    args = p.parse_args(argv)
    sizes = (16, 64) if args.smoke_test else (64, 256, 1024)
    resamples = 200 if args.smoke_test else 1000
    two = (Objective(R.TEST_FID), Objective(R.PARAMS_TOTAL))
    three = two + (Objective(R.TRAIN_SECONDS),)
    print(
        f"{'trials':>7} {'front 3-obj (s)':>16} {'front size':>11} {'HV 2-D (s)':>11} {'HV 3-D (s)':>11} "
        f"{'budget, exact (s)':>18} {f'HV compare, {resamples} resamples (s)':>34}"
    )
    for n in sizes:
        trials = random_trials(n)
        t_front, front = timed(lambda: pareto_front(trials, three))  # noqa: B023
        t_hv2, _ = timed(lambda: hypervolume(trials, two, nadir_reference(trials, two)))  # noqa: B023
        t_hv3, _ = timed(lambda: hypervolume(trials, three, nadir_reference(trials, three)))  # noqa: B023
        t_budget, _ = timed(lambda: budget_curve(trials))  # noqa: B023
        val2 = (Objective(R.FINAL_VAL_FID), Objective(R.PARAMS_TOTAL))
        other = random_trials(n, seed=1)
        t_cmp, _ = timed(lambda: compare(trials, other, val2, reference_point(trials), resamples))  # noqa: B023
        print(
            f"{n:>7} {t_front:>16.4f} {len(front.front):>11} {t_hv2:>11.4f} {t_hv3:>11.4f} {t_budget:>18.4f} "
            f"{t_cmp:>34.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
