"""The study engine (named so as not to shadow `ray.tune`): Ray Tune and Optuna around the loop. The
base spec of every run, the Ray settings and the presets (spec), the search's plan (plan), the Ray-free
checks before Ray starts (preflight), the searcher, sampler and scheduler (search), the one Ray
bring-up (cluster), the trainable, crash recovery, the study lock, the export of a study's tables,
fixed-configuration runs, the one experiment runner (runner: a searcher's trials or fixed configurations,
from the data to the tables), the one command skeleton (command: checks, Ray, Ctrl-C, exit status), the
search's run (study_run), and the old module names a study started before the rename pickled
(old_names)."""

from study.engine import old_names

# Set (to 1) only where Ray's GPUs are logical, with no CUDA behind them (the tests on a CPU machine):
# a trial Ray gave a GPU then trains on the CPU instead of being refused (study/engine/trainable.py
# trial_device, study/engine/cluster.py check_cuda_on_gpu_nodes). This file imports nothing heavy.
ALLOW_CPU_ON_GPU_ENV = "GANVAE_ALLOW_CPU_ON_GPU_NODE"

# a study started before the rename resumes, exports and replicates: its pickles name study.tune.*
old_names.install()
