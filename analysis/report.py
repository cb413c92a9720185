"""`python -m analysis.report STUDY_DIR [STUDY_DIR ...] --out report/`: the GAN-vs-VAE report.

Loads the studies, computes Pareto fronts, budget curves, the seed-study table and the verdict,
draws every figure, and writes report.md and report.html (figures linked from figures/, tables
also as CSV under tables/). Bad input (a missing directory, no trials.parquet, an existing
--out) exits with status 2 and writes nothing; the report is built in a temporary sibling
directory and moved into place only when complete.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from analysis import columns as C
from analysis import plots
from analysis.budget import DEFAULT_RESAMPLES, budget_curves, budget_table
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
from analysis.latent import METHODS, PCA, best_vae, latent_embedding
from analysis.load import StudyLoadError, check_study_dir, epoch_curves, load_studies
from analysis.pareto import pareto_front
from analysis.tables import comparison_table, front_objectives, published_comparison
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


@dataclass(frozen=True)
class ReportSettings:
    quality: str = R.TEST_FID  # fronts, budget curves, verdict
    select: str = R.FINAL_VAL_FID  # picks each family's best trial (never a test number)
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    latent_images: int = 3000
    latent_method: str = PCA
    data_dir: str | None = None


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
    p.add_argument("--out", default="report", help="output directory; refused if it holds files (default: report)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    p.add_argument("--quality", default=R.TEST_FID, choices=QUALITY_CHOICES,
                   help="FID column for fronts, budget curves and verdict (default: test_fid)")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples of the budget curves")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the projections")
    p.add_argument("--latent-images", type=int, default=3000, help="test images in the latent-space figure")
    p.add_argument("--latent-method", default=PCA, choices=METHODS, help="projection when the latent has > 2 dims")
    p.add_argument("--data-dir", help="directory holding MNIST/raw/ for the latent figure "
                   "(default: $STUDY_DATA_DIR, else the download cache; never downloads)")
    p.add_argument("--smoke-test", action="store_true",
                   help=f"a seconds-long run: {SMOKE_RESAMPLES} resamples, {SMOKE_LATENT_IMAGES} latent images, PCA")
    return p


def settings_from_args(args: argparse.Namespace) -> ReportSettings:
    if args.resamples < 1 or args.latent_images < 1:
        raise ValueError(f"--resamples {args.resamples} and --latent-images {args.latent_images} must be at least 1.")
    settings = ReportSettings(quality=args.quality, resamples=args.resamples, seed=args.seed,
                              latent_images=args.latent_images, latent_method=args.latent_method,
                              data_dir=args.data_dir)
    if args.smoke_test:
        settings = ReportSettings(quality=args.quality, resamples=min(args.resamples, SMOKE_RESAMPLES), seed=args.seed,
                                  latent_images=min(args.latent_images, SMOKE_LATENT_IMAGES), latent_method=PCA,
                                  data_dir=args.data_dir)
    return settings


def check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; choose a directory path for the report.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} already holds files; choose a new directory or pass --overwrite to replace "
                         "it (nothing was written).")


def check_data_dir(data_dir: str | None) -> None:
    if data_dir and not has_mnist(Path(data_dir).expanduser()):
        raise ValueError(f"--data-dir {data_dir} holds no MNIST/raw/ IDX files; point it at the directory that "
                         "contains MNIST/raw/ (e.g. ../shared/data) or leave it out to skip the latent figure.")


def build_report(study_dirs: list[str | Path], out: Path, settings: ReportSettings = ReportSettings(),
                 progress=print) -> ReportResult:
    """Write the whole report into `out` (which must not exist or be empty) and return what was written."""
    started = time.perf_counter()
    studies = load_studies(study_dirs)
    trials, history = studies.trials, studies.history
    q = settings.quality
    figures_dir, tables_dir = out / FIGURES_DIR, out / TABLES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    tables_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    progress("computing fronts, budget curves, tables and verdict")
    curves = budget_curves(trials, q, resamples=settings.resamples, seed=settings.seed)
    verdict = decide(trials, curves, quality=q, select=settings.select)
    overview = study_overview(trials, q)
    comparison = comparison_table(trials, quality=q, select=settings.select)
    published = published_comparison(trials, history, select=settings.select)
    budget = budget_table(curves)
    verdicts = verdict_table(verdict)
    fronts = front_table(trials, q)
    tables = {"overview": overview, "verdict": verdicts, "seed_studies": published, "trials": comparison,
              "pareto_fronts": fronts, "budget": budget}
    for name, frame in tables.items():
        frame.to_csv(tables_dir / f"{name}.csv", index=False)

    progress("drawing figures")
    figs: dict[str, str] = {}
    finite_q = trials[q].notna().any()
    if finite_q:
        figs["pareto"] = _rel(plots.plot_pareto(trials, figures_dir / "pareto_fronts.png", quality=q), out)
        figs["hyper"] = _rel(plots.plot_hyperparameters(trials, figures_dir / "hyperparameters.png", quality=q), out)
    else:
        notes.append(f"No trial has a finite {q}: Pareto and hyperparameter figures skipped.")
    curve_rows = epoch_curves(trials, history, R.VAL_FID)
    if len(curve_rows):
        figs["curves"] = _rel(plots.plot_fid_curves(curve_rows, figures_dir / "fid_vs_epoch.png"), out)
    else:
        notes.append("No per-epoch validation FID in the histories: FID-vs-epoch figure skipped.")
    if curves:
        figs["budget"] = _rel(plots.plot_budget(curves, figures_dir / "budget.png"), out)
    front_labels = [label for _, group in trials.groupby(R.FAMILY, sort=True)
                    for label in sorted(pareto_front(group, front_objectives(q)).front,
                                        key=lambda i: trials.loc[i, q])]
    if front_labels:
        figs["mosaic"] = _rel(plots.plot_sample_mosaic(trials, front_labels, figures_dir / "pareto_samples.png",
                                                       quality=q), out)
    figs["latent"], latent_note = _latent_figure(trials, figures_dir / "vae_latent.png", settings, out, progress)
    if latent_note:
        notes.append(latent_note)

    blocks = report_blocks(studies.paths, trials, verdict, tables, figs, notes, settings)
    title = "GAN vs VAE on MNIST: study report"
    (out / REPORT_MD).write_text(to_markdown(blocks))
    (out / REPORT_HTML).write_text(to_html(blocks, title))
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    progress(f"report written in {time.perf_counter() - started:.1f} s")
    return ReportResult(out=out, files=tuple(files), verdict=verdict, notes=tuple(notes))


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def _latent_figure(trials, path: Path, settings: ReportSettings, out: Path, progress) -> tuple[str | None, str | None]:
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


def study_overview(trials: pd.DataFrame, quality: str) -> pd.DataFrame:
    """Per study and family: trial counts by stop reason, epochs, training time, best quality."""
    rows = []
    for (study, family), group in trials.groupby([R.STUDY, R.FAMILY], sort=True):
        row = {R.STUDY: study, R.FAMILY: family, C.N_TRIALS: len(group)}
        row.update({reason: int((group[R.STOP_REASON] == reason).sum()) for reason in R.STOP_REASONS})
        row[R.EPOCHS_RUN] = int(group[R.EPOCHS_RUN].fillna(0).sum())
        row[R.TRAIN_SECONDS] = float(group[R.TRAIN_SECONDS].sum(min_count=1))
        row[quality] = float(group[quality].min())
        rows.append(row)
    return pd.DataFrame(rows)


def front_table(trials: pd.DataFrame, quality: str) -> pd.DataFrame:
    """Per family, which trials are on each front (quality vs size, vs time, vs both)."""
    rows = []
    objectives = front_objectives(quality)
    for family, group in trials.groupby(R.FAMILY, sort=True):
        for objs in (objectives[:2], (objectives[0], objectives[2]), objectives):
            front = pareto_front(group, objs)
            rows.append({R.FAMILY: family, C.AXIS: " vs ".join(o.column for o in objs),
                         C.N_TRIALS: len(front.front),
                         R.TRIAL_ID: ", ".join(map(str, group.loc[list(front.front), R.TRIAL_ID])),
                         C.NOTE: f"{len(front.excluded)} trial(s) without finite values excluded"})
    return pd.DataFrame(rows)


def report_blocks(paths, trials, verdict: Verdict, tables: dict[str, pd.DataFrame], figs: dict[str, str | None],
                  notes: list[str], settings: ReportSettings) -> list[Block]:
    q = settings.quality
    hashes = sorted(set(trials[R.FEATURENET_SHA256].dropna()))
    blocks: list[Block] = [
        Heading("GAN vs VAE on MNIST: study report", 1),
        Paragraph(f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {len(trials)} trials in "
                  f"{len(paths)} studies: {', '.join(str(p) for p in paths)}. Quality is {q} (lower is better); "
                  f"each family's best trial is the one with the lowest {settings.select}, so no test number is "
                  f"used to choose it. Feature network: {', '.join(hashes) or 'none recorded'}."),
        Heading("Verdict"),
        Bullets(verdict.summary),
        Table(tables["verdict"], "Each axis and each family's value; hypervolumes use log10 sizes and times, "
                                 "scaled to [0, 1] over both families, reference 1.1."),
        Heading("Studies"),
        Table(tables["overview"], f"Trials per stop reason, epochs and training seconds summed, best {q}."),
        Heading("The seed studies' numbers, side by side"),
        Paragraph("Comparable: only Inception FID to Inception FID (and then with caveats on protocol). Our domain "
                  "FID is computed on our MNIST feature network and is on a different scale; our Inception Score "
                  "uses an MNIST classifier (1 to 10), not comparable to 2.76 without knowing theirs."),
        Table(tables["seed_studies"], "ours_seed_config: mean over our trials of the seed study's own "
                                      "configuration; ours_best: the family's best trial; blank: not measured."),
        Heading("Best, seed-configuration and Pareto trials"),
        Table(tables["trials"], "Pareto: non-dominated in (quality, total parameters, training seconds) within "
                                "its family."),
        Heading("Pareto fronts"),
    ]
    if figs.get("pareto"):
        blocks.append(Figure(figs["pareto"], f"{q} against network size and training time; staircases are each "
                                             "family's front, outlined dots its Pareto-optimal trials."))
    blocks.append(Table(tables["pareto_fronts"], "Trials on each family's fronts."))
    if figs.get("curves"):
        blocks += [Heading("Validation FID during training"),
                   Figure(figs["curves"], "Validation FID per epoch; the marker at each line's end shows how the "
                                          "trial ended (early-stopped by the scheduler, completed, diverged).")]
    blocks.append(Heading("Expected best FID at equal budget"))
    if figs.get("budget"):
        blocks.append(Figure(figs["budget"], f"Expected best {q} of k trials drawn from each study (bootstrap, "
                                             f"Lucic et al. 2018), with a {settings.resamples}-resample band."))
    blocks.append(Paragraph(verdict.summary[-1]))
    blocks.append(Table(tables["budget"], "Expected best and bootstrap band per number of trials."))
    if figs.get("hyper"):
        blocks += [Heading("Hyperparameter effects"),
                   Figure(figs["hyper"], f"{q} against learning rate, latent size and total parameters.")]
    if figs.get("mosaic"):
        blocks += [Heading("Samples of the Pareto-optimal trials"),
                   Figure(figs["mosaic"], "Last-epoch sample grids (8x8, fixed noise) of each family's Pareto trials.")]
    if figs.get("latent"):
        blocks += [Heading("Latent space of the best VAE"),
                   Figure(figs["latent"], "Encoder means of test images, coloured by digit (projected to 2-D when "
                                          "the latent has more dimensions).")]
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
        check_out(out, args.overwrite)
        check_data_dir(args.data_dir)
    except (StudyLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        result = build_report(args.studies, staging, settings)
    except StudyLoadError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
