"""`python -m analysis.report STUDY_DIR [STUDY_DIR ...] --out report/`: the GAN-vs-VAE report.

Loads the studies, computes Pareto fronts, budget curves, the seed-study table and the verdict,
draws every figure, and writes report.md and report.html (figures linked from figures/, tables
also as CSV under tables/). Validation chooses everything (analysis.selection); test numbers
describe what was chosen. Bad input (a missing directory, no trials.parquet, an existing --out,
studies run under different protocols without --allow-mixed) exits with status 2 and writes
nothing; the report is built in a temporary sibling directory and moved into place only when
complete.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from analysis import agreement, plots
from analysis import columns as C
from analysis.budget import budget_curves, budget_table, protocol_caption
from analysis.document import (
    Block,
    Bullets,
    Figure,
    Heading,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from analysis.importance import study_importances
from analysis.latent import METHODS, PCA, best_vae, latent_embedding
from analysis.load import Studies, StudyLoadError, check_study_dir, epoch_curves, load_studies
from analysis.quality import QUALITY_FACTOR, is_usable, study_fid_bound
from analysis.selection import SELECT, best_label, family_of, group_column
from analysis.tables import (
    comparison_table,
    front_objectives,
    headline_table,
    published_comparison,
    usable_front,
)
from analysis.tradeoff import PARAMS_FACTOR, SECONDS_FACTOR, reference_point
from analysis.verdict import Verdict, decide, verdict_table
from study import results as R
from study.data import has_mnist, resolve_data_dir

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"
TABLES_DIR = "tables"
QUALITY_CHOICES = (R.TEST_FID, R.TEST_INCEPTION_FID, R.FINAL_VAL_FID, R.BEST_VAL_FID)
SMOKE_RESAMPLES = 200
SMOKE_LATENT_IMAGES = 500


DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class ReportSettings:
    quality: str = R.TEST_FID  # describes the chosen trials (budget curves, quality axis, tables)
    select: str = SELECT  # chooses: best trial, Pareto membership, budget picks (never a test number)
    resamples: int = DEFAULT_RESAMPLES  # bootstrap draws of the hypervolume and speed intervals
    seed: int = 0
    latent_images: int = 3000
    latent_method: str = PCA
    data_dir: str | None = None
    allow_mixed: bool = False  # pool studies run under different protocols


@dataclass(frozen=True)
class ReportResult:
    out: Path
    files: tuple[Path, ...]  # relative to out
    verdict: Verdict
    notes: tuple[str, ...]  # what was skipped and why


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Write the GAN-vs-VAE report (report.md, report.html, figures/, tables/) from finished "
        "study directories, e.g. results/<gan-study> results/<vae-study>.",
    )
    p.add_argument("studies", nargs="+", metavar="STUDY_DIR", help="study directories holding trials.parquet")
    p.add_argument("--out", default="report",
                   help="output directory; refused if it holds files (default: report)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    p.add_argument("--quality", default=R.TEST_FID, choices=QUALITY_CHOICES,
                   help="column that describes the chosen trials in budget curves, the quality axis and "
                   f"tables (default: test_fid); choices are always made on {SELECT}")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                   help="bootstrap resamples of the hypervolume and speed intervals")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the projections")
    p.add_argument("--latent-images", type=int, default=3000, help="test images in the latent-space figure")
    p.add_argument("--latent-method", default=PCA, choices=METHODS,
                   help="projection when the latent has > 2 dims")
    p.add_argument("--data-dir", help="directory holding MNIST/raw/ for the latent figure "
                   "(default: $STUDY_DATA_DIR, else the download cache; never downloads)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="pool studies run under different protocols (feature network, eval samples, training "
                   "subset, max epochs); refused otherwise. The report lists every study's protocol")
    p.add_argument("--smoke-test", action="store_true",
                   help=f"a seconds-long run: {SMOKE_RESAMPLES} resamples, {SMOKE_LATENT_IMAGES} latent "
                   "images, PCA")
    return p


def settings_from_args(args: argparse.Namespace) -> ReportSettings:
    if args.resamples < 1 or args.latent_images < 1:
        raise ValueError(f"--resamples {args.resamples} and --latent-images {args.latent_images} must be at "
                         "least 1.")
    settings = ReportSettings(quality=args.quality, resamples=args.resamples, seed=args.seed,
                              latent_images=args.latent_images, latent_method=args.latent_method,
                              data_dir=args.data_dir, allow_mixed=args.allow_mixed)
    if args.smoke_test:
        settings = ReportSettings(quality=args.quality, resamples=min(args.resamples, SMOKE_RESAMPLES),
                                  seed=args.seed, latent_images=min(args.latent_images, SMOKE_LATENT_IMAGES),
                                  latent_method=PCA, data_dir=args.data_dir, allow_mixed=args.allow_mixed)
    return settings


def check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; choose a directory path for the report.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} already holds files; choose a new directory or pass --overwrite to "
                         "replace it (nothing was written).")


def check_data_dir(data_dir: str | None) -> None:
    if data_dir and not has_mnist(Path(data_dir).expanduser()):
        raise ValueError(f"--data-dir {data_dir} holds no MNIST/raw/ IDX files; point it at the directory "
                         "that contains MNIST/raw/ (e.g. ../shared/data) or leave it out to skip the latent "
                         "figure.")


def build_report(study_dirs: list[str | Path], out: Path, settings: ReportSettings = ReportSettings(),
                 progress=print) -> ReportResult:
    """Write the whole report into `out` (which must not exist or be empty) and return what was written."""
    started = time.perf_counter()
    studies = load_studies(study_dirs, allow_mixed=settings.allow_mixed)
    trials, history = studies.search(), studies.history  # seed-study reproductions feed only the seed table
    replicates = studies.replicates[studies.replicates[R.STUDY].isin(set(trials[R.STUDY]))]
    q, select = settings.quality, settings.select
    figures_dir, tables_dir = out / FIGURES_DIR, out / TABLES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    tables_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    progress("computing fronts, budget curves, tables and verdict")
    curves = budget_curves(trials, q, select=select)
    verdict = decide(trials, curves, quality=q, select=select, replicates=replicates,
                     resamples=settings.resamples, seed=settings.seed)
    leaders = agreement.leaders(trials, group_column(trials), select)
    # the quality axis names the metrics that agree on its leader and says so when they do not
    verdict = dataclasses.replace(verdict, summary=(
        f"{verdict.summary[0]} {agreement.agreement_sentence(leaders)}", *verdict.summary[1:]))
    tables = {"overview": study_overview(trials, q, select), "verdict": verdict_table(verdict),
              "headline": headline_table(trials, replicates, q, select),
              "protocols": studies.protocols,
              "seed_studies": published_comparison(studies.trials, history, select=select,
                                                   replicates=studies.replicates),
              "trials": comparison_table(trials, quality=q, select=select),
              "pareto_fronts": front_table(trials, select), "budget": budget_table(curves),
              "metric_agreement": agreement.rank_correlations(trials), "metric_leaders": leaders}
    search_paths = list(dict.fromkeys(trials[C.STUDY_PATH]))  # not the seed-study reproductions
    tables["param_importances"], importance_notes = study_importances(search_paths, trials,
                                                                      seed=settings.seed)
    notes += importance_notes
    for name, frame in tables.items():
        frame.to_csv(tables_dir / f"{name}.csv", index=False)

    progress("drawing figures")
    figs: dict[str, str] = {}
    if trials[select].notna().any():
        figs["pareto"] = _rel(plots.plot_pareto(trials, figures_dir / "pareto_fronts.png", quality=select),
                              out)
    else:
        notes.append(f"No trial has a finite {select}: Pareto figure skipped.")
    if trials[q].notna().any():
        figs["hyper"] = _rel(plots.plot_hyperparameters(trials, figures_dir / "hyperparameters.png",
                                                        quality=q), out)
    else:
        notes.append(f"No trial has a finite {q}: hyperparameter figure skipped.")
    curve_rows = epoch_curves(trials, history, R.VAL_FID)
    if len(curve_rows):
        figs["curves"] = _rel(plots.plot_fid_curves(curve_rows, figures_dir / "fid_vs_epoch.png"), out)
    else:
        notes.append("No per-epoch validation FID in the histories: FID-vs-epoch figure skipped.")
    if curves:
        figs["budget"] = _rel(plots.plot_budget(curves, figures_dir / "budget.png", family_of(trials)), out)
    front_labels = [label for _, group in trials.groupby(group_column(trials), sort=True)
                    for label in sorted(usable_front(group, front_objectives(select), select),
                                        key=lambda i: trials.loc[i, select])]
    if front_labels:
        mosaic = plots.plot_sample_mosaic(trials, front_labels, figures_dir / "pareto_samples.png",
                                          quality=q, select=select)
        figs["mosaic"] = _rel(mosaic, out)
    else:
        notes.append(f"No usable trial (analysis.quality: {q} bound and class coverage): no Pareto front, "
                     "so no sample mosaic.")
    if len(tables["param_importances"]):
        figs["importances"] = _rel(plots.plot_importances(tables["param_importances"],
                                                          figures_dir / "param_importances.png"), out)
    figs["latent"], latent_note = _latent_figure(trials, figures_dir / "vae_latent.png", settings, out,
                                                 progress)
    if latent_note:
        notes.append(latent_note)

    blocks = report_blocks(studies, trials, verdict, tables, figs, notes, settings)
    title = "GAN vs VAE on MNIST: study report"
    (out / REPORT_MD).write_text(to_markdown(blocks))
    (out / REPORT_HTML).write_text(to_html(blocks, title))
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    progress(f"report written in {time.perf_counter() - started:.1f} s")
    return ReportResult(out=out, files=tuple(files), verdict=verdict, notes=tuple(notes))


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def _latent_figure(trials, path: Path, settings: ReportSettings, out: Path,
                   progress) -> tuple[str | None, str | None]:
    found = best_vae(trials, settings.select)
    if found is None:
        return None, "No VAE trial with a final checkpoint: latent-space figure skipped."
    row, checkpoint = found
    root, _ = resolve_data_dir(settings.data_dir)
    if not has_mnist(root):
        return None, (f"MNIST not found under {root}: latent-space figure skipped (pass --data-dir DIR with "
                      "DIR/MNIST/raw/).")
    progress(f"encoding {settings.latent_images} test images with {row[R.TRIAL_ID]}")
    embedding = latent_embedding(row[R.TRIAL_ID], checkpoint, root, n_images=settings.latent_images,
                                 method=settings.latent_method, seed=settings.seed)
    return _rel(plots.plot_latent(embedding, path), out), None


def study_overview(trials: pd.DataFrame, quality: str, select: str = SELECT) -> pd.DataFrame:
    """Per study and group: trial counts by stop reason, usable trials, epochs, training time, and the
    best trial's `select` with the `quality` that describes it (the trial chosen on `select`)."""
    rows = []
    usable = is_usable(trials, select=select)
    for (study, group_name), group in trials.groupby([R.STUDY, group_column(trials)], sort=True):
        row = {R.STUDY: study, C.GROUP: group_name, C.N_TRIALS: len(group)}
        row.update({reason: int((group[R.STOP_REASON] == reason).sum()) for reason in R.STOP_REASONS})
        row[C.USABLE] = int(usable[group.index].sum())
        row[R.EPOCHS_RUN] = int(group[R.EPOCHS_RUN].fillna(0).sum())
        row[R.TRAIN_SECONDS] = float(group[R.TRAIN_SECONDS].sum(min_count=1))
        best = best_label(group, select)
        row[select] = float(group.loc[best, select]) if best is not None else float("nan")
        row[quality] = float(group.loc[best, quality]) if best is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def front_table(trials: pd.DataFrame, select: str = SELECT) -> pd.DataFrame:
    """Per group, which usable trials are on each front (validation quality vs size, vs time, vs both)."""
    rows = []
    objectives = front_objectives(select)
    usable = is_usable(trials, select=select)
    for group_name, group in trials.groupby(group_column(trials), sort=True):
        for objs in (objectives[:2], (objectives[0], objectives[2]), objectives):
            front = usable_front(group, objs, select)
            rows.append({C.GROUP: group_name, C.AXIS: " vs ".join(o.column for o in objs),
                         C.N_TRIALS: len(front),
                         R.TRIAL_ID: ", ".join(map(str, group.loc[front, R.TRIAL_ID])),
                         C.NOTE: f"{int((~usable[group.index]).sum())} trial(s) not usable (failed, no "
                                 f"finite {select}, or above the quality threshold) excluded"})
    return pd.DataFrame(rows)


def _sampler_captions(protocols: pd.DataFrame) -> str:
    return "; ".join(f"{row[R.STUDY]}: {protocol_caption(row[C.PLAN_SAMPLER], row[C.PLAN_SCHEDULER])}"
                     for _, row in protocols[protocols[C.REPRODUCES].isna()].iterrows())


def report_blocks(studies: Studies, trials, verdict: Verdict, tables: dict[str, pd.DataFrame],
                  figs: dict[str, str | None], notes: list[str], settings: ReportSettings) -> list[Block]:
    q, select = settings.quality, settings.select
    bounds = ", ".join(f"{s} {b:.4g}" for s, b in study_fid_bound(trials, select).items())
    ref = reference_point(trials, select)
    paths = ", ".join(str(p) for p in studies.paths)
    intro = (
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {len(studies.trials)} trials in "
        f"{len(studies.paths)} studies: {paths}. Every choice is made on validation: each group's best "
        f"trial and configuration (lowest {select}), Pareto membership and the trial behind each budget "
        f"point; {q} only describes what was chosen."
        + (" Replicates over seeds are used where they exist." if verdict.replicated else "")
        + (" The studies were pooled with --allow-mixed although their protocols differ (see Protocols)."
           if settings.allow_mixed else ""))
    rule = ("An axis has a winner only when the 95 % interval of the difference between the leader and "
            "the runner-up excludes zero; otherwise it is too close to call. Without replicates "
            "(replicates.parquet from `python -m study.replicate`) every axis is single seed, provisional.")
    usable = (
        f"A trial counts on a front or a trade-off axis only when it is usable: it ended with a model and "
        f"its {select} is at most {QUALITY_FACTOR:g} times the lowest {select} of its study's seed-study "
        f"configurations (bounds: {bounds}), plus class coverage where measured (analysis.quality). "
        f"Hypervolumes use log10 sizes and times, equal trial counts per group, and a fixed reference point: "
        f"{select} {ref[select]:.4g}, {ref[R.PARAMS_TOTAL]:.4g} parameters ({PARAMS_FACTOR:g} x the largest "
        f"seed configuration), {ref[R.TRAIN_SECONDS]:.4g} s ({SECONDS_FACTOR:g} x the slowest seed "
        f"configuration's time for the max epochs).")
    captions = {
        "verdict": "Each axis, each group's value (mean [95 % CI] over seeds where replicated), the "
                   "leader-minus-runner-up difference with its 95 % interval, and the call.",
        "headline": f"Each group's best configuration (lowest {select}; among replicated configurations the "
                    f"lowest mean over seeds) and its seed configurations: {q} as mean and 95 % Student-t "
                    "interval over n_seeds seeds (n = 1: one trial, no interval).",
        "overview": f"Trials per stop reason, usable trials, epochs and training seconds summed; the best "
                    f"trial's {select} and the {q} that describes it.",
        "protocols": "Each study's protocol (study.json, else its rows): feature network, generated samples "
                     "per FID, training subset, max epochs, sampler and scheduler. Studies that differ are "
                     "refused unless --allow-mixed.",
        "seed_studies": "ours_seed_config: mean over our trials of the seed study's own configuration; "
                        "ours_best: the family's best trial (chosen on validation); reproduced: the seed "
                        "study's own experiment re-run (study.reproduce), mean and 95 % interval over its "
                        "seeds at its longest epoch count; blank: not measured.",
        "trials": f"Pareto: usable and non-dominated in ({select}, total parameters, training seconds) "
                  f"within its group; {q} describes the chosen trials.",
        "pareto": f"{select} against network size and training time; staircases are each group's front among "
                  "its usable trials, outlined dots its Pareto-optimal trials.",
        "curves": "Validation FID per epoch; the marker at each line's end shows how the trial ended "
                  "(early-stopped by the scheduler, completed, diverged).",
        "budget": f"Expected {q} of the lowest-{select} trial among k trials drawn without replacement "
                  "(Dodge et al. 2019, exact over all subsets; failed trials count as the worst value), over "
                  "k and over k times the mean training seconds, with the exact 95 % range. "
                  f"{_sampler_captions(studies.protocols)}.",
        "importances": "fANOVA importances (Hutter et al. 2014, optuna.importance) of the parameters every "
                       "complete trial of a study shares, for its validation FID, from the Optuna study the "
                       "launcher kept in optuna.db; a handful of trials make them rough. Explore them with "
                       "`optuna-dashboard sqlite:///<study dir>/optuna.db`.",
        "agreement": "Fidelity (FID, KID, precision) and diversity (recall) are different questions, and a "
                     "feature network may reward sharpness over content, so the metrics are compared on the "
                     "same trials: domain FID, KID, precision and recall are validation values of the final "
                     "model; the Inception FID is test-only and measured only for the chosen trials (best "
                     "and Pareto, study.launch --inception final), so its correlations rest on few trials.",
        "latent": "Encoder means of test images, coloured by digit (projected to 2-D when the latent has "
                  "more dimensions).",
    }
    comparable = ("Comparable: only Inception FID to Inception FID (and then with caveats on protocol). Our "
                  "domain FID is computed on our MNIST feature network and is on a different scale; our "
                  "Inception Score uses an MNIST classifier (1 to 10), not comparable to 2.76 without "
                  "knowing theirs.")
    blocks: list[Block] = [
        Heading("GAN vs VAE on MNIST: study report", 1), Paragraph(intro),
        Heading("Verdict"), Paragraph(rule), Bullets(verdict.summary),
        Table(tables["verdict"], captions["verdict"]),
        Heading("Headline numbers"), Table(tables["headline"], captions["headline"]),
        Heading("Do the quality metrics agree?"), Paragraph(captions["agreement"]),
        Table(tables["metric_agreement"], "Spearman rank correlation across trials per metric pair; "
              "agreement > 0: both order the trials alike; n_trials: trials with both."),
        Table(tables["metric_leaders"], "Each metric on each group's best trial (the lowest "
              "final_val_fid of a single seed, the trial the study chose; with replicates the headline's "
              "best configuration can be another one) and the group it favours."),
        Heading("Usable trials and the trade-off axes"), Paragraph(usable),
        Heading("Studies"), Table(tables["overview"], captions["overview"]),
        Heading("Protocols"), Table(tables["protocols"], captions["protocols"]),
        Heading("The seed studies' numbers, side by side"), Paragraph(comparable),
        Table(tables["seed_studies"], captions["seed_studies"]),
        Heading("Best, seed-configuration and Pareto trials"), Table(tables["trials"], captions["trials"]),
        Heading("Pareto fronts"),
    ]
    if figs.get("pareto"):
        blocks.append(Figure(figs["pareto"], captions["pareto"]))
    blocks.append(Table(tables["pareto_fronts"], "Usable trials on each group's fronts."))
    if figs.get("curves"):
        blocks += [Heading("Validation FID during training"), Figure(figs["curves"], captions["curves"])]
    blocks.append(Heading("Expected test FID at equal budget"))
    if figs.get("budget"):
        blocks.append(Figure(figs["budget"], captions["budget"]))
    blocks.append(Paragraph(verdict.summary[-1]))
    blocks.append(Table(tables["budget"], "Expected value and exact 95 % range per number of trials."))
    if figs.get("hyper"):
        blocks += [Heading("Hyperparameter effects"),
                   Figure(figs["hyper"], f"{q} against learning rate, latent size and total parameters.")]
    if figs.get("importances"):
        blocks += [Heading("Hyperparameter importances (Optuna)"),
                   Figure(figs["importances"], captions["importances"]),
                   Table(tables["param_importances"], "Importance per parameter and study.")]
    if figs.get("mosaic"):
        blocks += [Heading("Samples of the Pareto-optimal trials"),
                   Figure(figs["mosaic"], "Last-epoch sample grids (8x8, fixed noise) of each group's Pareto "
                                          "trials (usable, chosen on validation).")]
    if figs.get("latent"):
        blocks += [Heading("Latent space of the best VAE"), Figure(figs["latent"], captions["latent"])]
    if notes:
        blocks += [Heading("Skipped"), Bullets(tuple(notes))]
    return blocks


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        settings = settings_from_args(args)
        for study in args.studies:
            check_study_dir(study)
        check_out(out, args.overwrite)  # cheap checks first: a bad --out is named before any table loads
        load_studies(args.studies, allow_mixed=args.allow_mixed)  # refuses mixed protocols before writing
        check_data_dir(args.data_dir)
    except (StudyLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return R.EXIT_BAD_INPUT
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        result = build_report(args.studies, staging, settings)
    except StudyLoadError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        print(f"error: {exc}", file=sys.stderr)
        return R.EXIT_BAD_INPUT
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staging.replace(out)
    print(f"wrote {out / REPORT_MD}, {out / REPORT_HTML} and {len(result.files) - 2} figures/tables")
    for line in result.verdict.summary:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
