"""Tables as text: Markdown, LaTeX and CSV.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from energybench.core.errors import UserError

FORMATS = ("md", "tex", "csv")


def render(grid: Grid, fmt: str) -> str:
    if fmt == "md":
        lines = [f"### {grid.title}", "", "| " + " | ".join(grid.header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(grid.header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in grid.rows]
        return "\n".join(lines + [""] + [f"- {n}" for n in grid.footnotes]) + "\n"
    if fmt == "tex":
        cols = "l" + "r" * (len(grid.header) - 1)
        lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{_tex(grid.title)}}}", "\\small",
                 f"\\begin{{tabular}}{{{cols}}}", "\\toprule", " & ".join(map(_tex, grid.header)) + " \\\\",
                 "\\midrule"]
        lines += [" & ".join(map(_tex, r)) + " \\\\" for r in grid.rows]
        lines += ["\\bottomrule", "\\end{tabular}", "\\par\\smallskip\\footnotesize"]
        lines += [_tex(n) + "\\\\" for n in grid.footnotes]
        return "\n".join(lines + ["\\end{table}"]) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(grid.tidy[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(grid.tidy)
        return out.getvalue()
    raise UserError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$", "†": r"$^\dagger$",
        "§": r"\S{}", "‡": r"$^\ddagger$", "⚑": r"$^{!}$", "·": r"$\cdot$", "≈": r"$\approx$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "σ": r"$\sigma$", "–": "--"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


@dataclass
class Grid:
    """A rendered table before formatting: header, body rows of text cells, footnotes."""

    title: str
    header: list[str]
    rows: list[list[str]]
    footnotes: list[str]
    tidy: list[dict]  # one dict per (entry, measure) for CSV
    comparisons: list = field(default_factory=list)  # (measure label, stats.Comparison) of every tested pair
