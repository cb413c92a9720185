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

from analysis import agreement, captions, plots
from analysis import columns as C
from analysis.budget import budget_curves, budget_table
from analysis.captions import TITLE
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
from analysis.search_luck import matching_tables, table_finals
from analysis.selection import SELECT, family_of, group_column
from analysis.tables import (
    comparison_table,
    front_objectives,
    front_table,
    headline_table,
    published_comparison,
    study_overview,
    usable_front,
)
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
    # study directories of a learning-curve table, the search's luck; None: the committed tables when
    # their space and preset are the studies' own (search_luck.matching_tables); (): none
    lab_table: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ReportResult:
    out: Path
    files: tuple[Path, ...]  # relative to out
    verdict: Verdict
    notes: tuple[str, ...]  # what was skipped and why
    luck_source: str = ""  # which learning-curve table measured the search's luck, or why none (in notes too)


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
    p.add_argument("--lab-table", nargs="+", default=None, metavar="TABLE_STUDY_DIR",
                   help="study directories of a learning-curve table of the same space and preset (the "
                   "search lab's random studies without stopping): the verdict then gives how far a repeat "
                   "of the search could move each family's pick (best of n, 5-95 %%). Default: the "
                   "committed tables (benchmarks/results/lab/tables, the quick preset's spaces) when the "
                   "studies' space and preset are theirs")
    p.add_argument("--no-lab-table", action="store_true",
                   help="no learning-curve table, not even the default")
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
                              data_dir=args.data_dir, allow_mixed=args.allow_mixed,
                              lab_table=lab_tables(args))
    if args.smoke_test:
        settings = ReportSettings(quality=args.quality, resamples=min(args.resamples, SMOKE_RESAMPLES),
                                  seed=args.seed, latent_images=min(args.latent_images, SMOKE_LATENT_IMAGES),
                                  latent_method=PCA, data_dir=args.data_dir, allow_mixed=args.allow_mixed,
                                  lab_table=lab_tables(args))
    return settings


def lab_tables(args: argparse.Namespace) -> tuple[str, ...] | None:
    if args.no_lab_table and args.lab_table:
        raise ValueError("--lab-table and --no-lab-table contradict each other; give one of them.")
    return () if args.no_lab_table else None if args.lab_table is None else tuple(args.lab_table)


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
    trials = studies.search()  # seed-study reproductions feed only the seed table
    replicates = studies.replicates[studies.replicates[R.STUDY].isin(set(trials[R.STUDY]))]
    q, select = settings.quality, settings.select
    (out / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    (out / TABLES_DIR).mkdir(parents=True, exist_ok=True)

    progress("computing fronts, budget curves, tables and verdict")
    curves = budget_curves(trials, q, select=select)
    if settings.lab_table is None:
        table_dirs, luck_note = matching_tables(study_dirs)
    else:
        table_dirs = settings.lab_table
        luck_note = f"search luck from --lab-table ({len(table_dirs)} studies)" if table_dirs else ""
    lab_table = table_finals(table_dirs) if table_dirs else None
    verdict = decide(trials, curves, quality=q, select=select, replicates=replicates,
                     resamples=settings.resamples, seed=settings.seed, lab_table=lab_table)
    leaders = agreement.leaders(trials, group_column(trials), select)
    # the quality axis names the metrics that agree on its leader and says so when they do not
    verdict = dataclasses.replace(verdict, summary=(
        f"{verdict.summary[0]} {agreement.agreement_sentence(leaders)}", *verdict.summary[1:]))
    tables, notes = report_tables(studies, trials, replicates, curves, verdict, leaders, settings)
    notes += [luck_note] if luck_note else []
    for name, frame in tables.items():
        frame.to_csv(out / TABLES_DIR / f"{name}.csv", index=False)

    progress("drawing figures")
    figs, figure_notes = draw_figures(trials, studies.history, curves, tables, out, settings, progress)
    notes += figure_notes

    blocks = report_blocks(studies, trials, verdict, tables, figs, notes, settings)
    (out / REPORT_MD).write_text(to_markdown(blocks))
    (out / REPORT_HTML).write_text(to_html(blocks, TITLE, base=out))  # figures embedded
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    progress(f"report written in {time.perf_counter() - started:.1f} s")
    return ReportResult(out=out, files=tuple(files), verdict=verdict, notes=tuple(notes),
                        luck_source=luck_note)


def report_tables(studies: Studies, trials: pd.DataFrame, replicates: pd.DataFrame, curves,
                  verdict: Verdict, leaders: pd.DataFrame,
                  settings: ReportSettings) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Every table of the report by name (its CSV's name too), and the notes of what was skipped."""
    q, select = settings.quality, settings.select
    tables = {"overview": study_overview(trials, q, select), "verdict": verdict_table(verdict),
              "headline": headline_table(trials, replicates, q, select),
              "protocols": studies.protocols,
              "seed_studies": published_comparison(studies.trials, studies.history, select=select,
                                                   replicates=studies.replicates),
              "trials": comparison_table(trials, quality=q, select=select),
              "pareto_fronts": front_table(trials, select), "budget": budget_table(curves),
              "metric_agreement": agreement.rank_correlations(trials), "metric_leaders": leaders}
    search_paths = list(dict.fromkeys(trials[C.STUDY_PATH]))  # not the seed-study reproductions
    tables["param_importances"], notes = study_importances(search_paths, trials, seed=settings.seed)
    return tables, list(notes)


def draw_figures(trials: pd.DataFrame, history: pd.DataFrame, curves, tables: dict[str, pd.DataFrame],
                 out: Path, settings: ReportSettings, progress) -> tuple[dict[str, str | None], list[str]]:
    """Draw every figure that has data under out/figures/: their paths relative to `out` by key, and a
    note for each figure skipped."""
    q, select = settings.quality, settings.select
    figures_dir = out / FIGURES_DIR
    figs: dict[str, str | None] = {}
    notes: list[str] = []
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
    return figs, notes


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


def report_blocks(studies: Studies, trials, verdict: Verdict, tables: dict[str, pd.DataFrame],
                  figs: dict[str, str | None], notes: list[str], settings: ReportSettings) -> list[Block]:
    """The document: analysis.captions.SECTIONS in order, each part filled from the texts, lists, tables
    and figures; a section whose `needs` is missing is left out, and so is a figure not drawn."""
    q, select = settings.quality, settings.select
    texts = {**captions.paragraphs(trials, studies.paths, len(studies.trials), datetime.now(UTC),
                                   verdict.summary[-1], quality=q, select=select,
                                   replicated=verdict.replicated, allow_mixed=settings.allow_mixed),
             **captions.captions(q, select, captions.sampler_captions(studies.protocols))}
    lists = {"summary": (*verdict.summary, verdict.luck), "notes": tuple(notes)}
    blocks: list[Block] = [Heading(TITLE, 1), Paragraph(texts["intro"])]
    for section in captions.SECTIONS:
        if section.needs and not (figs.get(section.needs) or lists.get(section.needs)):
            continue
        blocks.append(Heading(section.heading))
        for part in section.parts:
            if part.kind == captions.TEXT:
                blocks.append(Paragraph(texts[part.key]))
            elif part.kind == captions.BULLETS:
                blocks.append(Bullets(lists[part.key]))
            elif part.kind == captions.TABLE:
                blocks.append(Table(tables[part.key], texts[part.caption_key]))
            elif figs.get(part.key):
                blocks.append(Figure(figs[part.key], texts[part.caption_key]))
    return blocks


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    try:
        settings = settings_from_args(args)
        for study in (*args.studies, *(args.lab_table or ())):
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
    for line in (*result.verdict.summary, result.verdict.luck):
        print(f"  {line}")
    if result.luck_source:
        print(f"  ({result.luck_source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
