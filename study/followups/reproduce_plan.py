"""A reproduction's plan: re-run a seed study's own experiment (the planning half, checked before Ray
starts; study/followups/reproduce_run.py runs it; `python -m study.reproduce`, study/reproduce.py, is the
command).

    python -m study.reproduce --seed-study 1                    # gan/dcgan + vae/conv at 10, 20, 50 epochs
    python -m study.reproduce --seed-study 2 --quick            # gan/mlp + vae/mlp, CPU-sized (see below)
    python -m study.reproduce --seed-study 2 --epochs 10,50 --seeds 5

The seed studies trained their two configurations (first study: the TensorFlow DCGAN and conv VAE;
second: the PyTorch MLP GAN and MLP VAE; search_spaces.seed_configs) for a few printed epoch counts
(first: 10, 20, 50; second: 10, 50, 200) on the full training split, and printed their numbers.
This runs exactly that, with S seeds (0 ... S-1; the seed studies name none), through Ray Tune.

One run per (configuration, seed), trained once to the largest epoch count: at every printed
count it checkpoints, computes the validation metrics and the test metrics of the model at that
epoch and writes its summary row (study.engine.trainable, R.epoch_summary_name). A run of 50 epochs
recorded at epoch 10 is the same experiment as a separate 10-epoch run (same seed, same data
order, no learning-rate schedule), at a fraction of the cost. Validation metrics are computed at
the printed epochs only (nothing here needs them in between).

The study directory <storage-path>/<name> (default results/seed-study-N, -quick / -smoke for the
smaller presets) holds study.json (these settings, with `reproduces_seed_study: N`, which makes
analysis.report show the runs as "reproduced" beside the published numbers and keep them out of
the verdict), trials.parquet (one row per configuration x epoch count x seed; `hp_epochs` is the
epoch count, `trial_id` the run's Tune id + "-e<epochs>"), history.parquet (each row's epochs up to
its count) and Ray's experiment. Interrupted? Run the same command again: it continues.

Presets (one table with the search's: study/engine/spec.py PRESETS): full (as printed): the whole
50,000-image training split, 10,000 generated images per FID/KID/IS, the VAE's IW-NLL on all 10,000
test images, seed widths. --quick: epoch counts divided by 10 (rounded up: 1, 2, 5 and 1, 5, 20),
the first 4,000 training images, 1,000 generated images, IW-NLL on 2,000 test images; numbers are
NOT comparable to the printed ones (fewer steps, less data), it checks the pipeline on a CPU.
--smoke-test (the tests): study/smoke.py's numbers (1/8-width networks, epochs 1, 2, 512 training
images, 256 generated images), 2 seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from models.config import (
    ARCH_CONV,
    ARCH_DCGAN,
    ARCH_MLP,
    FAMILY_GAN,
    FAMILY_VAE,
    ConfigError,
    TrainConfig,
)
from search_spaces import SpaceOptions, seed_configs
from study import results as R
from study.data import resolve_data_dir
from study.engine.spec import FULL_PRESET, QUICK_PRESET, REPRODUCTION_SEEDS, RunSpec, reproduction_preset
from study.store import normalize_storage_path

# each seed study's configurations (family -> arch) and printed epoch counts
SEED_STUDY_ARCHS = {1: {FAMILY_GAN: ARCH_DCGAN, FAMILY_VAE: ARCH_CONV},
                    2: {FAMILY_GAN: ARCH_MLP, FAMILY_VAE: ARCH_MLP}}
PRINTED_EPOCHS = {1: (10, 20, 50), 2: (10, 50, 200)}
DEFAULT_SEEDS = REPRODUCTION_SEEDS
QUICK_EPOCH_DIVISOR = 10
RUN_DIR_PREFIX = "run"  # <study>/run_0001_<id>/
EPOCHS_COLUMN = R.hp_column("epochs")  # a row's epoch count


@dataclass(frozen=True, kw_only=True)
class ReproducePlan(RunSpec):
    """Every setting of one reproduction (a RunSpec, study/engine/spec.py); saved as study.json (with the
    keys analysis reads: max_epochs, train_subset, eval_samples, sampler, scheduler,
    reproduces_seed_study)."""

    reproduces_seed_study: int  # the study.json key analysis.columns.REPRODUCES names
    configurations: tuple[str, ...]  # family/arch
    epochs: tuple[int, ...]
    seeds: tuple[int, ...]
    sampler: str = "none (the seed studies' configurations)"
    scheduler: str = "none"

    def configs(self) -> list[TrainConfig]:
        """One TrainConfig per (seed, configuration), trained to the largest epoch count."""
        runs = []
        for seed in self.seeds:
            loop = dict(epochs=self.max_epochs, seed=seed, eval_samples=self.eval_samples,
                        train_subset=self.train_subset, checkpoint_every=self.checkpoint_every)
            options = SpaceOptions(width_scale=self.width_scale, loop=loop)
            for family_arch in self.configurations:
                family, arch = family_arch.split("/")
                runs += [c for c in seed_configs(family, options) if c.model.arch == arch]
        return runs


def parse_epochs(text: str) -> tuple[int, ...]:
    try:
        epochs = tuple(sorted({int(e) for e in text.split(",") if e.strip()}))
    except ValueError:
        epochs = ()
    if not epochs or epochs[0] < 1:
        raise ConfigError(f"--epochs {text!r}: give positive epoch counts separated by commas, e.g. "
                          "--epochs 10,20,50.")
    return epochs


def plan_reproduction(*, seed_study: int, preset: str, epochs: str | None, seeds: int | None,
                      name: str | None, storage_path: str, data_dir: str | None, cpus_per_trial: float,
                      gpus_per_trial: float | None, max_failures: int) -> ReproducePlan:
    """The reproduction's plan from `python -m study.reproduce`'s flags (None: the preset's or the
    default); ConfigError on anything invalid."""
    values = reproduction_preset(preset)
    if epochs is not None:
        counts = parse_epochs(epochs)
    elif "epochs" in values:
        counts = tuple(values["epochs"])
    elif preset == QUICK_PRESET:
        counts = tuple(sorted({math.ceil(e / QUICK_EPOCH_DIVISOR) for e in PRINTED_EPOCHS[seed_study]}))
    else:
        counts = PRINTED_EPOCHS[seed_study]
    seeds = seeds if seeds is not None else values["seeds"]
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: give at least 1 seed, e.g. --seeds 3.")
    if cpus_per_trial <= 0 or (gpus_per_trial is not None and gpus_per_trial < 0):
        raise ConfigError(f"--cpus-per-trial {cpus_per_trial} / --gpus-per-trial {gpus_per_trial}: "
                          "CPUs must be > 0 and GPUs >= 0.")
    name = name or f"seed-study-{seed_study}" + ("" if preset == FULL_PRESET else f"-{preset}")
    if "/" in name or name.startswith(".") or not name:
        raise ConfigError(f"--name {name!r}: use a plain directory name such as seed-study-{seed_study}.")
    data_root, _ = resolve_data_dir(data_dir)
    archs = SEED_STUDY_ARCHS[seed_study]
    return ReproducePlan(
        reproduces_seed_study=seed_study, name=name,
        configurations=tuple(f"{f}/{a}" for f, a in archs.items()), epochs=counts, seeds=tuple(range(seeds)),
        max_epochs=max(counts), train_subset=values["train_subset"], eval_samples=values["eval_samples"],
        iw_images=values["iw_images"], width_scale=values["width_scale"],
        checkpoint_every=TrainConfig.checkpoint_every, cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial, max_failures=max_failures, keep_checkpoints=2,
        data_dir=str(data_root.resolve()), storage_path=normalize_storage_path(storage_path), preset=preset,
    )


def check_study_dir(plan: ReproducePlan) -> None:
    """A new directory, or this same reproduction (to continue or re-export it); nothing else. A
    study.json of an earlier schema is compared by its settings."""
    store = plan.store
    if not store.is_nonempty_dir():
        return
    try:
        saved = ReproducePlan.from_json(store.read_text(R.STUDY_JSON)) if store.has(R.STUDY_JSON) else None
    except ValueError:  # not a reproduction's settings
        saved = None
    if saved is None or replace(saved, storage_path=plan.storage_path) != plan:
        raise ConfigError(f"{plan.study_dir} already holds something else than this reproduction (its "
                          f"{R.STUDY_JSON} differs or is missing); pass another --name, or the flags it was "
                          "started with to continue it.")


def summary_table(trials: pd.DataFrame) -> str:
    """Per configuration and epoch count: seeds, mean final validation FID, test FID, test BCE loss."""
    columns = [c for c in (R.FINAL_VAL_FID, R.TEST_FID, R.TEST_BCE_NELBO) if c in trials]
    grouped = trials.groupby([R.FAMILY, R.ARCH, EPOCHS_COLUMN], sort=True)
    table = grouped[columns].mean()
    table.insert(0, "seeds", grouped.size())
    return table.to_string(float_format=lambda v: f"{v:.4g}")
