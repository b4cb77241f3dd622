"""The reproduction's index page (README.md of its output folder): the tables, the runs, their
protocols and the time each took.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from energybench.workflows.plan import GALLERY, ReproductionPreset, RunPlan


def train_seconds(run_dir: Path) -> float:
    log = run_dir / "log.jsonl"
    if not log.exists():
        return 0.0
    return sum(json.loads(line).get("epoch_seconds", 0.0) for line in log.read_text().splitlines() if line.strip())


def index_page(p: ReproductionPreset, runs: list[RunPlan], status: dict, rendered: dict, out_dir: Path,
               made_by: list[str], seconds: dict, comparisons: list[str] = (),
               ordering_lines: list[str] = ()) -> str:
    """The page; `made_by`: the commands that made it (each invocation into this folder), as the
    face that ran them words them."""
    commands = ", then ".join(f"`{c}`" for c in made_by)
    lines = [f"# Reproduction: preset `{p.name}`", "",
             f"Made by {commands} (last: {time.strftime('%Y-%m-%d')}). Re-running resumes: finished "
             "runs are not retrained, existing records are reused.", "",
             f"Scale: {p.summary}. Recipe preset `{p.recipe_preset}`"
             + (f" with `{' '.join(p.train_overrides)}`" if p.train_overrides else "")
             + "; test images per metric: " + ", ".join(f"{k} {v if v else 'all'}" for k, v in p.test_images.items())
             + f"; {p.seeds} training seed{'s' if p.seeds > 1 else ''} per run"
             + (" (the tables give the mean ± standard deviation over seeds, and mark with ≈ the "
                "differences between rows that are not significant at 5%)" if p.seeds > 1 else "")
             + f". Evaluated checkpoint: `{p.checkpoint}`"
             + (" (best.pt, the epoch with the highest held-out PGD-10 robust accuracy for recipes "
                "that train against an attack, clean accuracy for the others, where the run has a "
                "holdout; else last.pt)" if p.checkpoint == "best" else
                " (last.pt, the end of training)")
             + ". Every measured cell names its scale; † marks a scale unlike the paper's.", "",
             f"Compute: {seconds['training'] / 60:.1f} minutes of training and {seconds['evaluation'] / 60:.1f} "
             "minutes of evaluation (sums over the runs' epochs and the records; sampling for the "
             "galleries not included).", "",
             "## Runs", "", "| run | recipe | dataset | training (s) | evaluated | status |",
             "|---|---|---|---:|---|---|"]
    for run in runs:
        s = status[run.name]
        state = ("skipped: " + s["skipped"]) if "skipped" in s else ("failed: " + s["failed"]) if "failed" in s \
            else ("not computed: " + ", ".join(s["refused"]) if s["refused"] else "complete")
        lines.append(f"| {run.name} | {run.recipe}{_params_text(run.params)} | {run.dataset} | "
                     f"{s.get('train_seconds_total', 0):.0f} | {s.get('evaluated', '–')} | {state} |")
    reasons = {v for s in status.values() for v in s.get("refused", {}).values()}
    if reasons:
        lines += ["", "Metrics not computed here, and why:", ""] + [f"- {r}" for r in sorted(reasons)]
    lines += ["", "## Tables", "", "Also as LaTeX and CSV in [tables/](tables/).", ""]
    for text in rendered.values():
        lines += [text, ""]
    if ordering_lines:
        lines += ["## Do the papers' orderings hold?", "",
                  "For every two entries of a measure with a published and a measured number: whether the "
                  "paper's ordering holds in the measured numbers, and whether the measured difference is "
                  "significant at 5% (exact McNemar test on per-image correctness, or a paired bootstrap "
                  "for scores, on the same test images; several seeds pooled as matched (image, seed) "
                  "pairs). At a scale unlike the paper's (†), orderings are what can be compared.", ""]
        lines += [f"- {line}" for line in ordering_lines] + [""]
    if p.figures:
        lines += ["## Figures", ""]
        if comparisons:
            lines += ["### All recipes", "", "Energy histograms side by side, and robust vs clean accuracy "
                      "(PNG at 300 dpi, PDF beside):", ""]
            lines += [f"![{Path(c).stem}]({c})" for c in comparisons] + [""]
        for run in runs:
            figs = status[run.name].get("figures")
            if not figs:
                continue
            lines += [f"### {run.name}", ""]
            lines.append(f"Samples (SGLD on E(x, y), eq. 17, {GALLERY['steps']} steps from the class "
                         "Gaussian; one row per class), energy contour, energy dynamics, energy "
                         "histogram and memorization grid; raw data (.npz) and records (.json) beside "
                         f"each in [figures/{run.name}/](figures/{run.name}/).")
            lines.append("")
            for fig in figs:
                lines.append(f"![{run.name}: {Path(fig).stem}]({fig})")
            lines.append("")
    return "\n".join(lines) + "\n"


def _params_text(params: dict) -> str:
    return "".join(f" ({k} = {v * 255:.0f}/255)" if k == "sigma" else f" ({k} = {v})" for k, v in params.items())
