"""The Ray-free training loop: `run_trial` (trial.py), the summary row (summary.py), the run
directory and checkpoint files (run_dir.py). It imports models and the ground of study/ only; the
metrics reach it through the `Evaluator` protocol."""
