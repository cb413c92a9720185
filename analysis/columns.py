"""Names that only analysis/ derives: the columns of the report's tables and of loaded rows.

The study's own vocabulary (what a study writes) lives in study/results.py; these are the
names analysis/ adds on top, one constant each, so no table column is spelled twice.
"""

from __future__ import annotations

# --- columns added to loaded rows --------------------------------------------------------------
STUDY_PATH = "study_path"  # absolute study directory a loaded row came from (resolves trial_dir)
GROUP = "group"  # what a row is compared as: its family, or its study name when a family has two studies
REPRODUCES = "reproduces_seed_study"  # 1 or 2: the study re-runs that seed study's own experiment
# (also the study.json key that `study.reproduce` writes)

# --- tables of the report ------------------------------------------------------------------------
ROLE = "role"  # why a trial is in the comparison table: best / seed config / Pareto
QUANTITY = "quantity"
PUBLISHED = "published"  # the number a seed study printed
OURS_SEED_CONFIG = "ours_seed_config"  # our value for the seed study's own configuration
OURS_BEST = "ours_best"  # our value for the family's best trial
REPRODUCED = "reproduced"  # our value from a seed-study reproduction (study.reproduce), mean over seeds
REPRODUCED_LOW = "reproduced_ci_low"
REPRODUCED_HIGH = "reproduced_ci_high"
REPRODUCED_N = "reproduced_n"
COMPARABLE = "comparable"  # yes / with caveats / no
SOURCE = "source"
NOTE = "note"
N_TRIALS = "n_trials"
BUDGET = "budget"  # number of trials k of a budget curve
BUDGET_SECONDS = "budget_seconds"  # k times the study's mean training seconds per trial
EXPECTED_BEST = "expected_best"
BAND_LOW = "band_low"
BAND_HIGH = "band_high"
AXIS = "axis"  # a verdict axis: quality, size vs quality, ...
MEASURE = "measure"
WINNER = "winner"
CALL = "call"  # wins / too close to call / single seed, provisional
DIFFERENCE = "difference"  # leader minus runner-up
DIFF_LOW = "difference_ci_low"
DIFF_HIGH = "difference_ci_high"
MEAN = "mean"
CI_LOW = "ci_low"
CI_HIGH = "ci_high"
N_SEEDS = "n_seeds"
USABLE = "usable"  # passes analysis.quality.is_usable
PARAMETER = "parameter"  # an Optuna parameter name (analysis.importance)
IMPORTANCE = "importance"  # its fANOVA share of the objective's variance (sums to 1 per study)

# --- a study's protocol (from study.json, else from its rows) ------------------------------------
# study.json holds StudyPlan's fields; these are the names of the ones analysis reads.
PLAN_SAMPLER = "sampler"
PLAN_SCHEDULER = "scheduler"
PLAN_MAX_EPOCHS = "max_epochs"
PLAN_TRAIN_SUBSET = "train_subset"
PLAN_EVAL_SAMPLES = "eval_samples"

# --- metric agreement (analysis.agreement) --------------------------------------------------------
METRIC_A = "metric_a"
METRIC_B = "metric_b"
SPEARMAN = "spearman"  # Spearman rank correlation across trials
AGREEMENT = "agreement"  # the correlation signed so that > 0 means both rank the trials alike
METRIC = "metric"
BETTER = "better"  # lower / higher
LEADER = "leader"  # the group whose best configuration this metric ranks first
