"""Ray Tune and Optuna around the loop: the study plan and presets (plan), the searcher, sampler and
scheduler (search), the one Ray bring-up (cluster), the trainable, crash recovery, the study lock,
the export of a study's tables, fixed-configuration runs, and one study's run (study_run).

This package file itself imports nothing, so a command can set Ray's environment before Ray loads.
"""

# Ray's switch for single-node (laptop) clusters: its node address becomes 127.0.0.1, so the GCS,
# raylet, agents and workers listen on loopback only (on Linux Ray otherwise binds all interfaces).
# Ray reads it when it is imported: study.launch sets it before importing anything that imports Ray.
LOOPBACK_ENV = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
DEFAULT_DASHBOARD_PORT = 8265  # the Ray dashboard of a local study
# Set (to 1) only where Ray's GPUs are logical, with no CUDA behind them (the tests on a CPU machine):
# a trial Ray gave a GPU then trains on the CPU instead of being refused (study/tune/trainable.py
# trial_device, study/tune/cluster.py check_cuda_on_gpu_nodes)
ALLOW_CPU_ON_GPU_ENV = "GANVAE_ALLOW_CPU_ON_GPU_NODE"
