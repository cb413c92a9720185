"""A report as a list of blocks, rendered to Markdown and to standalone HTML from the same blocks.

report.md links its images by relative path (figures/x.png), to be moved together with its figures/
folder; report.html embeds them (base64 data URIs), one self-contained file to open, mail or attach.
Its tables sit in a horizontally scrolling wrapper (TABLE_WRAP), so the widest one scrolls inside the
page instead of pushing the page wider than the window.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the report
    caption: str


Block = Heading | Paragraph | Bullets | Table | Figure


def format_cell(value) -> str:
    """Numbers to 4 significant digits, integers as integers, missing values as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cells(frame: pd.DataFrame) -> list[list[str]]:
    return [[format_cell(v.item() if hasattr(v, "item") else v) for v in row]
            for row in frame.itertuples(index=False)]


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Paragraph):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            header = [str(c) for c in b.frame.columns]
            rows = [header, ["---"] * len(header)] + _cells(b.frame)
            text = "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
            out.append(f"{text}\n\n*{b.caption}*" if b.caption else text)
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}]({b.path})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


TABLE_WRAP = "table-wrap"  # the class of the div around every table of report.html
_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222}
table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%}
figcaption,caption{color:#555;font-style:italic;caption-side:bottom;text-align:left;padding-top:4px}
.table-wrap{max-width:100%;overflow-x:auto;margin:0.5em 0}"""


def image_src(path: str, base: Path | None) -> str:
    """The figure as a data URI (base: the report's directory, where `path` is relative to), else the
    relative path (a figure that is not there stays a link)."""
    file = base / path if base is not None else None
    if file is None or not file.is_file():
        return path
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(file.suffix.lower(),
                                                                                     "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(file.read_bytes()).decode('ascii')}"


def to_html(blocks: list[Block], title: str, base: Path | None = None) -> str:
    """Standalone HTML; with `base` (the report's directory) its figures are embedded."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{html.escape(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in b.frame.columns)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                           for row in _cells(b.frame))
            caption = f"<caption>{html.escape(b.caption)}</caption>" if b.caption else ""
            out.append(f"<div class='{TABLE_WRAP}'><table>{caption}<thead><tr>{head}</tr></thead>"
                       f"<tbody>{body}</tbody></table></div>")
        elif isinstance(b, Figure):
            src = html.escape(image_src(b.path, base))
            out.append(f"<figure><img src='{src}' alt='{html.escape(b.caption)}'>"
                       f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
