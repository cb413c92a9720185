"""The settings of one search: `StudyPlan` (a RunSpec, study/engine/spec.py, where the presets are), the
launcher's typed flags `SearchFlags` -> plan validation, the resume plan.

Everything here is checked before Ray starts or anything is written; bad input raises
`ConfigError` with a message naming the flag and how to fix it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from models.config import ConfigError
from search_spaces import SpaceOptions
from study import results as R
from study.data import DataNotFoundError, has_mnist, resolve_data_dir, verify_mnist
from study.engine.spec import PRESETS as PRESETS  # re-exported: tests read the table here
from study.engine.spec import RunSpec, search_preset
from study.store import StudyStore, is_uri, normalize_storage_path

SCHEDULERS = ("asha", "hyperband", "none")
# what a scheduler compares at a rung: the epoch's validation FID (raw) or the trial's best so far
STOP_SIGNALS = {"raw": R.VAL_FID, "best": R.VAL_FID_BEST}
SAMPLERS = ("tpe", "random", "nsga2", "qmc", "gp")
# --sampler when not given, per family for --objective fid: TPE (docs/search.md). The 3-repetition
# benchmark (benchmarks/bench_search.py, quick preset, 16 trials) did not separate TPE + ASHA from
# random + ASHA in either family, and TPE's guided trials failed far less often than random draws
# (epoch-4 validation FID above 150: GAN 30-33 % against 67 %, VAE 15-19 % against 50 %); the search
# lab (benchmarks/lab.py, issue 28) decides
DEFAULT_SAMPLERS = {"gan": "tpe", "vae": "tpe"}
PARETO_SAMPLER = "tpe"  # multi-objective TPE; not benchmarked against random yet
OBJECTIVES = ("fid", "pareto")
INCEPTION_CHOICES = ("final", "none")
INCEPTION_IMAGES = 10_000  # the published protocol; cap it on a CPU (~0.1 s per image there)
# pareto: minimise all three (Optuna multi-objective). Its default scheduler is none: ASHA stops on
# validation FID alone, cutting the small fast models the front needs and handing NSGA-II the
# shortened training seconds of stopped trials; --scheduler asha still asks for it.
PARETO_METRICS = (R.VAL_FID, R.PARAMS_TOTAL, R.TRAIN_SECONDS)


def default_scheduler(objective: str) -> str:
    """The scheduler when --scheduler is not given: asha for fid, none for pareto."""
    return "none" if objective == "pareto" else "asha"


def default_sampler(family: str, objective: str) -> str:
    """The sampler when --sampler is not given: the family's default (DEFAULT_SAMPLERS) for fid."""
    return PARETO_SAMPLER if objective == "pareto" else DEFAULT_SAMPLERS[family]

# flags that override the preset's value when given
PRESET_FLAGS = ("trials", "max_epochs", "grace_period", "reduction_factor", "train_subset", "eval_samples",
                "iw_images", "stop_signal")


@dataclass(frozen=True, kw_only=True)
class StudyPlan(RunSpec):
    """Every setting of one search, resolved and validated; saved as study.json."""

    family: str
    trials: int
    grace_period: int
    reduction_factor: float
    scheduler: str
    sampler: str
    objective: str
    seed: int
    width_range: tuple[float, float]
    batch_sizes: tuple[int, ...]
    # GPU speed options (TrainConfig fields; defaults for a study.json written before they existed)
    amp: str = "none"
    channels_last: bool = False
    eval_batch_size: int = 1000
    deterministic: bool = False
    # Inception FID of the chosen trials after the search (study/metrics/inception.py): "final", "none", or
    # None = "final" when the cluster has a GPU; on `inception_images` generated vs test images
    inception: str | None = None
    inception_images: int = INCEPTION_IMAGES
    # GPUs an autoscaling cluster will have once its GPU workers start (None: the GPUs of the nodes
    # alive at launch; study/engine/cluster.py resolve_gpus and trial_slots)
    expect_gpus: int | None = None
    # GANConfig.ema_decay of every trial (0.0: the trained generator samples, no weight average)
    gan_ema: float = 0.0
    # the scheduler's decision signal, a STOP_SIGNALS key (a study.json written before it: raw)
    stop_signal: str = "raw"
    # the whole validation suite every this many epochs besides a trial's last (0: its last only; the
    # other epochs get the FID a scheduler reads and what comes nearly free with it)
    suite_every: int = 0

    def header(self, gpus: float) -> str:
        """The line a study prints as it starts: family, size, scheduler, sampler, resources, directory."""
        return (f"study {self.name}: {self.family}, {self.trials} trials, up to {self.max_epochs} epochs, "
                f"{self.scheduler} scheduler, {self.sampler} sampler, objective {self.objective}, "
                f"{self.cpus_per_trial:g} CPU + {gpus:g} GPU per trial -> {self.study_dir}")

    def space(self) -> SpaceOptions:
        loop = dict(epochs=self.max_epochs, seed=self.seed, eval_samples=self.eval_samples,
                    train_subset=self.train_subset, checkpoint_every=self.checkpoint_every, amp=self.amp,
                    channels_last=self.channels_last, eval_batch_size=self.eval_batch_size,
                    deterministic=self.deterministic)
        low, high = self.width_range
        model = {"ema_decay": self.gan_ema} if self.gan_ema > 0 else {}
        return SpaceOptions(width_scale=self.width_scale, width_range=(low, high),
                            batch_sizes=tuple(self.batch_sizes), loop=loop, model=model)


@dataclass(frozen=True, kw_only=True)
class SearchFlags:
    """The study flags of `python -m study.launch`, typed: what a plan is resolved from (the parser
    holds the defaults). None: the preset's value (PRESET_FLAGS) or the default resolve_plan picks.
    `family` may be launcher.BOTH, which launcher/both.py splits into one SearchFlags per family
    before any plan is resolved."""

    family: str
    name: str | None
    preset: str
    trials: int | None
    max_epochs: int | None
    grace_period: int | None
    reduction_factor: float | None
    train_subset: int | None
    eval_samples: int | None
    iw_images: int | None
    stop_signal: str | None
    scheduler: str | None
    sampler: str | None
    objective: str
    seed: int
    suite_every: int | None
    checkpoint_every: int
    data_dir: str | None
    cpus_per_trial: float
    gpus_per_trial: float | None
    expect_gpus: int | None
    max_failures: int
    keep_checkpoints: int
    storage_path: str
    gan_ema: float
    amp: str
    channels_last: bool
    deterministic: bool
    eval_batch_size: int
    inception: str | None
    inception_images: int | None


def _fail(message: str) -> None:
    raise ConfigError(message)


def data_folder(data_dir: str | None) -> str:
    """The absolute MNIST folder a study reads: the flag, else $STUDY_DATA_DIR, else the cache."""
    return str(resolve_data_dir(data_dir)[0].resolve())


def resolve_plan(flags: SearchFlags) -> StudyPlan:
    """Resolve presets and defaults; raise ConfigError on anything invalid."""
    values = search_preset(flags.preset, flags.family)
    for key in PRESET_FLAGS:
        if getattr(flags, key) is not None:
            values[key] = getattr(flags, key)
    name = flags.name or f"{flags.family}-{time.strftime('%Y%m%d-%H%M%S')}"
    plan = StudyPlan(
        family=flags.family, name=name, trials=values["trials"], max_epochs=values["max_epochs"],
        grace_period=values["grace_period"], reduction_factor=float(values["reduction_factor"]),
        scheduler=flags.scheduler or default_scheduler(flags.objective),
        sampler=flags.sampler or default_sampler(flags.family, flags.objective),
        objective=flags.objective, seed=flags.seed,
        train_subset=values["train_subset"], eval_samples=values["eval_samples"],
        iw_images=values["iw_images"], checkpoint_every=flags.checkpoint_every,
        width_scale=values["width_scale"], width_range=tuple(values["width_range"]),
        batch_sizes=tuple(values["batch_sizes"]), cpus_per_trial=flags.cpus_per_trial,
        gpus_per_trial=flags.gpus_per_trial, max_failures=flags.max_failures,
        keep_checkpoints=flags.keep_checkpoints, data_dir=data_folder(flags.data_dir),
        storage_path=normalize_storage_path(flags.storage_path), preset=flags.preset,
        amp=flags.amp, channels_last=flags.channels_last, eval_batch_size=flags.eval_batch_size,
        deterministic=flags.deterministic, inception=flags.inception,
        inception_images=flags.inception_images or INCEPTION_IMAGES, expect_gpus=flags.expect_gpus,
        gan_ema=float(flags.gan_ema or 0.0), stop_signal=values["stop_signal"],
        suite_every=flags.suite_every or 0,
    )
    validate(plan)
    return plan


def validate(plan: StudyPlan) -> None:
    if plan.trials < 1:
        _fail(f"--trials {plan.trials}: a study needs at least 1 trial (the first ones are the seed "
              "studies' configurations), e.g. --trials 8.")
    if plan.max_epochs < 1:
        _fail(f"--max-epochs {plan.max_epochs}: give at least 1 epoch.")
    if plan.scheduler != "none" and not 1 <= plan.grace_period <= plan.max_epochs:
        _fail(f"--grace-period {plan.grace_period}: must be between 1 and --max-epochs ({plan.max_epochs}).")
    if plan.reduction_factor <= 1:
        _fail(f"--reduction-factor {plan.reduction_factor}: must be > 1 (2 halves the trials at each rung).")
    if plan.scheduler != "none" and plan.eval_samples < 1:
        _fail(f"--eval-samples {plan.eval_samples}: the {plan.scheduler} scheduler stops trials on "
              "validation FID, which needs generated samples; give e.g. --eval-samples 1000 or use "
              "--scheduler none.")
    if plan.eval_samples < 0 or plan.eval_samples == 1:
        _fail(f"--eval-samples {plan.eval_samples}: give 0 (no metrics) or at least 2 generated images.")
    if plan.iw_images is not None and plan.iw_images < 1:
        _fail(f"--iw-images {plan.iw_images}: give at least 1 test image (or leave it out for all).")
    if plan.train_subset is not None and plan.train_subset < max(plan.batch_sizes):
        _fail(f"--train-subset {plan.train_subset}: smaller than the largest searched batch size "
              f"({max(plan.batch_sizes)}); give at least that many images.")
    if plan.checkpoint_every < 1 or plan.max_failures < 0 or plan.keep_checkpoints < 1:
        _fail("--checkpoint-every and --keep-checkpoints must be >= 1, --max-failures >= 0.")
    if plan.cpus_per_trial <= 0 or (plan.gpus_per_trial is not None and plan.gpus_per_trial < 0):
        _fail(f"--cpus-per-trial {plan.cpus_per_trial} / --gpus-per-trial {plan.gpus_per_trial}: "
              "CPUs must be > 0 and GPUs >= 0 (fractions such as 0.25 share a GPU).")
    if not plan.name or "/" in plan.name or plan.name.startswith("."):
        _fail(f"--name {plan.name!r}: use a plain directory name such as gan-quick.")
    if plan.objective == "pareto" and plan.sampler in ("gp", "qmc"):
        _fail(f"--sampler {plan.sampler} does not support --objective pareto; use tpe or nsga2.")
    if plan.suite_every < 0:
        _fail(f"--suite-every {plan.suite_every}: give a number of epochs (1: the whole validation suite "
              "every epoch), or leave it out for the last epoch only.")
    if plan.eval_batch_size < 1:
        _fail(f"--eval-batch-size {plan.eval_batch_size}: give at least 1 image per batch, e.g. 1000.")
    if plan.inception_images < 2:
        _fail(f"--inception-images {plan.inception_images}: FID needs at least 2 images, e.g. 2000 on a CPU.")
    if plan.inception == "final" and plan.eval_samples == 0:
        _fail("--inception final with --eval-samples 0: the study writes no test metrics; give "
              "--eval-samples or --inception none.")
    if plan.gan_ema and plan.family != "gan":
        _fail(f"--gan-ema {plan.gan_ema}: averages a GAN generator's weights; leave it out for --family "
              f"{plan.family}.")
    if not 0.0 <= plan.gan_ema < 1.0:
        _fail(f"--gan-ema {plan.gan_ema}: give a decay in [0, 1), e.g. 0.99, or 0 for none.")
    if plan.expect_gpus is not None and plan.expect_gpus < 1:
        _fail(f"--expect-gpus {plan.expect_gpus}: give the number of GPUs the autoscaled cluster will "
              "have (at least 1), or leave it out on a static cluster.")
    plan.space()  # the width range must contain the seed widths


def check_data(data_dir: str) -> None:
    if not has_mnist(Path(data_dir)):
        raise DataNotFoundError(
            f"MNIST was not found under {data_dir}: expected MNIST/raw/ with the four IDX files "
            "(train-images-idx3-ubyte, ...). Point --data-dir (or $STUDY_DATA_DIR) at the directory "
            "that contains MNIST/, e.g. --data-dir ../shared/data; the launcher never downloads."
        )
    verify_mnist(Path(data_dir))  # headers and sizes: a truncated file fails here, not after Ray starts


def check_storage(storage_path: str) -> None:
    """A local --storage-path must be (or be creatable as) a writable directory; URIs are checked by Ray."""
    if is_uri(storage_path):
        return
    reason = R.unwritable_reason(storage_path)
    if reason:
        raise ConfigError(f"--storage-path {storage_path}: {reason}; choose a directory you can write, "
                          "e.g. --storage-path results (nothing was written).")


def load_resume_plan(name: str | None, storage_path: str, family: str) -> StudyPlan:
    """The saved plan of the study `name` under `storage_path` (its storage path as given now); a
    study.json of any earlier schema reads (study/engine/spec.py), anything else is refused."""
    if not name:
        _fail("--resume needs --name: the name of the interrupted study (a directory under --storage-path).")
    storage = normalize_storage_path(storage_path)
    store = StudyStore(f"{storage.rstrip('/')}/{name}")  # the study directory, named by the flags
    if not store.has(R.STUDY_JSON):
        _fail(f"--resume: {store.uri} holds no study to resume ({R.STUDY_JSON} is missing); check --name "
              "and --storage-path, or start a new study without --resume.")
    try:
        plan = StudyPlan.from_json(store.read_text(R.STUDY_JSON))
    except (ValueError, TypeError) as exc:  # not JSON, or not the launcher's settings
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        _fail(f"--resume: {store.study_json} is not a {R.STUDY_JSON} this launcher can read ({why}); "
              "restore it from a backup, or start the study again under a new --name.")
    if plan.family != family:
        _fail(f"--resume: study {name} is a {plan.family} study, not {family}; "
              f"pass --family {plan.family}.")
    if plan.scheduler == "hyperband":  # Tune's HyperBand restarts with empty brackets (docs/search.md)
        _fail(f"--resume: study {name} uses the hyperband scheduler, whose brackets a resume cannot "
              "rebuild (its paused trials would be judged against nothing); start it again under a new "
              "--name, or use --scheduler asha, which resumes with its rungs.")
    return dataclasses.replace(plan, storage_path=storage)


def moved_from(plan: StudyPlan) -> str | None:
    """The storage path the study `plan` (from load_resume_plan) was started under, when its study.json
    names another one than it lies under now; else None. Ray's saved state names the old one:
    Tuner.restore re-homes the trials it restores, but not (Ray 2.60) the experiment its search
    generator pickled, from which every later trial takes its directory, nor the searcher's optuna.db;
    a moved study would write its new trials where it was, or fail to open its database."""
    saved = json.loads(plan.store.read_text(R.STUDY_JSON)).get("storage_path")

    def where(path: str) -> str:
        return path.rstrip("/") if is_uri(path) else os.path.realpath(path)
    if not saved or where(str(saved)) == where(plan.storage_path):
        return None
    return str(saved)


def scheduler_rungs(grace_period: int, reduction_factor: float, max_t: int) -> frozenset[int]:
    """The epochs at which ASHA can stop a trial: grace * rf^k <= max_t (for every bracket,
    since a bracket's rungs are a subset of this series)."""
    rungs, t = set(), float(grace_period)
    while t <= max_t:
        rungs.add(math.ceil(t - 1e-9))  # the first epoch >= the milestone
        t *= reduction_factor
    return frozenset(rungs)


def checkpoint_epochs(plan: StudyPlan) -> frozenset[int]:
    """Epochs that must have a checkpoint: where the scheduler may stop (ASHA) or pause
    (HyperBand, at any epoch) a trial."""
    if plan.scheduler == "asha":
        return scheduler_rungs(plan.grace_period, plan.reduction_factor, plan.max_epochs)
    if plan.scheduler == "hyperband":
        return frozenset(range(1, plan.max_epochs + 1))
    return frozenset()


def expected_epochs(plan: StudyPlan) -> float:
    """Epochs a trial runs on average: all of them without a scheduler; under ASHA (and, roughly,
    HyperBand) a 1/reduction_factor share of the trials going on past each rung. An estimate for
    the time left (study/engine/console.py): asynchronous ASHA stops fewer of the first trials."""
    if plan.scheduler == "none":
        return float(plan.max_epochs)
    epochs, share, previous = 0.0, 1.0, 0
    for rung in sorted(scheduler_rungs(plan.grace_period, plan.reduction_factor, plan.max_epochs)):
        epochs += share * (rung - previous)
        share, previous = share / plan.reduction_factor, rung
    return epochs + share * (plan.max_epochs - previous)
