"""Ray Tune and Optuna around the loop: the study plan and presets (plan), the Ray-free checks before
Ray starts (preflight), the searcher, sampler and scheduler (search), the one Ray bring-up (cluster),
the trainable, crash recovery, the study lock, the export of a study's tables, fixed-configuration
runs, and one study's run (study_run)."""
