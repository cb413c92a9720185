"""How report.html lays out in a real browser: page width against the window, per window width.

    python benchmarks/report_in_browser.py results/cmp-report/report.html            # 1280, 1024, 800 px
    python benchmarks/report_in_browser.py R/report.html --widths 1440 --screenshot-dir shots

Runs headless Chromium (Debian's `chromium` package, or $CHROMIUM) on a copy of the report with a
one-line script that writes the laid-out page's scrollWidth and clientWidth into the title, reads
them back from the dumped DOM, and prints one row per window width: whether the page is wider than
the window (a table or figure overflowing it), and the widest table's own width and whether it
scrolls inside its block. With --screenshot-dir it saves a full-window PNG per width, to look at.
Nothing here runs in the test suite (CI has no browser); tests/test_analysis_report.py checks the
CSS that keeps the page inside the window.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXIT_BAD_INPUT = 2
DEFAULT_WIDTHS = (1280, 1024, 800)
WINDOW_HEIGHT = 1000
PROBE = """<script>window.addEventListener('load', () => {
  const root = document.documentElement;
  const tables = [...document.querySelectorAll('table')].map(t => ({w: t.scrollWidth,
    box: t.parentElement.clientWidth}));
  const widest = tables.reduce((a, b) => (b.w > a.w ? b : a), {w: 0, box: 0});
  document.title = 'PROBE' + JSON.stringify({scroll: root.scrollWidth, client: root.clientWidth,
    tables: tables.length, widest: widest.w, widest_box: widest.box});
});</script>"""


def browser() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def chromium(binary: str, url: str, width: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--window-size={width},{WINDOW_HEIGHT}", "--virtual-time-budget=5000", *extra,
                           url],
                          capture_output=True, text=True, timeout=120)


def measure(binary: str, report: Path, width: int) -> dict:
    """The probe's numbers for one window width."""
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / "report.html"
        probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
        done = chromium(binary, probed.as_uri(), width, "--dump-dom")
    found = re.search(r"<title>PROBE(\{.*?\})</title>", done.stdout)
    if not found:
        raise RuntimeError(f"chromium printed no layout ({done.stderr.strip()[-300:]})")
    return json.loads(found.group(1).replace("&quot;", '"'))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path, help="a report.html that analysis.report wrote")
    p.add_argument("--widths", nargs="+", type=int, default=list(DEFAULT_WIDTHS), help="window widths, px")
    p.add_argument("--screenshot-dir", type=Path, help="save report-<width>px.png per width here")
    args = p.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report}: no such file; give the report.html that analysis.report wrote.",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    binary = browser()
    if binary is None:
        print("error: no Chromium found; install it (apt-get install chromium) or set $CHROMIUM.",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{'window px':>9}  {'page px':>7}  overflows  tables  {'widest table px':>15}  "
          "scrolls in its block")
    worst = 0
    for width in args.widths:
        m = measure(binary, args.report.resolve(), width)
        over = m["scroll"] > m["client"]
        worst = max(worst, m["scroll"] - m["client"])
        scrolls = "yes" if m["widest"] > m["widest_box"] else "no (fits)"
        print(f"{width:>9}  {m['scroll']:>7}  {'YES' if over else 'no':>9}  {m['tables']:>6}  "
              f"{m['widest']:>15}  {scrolls}")
        if args.screenshot_dir:
            args.screenshot_dir.mkdir(parents=True, exist_ok=True)
            shot = (args.screenshot_dir / f"report-{width}px.png").resolve()
            chromium(binary, args.report.resolve().as_uri(), width, f"--screenshot={shot}")
            print(f"{'':>9}  screenshot: {shot}")
    print("the page never overflows the window" if worst <= 0 else f"the page overflows by up to {worst} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
