"""`python -m analysis.report` end to end on launched studies, and its refusals of bad input."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from analysis import columns as C
from analysis.report import REPORT_HTML, REPORT_MD, ReportSettings, build_report, main
from study import results as R

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {
    "figures/pareto_fronts.png",
    "figures/fid_vs_epoch.png",
    "figures/budget.png",
    "figures/hyperparameters.png",
    "figures/vae_latent.png",
}
TABLES = {
    f"tables/{n}.csv"
    for n in (
        "overview",
        "verdict",
        "headline",
        "protocols",
        "seed_studies",
        "trials",
        "pareto_fronts",
        "budget",
        "param_importances",
        "metric_agreement",
        "metric_leaders",
    )
}
MOSAIC = "figures/pareto_samples.png"
IMPORTANCES = "figures/param_importances.png"  # drawn when a study's optuna.db has enough complete trials


@pytest.fixture(scope="module")
def smoke_report(launched_studies, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    code = main(
        [
            str(launched_studies.gan),
            str(launched_studies.vae),
            "--out",
            str(out),
            "--smoke-test",
            "--data-dir",
            str(launched_studies.data_dir),
        ]
    )
    return code, out


@pytest.mark.slow  # launched_studies: two real launcher runs (Ray)
def test_smoke_report_writes_every_table_and_figure(smoke_report):
    code, out = smoke_report
    assert code == 0
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    # the sample mosaic needs a usable trial (analysis.quality); ⅛-width smoke trials may have none
    mosaic = {MOSAIC} if (out / MOSAIC).is_file() else set()
    assert mosaic or "no sample mosaic" in (out / REPORT_MD).read_text()
    assert files == {REPORT_MD, REPORT_HTML} | FIGURES | TABLES | {IMPORTANCES} | mosaic
    importances = pd.read_csv(out / "tables" / "param_importances.csv")
    assert set(importances[R.STUDY]) == {"gan-smoke", "vae-smoke"}  # the launcher kept both Optuna studies
    assert importances.groupby(R.STUDY)[C.IMPORTANCE].sum().round(6).eq(1).all()
    assert {"arch", "latent_dim"} <= set(importances[C.PARAMETER])
    for figure in FIGURES | {IMPORTANCES} | mosaic:
        with Image.open(out / figure) as image:
            assert image.format == "PNG"
            assert round(image.info["dpi"][0]) == 200
            assert min(image.size) >= 600  # paper-sized, not a thumbnail
    markdown = (out / REPORT_MD).read_text()
    assert set(re.findall(r"\]\((figures/[^)]+)\)", markdown)) == FIGURES | {IMPORTANCES} | mosaic
    html = (out / REPORT_HTML).read_text()
    embedded = re.findall(r"<img src='data:image/png;base64,([^']+)'", html)  # report.html: self-contained
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(
        (out / figure).read_bytes() for figure in FIGURES | {IMPORTANCES} | mosaic)
    for heading in (
        "## Verdict",
        "## Headline numbers",
        "## Protocols",
        "## The seed studies' numbers, side by side",
        "## Pareto fronts",
        "## Expected test FID at equal budget",
        "## Latent space of the best VAE",
        "## Hyperparameter importances (Optuna)",
    ):
        assert heading in markdown
    assert "- quality: " in markdown and "- budget: lower expected test FID" in markdown
    # launched smoke studies: one seed each, so every axis is provisional; the default TPE sampler is not
    # Lucic's protocol (that needs random sampling without early stopping)
    verdict_lines = [line for line in markdown.splitlines() if line.startswith("- ") and ": " in line][:6]
    assert all("single seed, provisional" in line.lower() for line in verdict_lines)
    assert ("trials proposed by the tpe sampler, scheduler none: not Lucic et al.'s protocol") in markdown
    assert "no test number is used" not in markdown and "Every choice is made on validation" in markdown
    assert "| FID | gan | 18.24 |" in markdown  # the published figures, side by side
    assert not list(out.parent.glob(".report.*"))  # the staging directory was moved, not left behind


def test_report_without_mnist_skips_only_the_latent_figure(tiny_study_dirs, tmp_path):
    result = build_report(
        [tiny_study_dirs.gan, tiny_study_dirs.vae],
        tmp_path / "r",
        ReportSettings(resamples=50, data_dir=str(tmp_path / "no-mnist")),
        progress=lambda *_: None,
    )
    files = {p.as_posix() for p in result.files}
    mosaic = {MOSAIC} & files  # needs a usable trial (analysis.quality), else a note says so
    assert files == {REPORT_MD, REPORT_HTML} | (FIGURES - {"figures/vae_latent.png"}) | TABLES | mosaic
    # the tiny studies are not launched: no optuna.db, so no importances either (a note each)
    assert len(result.notes) == 4 + (not mosaic) and result.notes[-1].startswith("MNIST not found")
    assert all("no optuna.db" in note for note in result.notes[:2])
    assert result.notes[2].startswith("search luck not measured: the studies hold no study.json")
    assert "## Skipped" in (tmp_path / "r" / REPORT_MD).read_text()


class _HtmlShape(HTMLParser):
    """Each <table>'s enclosing elements, every src/href, and the style sheet of report.html."""

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.tables: list[list[tuple[str, str]]] = []
        self.links: list[str] = []
        self.style = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag == "table":
            self.tables.append(list(self.stack))
        self.stack.append((tag, attrs.get("class") or ""))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if self.stack and self.stack[-1][0] == "style":
            self.style += data


def test_report_html_is_one_file_whose_tables_scroll_inside_the_page(tiny_study_dirs, tmp_path):
    """No browser on the CI machine: the width guarantee is the CSS box model's. A table inside a block
    with max-width:100% and overflow-x:auto cannot widen the page (it scrolls inside the block), and
    the body is at most 1100 px: so every table, the widest included, must sit in such a block."""
    out = tmp_path / "r"
    build_report([tiny_study_dirs.gan, tiny_study_dirs.vae], out,
                 ReportSettings(resamples=50, data_dir=str(tmp_path / "no-mnist")), progress=lambda *_: None)
    alone = tmp_path / "elsewhere" / REPORT_HTML  # one file, moved away from figures/
    alone.parent.mkdir()
    shutil.copy(out / REPORT_HTML, alone)
    shape = _HtmlShape()
    shape.feed(alone.read_text())
    assert shape.links and all(link.startswith("data:image/png;base64,") for link in shape.links)
    assert len(shape.links) == len(list((out / "figures").glob("*.png")))
    rule = re.search(r"\.table-wrap\{([^}]*)\}", shape.style)
    assert rule and "overflow-x:auto" in rule.group(1) and "max-width:100%" in rule.group(1)
    assert "max-width:1100px" in shape.style
    widest = max(pd.read_csv(p).shape[1] for p in (out / "tables").glob("*.csv"))
    assert widest >= 10 and len(shape.tables) >= 5  # the wide tables are there, and wrapped:
    assert all(enclosing and enclosing[-1] == ("div", "table-wrap") for enclosing in shape.tables)


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda tmp: [str(tmp / "missing")], "does not exist"),
        (lambda tmp: [str(tmp)], "holds no trials.parquet"),
    ],
)
def test_bad_study_directories_exit_2_and_write_nothing(tmp_path, capsys, make_input, message):
    out = tmp_path / "out"
    assert main([*make_input(tmp_path), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_existing_report_is_not_overwritten_and_a_bad_data_dir_is_refused(
    tiny_study_dirs, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main([str(tiny_study_dirs.gan), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert main([str(tiny_study_dirs.gan), "--out", str(out), "--overwrite", "--smoke-test"]) == 0
    assert (out / REPORT_MD).is_file() and not (out / "keep.txt").exists()
    fresh = tmp_path / "fresh"
    assert main([str(tiny_study_dirs.gan), "--out", str(fresh), "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "holds no MNIST/raw/" in capsys.readouterr().err
    assert not fresh.exists()


def test_mixed_protocols_exit_2_and_write_nothing_unless_allowed(tiny_study_dirs, tmp_path, capsys):
    other = tmp_path / "studies" / "other-vae"
    shutil.copytree(tiny_study_dirs.vae, other)
    trials = pd.read_parquet(other / R.TRIALS_FILE)
    trials[R.STUDY] = "other-vae"
    trials[R.hp_column("eval_samples")] = 2000  # a study that scored FIDs on 2,000 samples
    trials.to_parquet(other / R.TRIALS_FILE)
    out = tmp_path / "out"
    assert main([str(tiny_study_dirs.gan), str(other), "--out", str(out), "--smoke-test"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: these studies were run under different protocols") and "--allow-mixed" in err
    )
    assert "generated samples per FID differs (tiny-gan: 400; other-vae: 2000)" in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    assert (
        main(
            [
                str(tiny_study_dirs.gan),
                str(other),
                "--out",
                str(out),
                "--smoke-test",
                "--allow-mixed",
                "--data-dir",
                str(tmp_path / "no-mnist-here"),
            ]
        )
        == 2
    )  # (bad --data-dir: still refused)
    assert (
        main([str(tiny_study_dirs.gan), str(other), "--out", str(out), "--smoke-test", "--allow-mixed"]) == 0
    )
    markdown = (out / REPORT_MD).read_text()
    assert "pooled with --allow-mixed" in markdown
    protocols = pd.read_csv(out / "tables" / "protocols.csv")
    assert protocols[C.PLAN_EVAL_SAMPLES].tolist() == [400, 2000]


def test_analysis_never_imports_ray():
    code = "import sys, analysis.report, analysis.latent; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
