"""A report as blocks (headings, paragraphs, tables, images), rendered to Markdown or
HTML, and the number formats the report uses."""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field


@dataclass
class Doc:
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def h(self, text: str) -> None:
        self.blocks.append(("h", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[object]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def image(self, name: str, alt: str) -> None:
        self.blocks.append(("img", (name, alt)))

    def markdown(self) -> str:
        out = ["# addray report", ""]
        for kind, val in self.blocks:
            if kind == "h":
                out += [f"## {val}", ""]
            elif kind == "p":
                out += [str(val), ""]
            elif kind == "img":
                out += [f"![{val[1]}]({val[0]})", ""]
            else:
                header, rows = val
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
                out.append("")
        return "\n".join(out)

    def html(self) -> str:
        out = ["<!doctype html><meta charset='utf-8'><title>addray report</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
               "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
               "</style><h1>addray report</h1>"]
        items: list[str] = []  # a run of "- " paragraphs: one list
        for kind, val in self.blocks:
            if items and not (kind == "p" and str(val).startswith("- ")):
                out.append("<ul>" + "".join(items) + "</ul>")
                items = []
            if kind == "h":
                out.append(f"<h2>{inline(str(val))}</h2>")
            elif kind == "p" and str(val).startswith("- "):
                items.append(f"<li>{inline(str(val)[2:])}</li>")
            elif kind == "p":
                out.append(f"<p>{inline(str(val))}</p>")
            elif kind == "img":
                out.append(f"<img src='{html.escape(val[0])}' alt='{html.escape(val[1])}' "
                           f"width='800'>")
            else:
                header, rows = val
                cells = "".join(f"<th>{inline(str(c))}</th>" for c in header)
                body = "".join("<tr>" + "".join(f"<td>{inline(str(c))}</td>" for c in r)
                               + "</tr>" for r in rows)
                out.append(f"<table><tr>{cells}</tr>{body}</table>")
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
        return "\n".join(out)


def inline(text: str) -> str:
    """The report's Markdown inside a line (``**bold**``, ```code```) as HTML, the rest
    escaped."""
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2%}"


def count(n: float | None) -> str:
    """A parameter count: 812, 32.2K, 4.79M (and 2.5e+14 for an extrapolated bound)."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "not reached" if n == math.inf else "-"
    if n >= 1e9:
        return f"{n:.1e}"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else f"{n:.0f}"
