"""Records as text people read: protocol lines, spreads, attack-check lines, and the summaries `eval`
prints and writes (summary.txt, summary.md).
"""

from __future__ import annotations

import math

from energybench.core.errors import option
from energybench.core.stats import wilson_interval
from energybench.records.store import attack_step_key, protocol_norm

NORM_TEXT = {"Linf": "L-inf", "L2": "L2"}  # how a threat model reads in summaries


def _per_255(value) -> str:
    return f"{value * 255:g}/255" if isinstance(value, (int, float)) else str(value)


def budget_text(value, norm: str | None) -> str:
    """A budget as it is written for its norm: x/255 for L-inf, a plain length for L2."""
    return f"{value:g}" if norm == "L2" and isinstance(value, (int, float)) else _per_255(value)


def protocol_text(record: dict) -> str:
    """The protocol of a record in a few words: the threat model and the attack's eps and step
    (x/255 for L-inf, lengths for L2) where the metric has them, then every other value that
    differs from the metric's defaults (`changed_params`)."""
    params, changed = record.get("params") or {}, record.get("changed_params") or {}
    step = attack_step_key(params)
    norm = protocol_norm(params)
    pixel = {"eps", "radius", "flat_radius", step}
    parts = [f"{label} {budget_text(params[key], norm)}" for key, label in (("eps", "eps"), (step, "step"))
             if key in params and params[key] is not None]
    grid = params.get("eps_grid")
    if isinstance(grid, (list, tuple)) and len(grid) > 1:  # a curve over budgets: its range and size
        grid_norm = norm or "Linf"
        parts.append(f"eps {budget_text(min(grid), grid_norm)} to {budget_text(max(grid), grid_norm)} "
                     f"({len(set(grid))} budgets)")
        norm = grid_norm
        if "step_ratio" in params:
            parts.append(f"step {params['step_ratio']:g} eps")
    if parts and norm is not None:
        parts[0] = f"{NORM_TEXT.get(norm, norm)} {parts[0]}"
    parts += [f"{key} {budget_text(value, norm) if key in pixel else value}"
              for key, value in changed.items() if key not in ("eps", step, "norm", "eps_grid", "step_ratio")]
    return ", ".join(parts) or "default"


def raised_checks(record: dict) -> dict[str, dict]:
    """The attack-failure checks a record raised (its `diagnostics` block: energybench.attacks.diagnostics)."""
    checks = record.get("diagnostics")
    if not isinstance(checks, dict):
        return {}
    return {name: c for name, c in checks.items() if isinstance(c, dict) and c.get("flag")}


def _evidence_text(evidence: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in evidence.items())


def check_lines(record: dict) -> list[str]:
    """One line per raised check: what was found, the evidence, and what to do."""
    return [f"{record['metric']}: {c.get('title', name)} ({_evidence_text(c.get('evidence') or {})}): "
            f"{c.get('advice', '')}" for name, c in raised_checks(record).items()]


SMALL_N = 100  # below this many images an accuracy's spread is shown as its Wilson interval


def spread_text(record: dict) -> str:
    """How precise a record's value is, for the summary: ± its standard error to two significant
    digits (in % for accuracies); for an accuracy on fewer than SMALL_N images, or at 0% or 100%
    where the binomial standard error is 0, the 95% Wilson interval instead."""
    stderr, n = record.get("stderr"), record.get("n")
    if record.get("unit") == "fraction" and isinstance(n, int) and n > 0:
        p = record["value"]
        if n < SMALL_N or p in (0.0, 1.0):
            low, high = wilson_interval(p, n)  # clipped: rounding may leave -1e-17 ("-0.0")
            return f"95% CI {100 * max(0.0, float(low)):.1f}–{100 * min(1.0, float(high)):.1f}"
        return "" if stderr is None else f"{100 * stderr:.2f}" if 100 * stderr >= 0.1 else f"{100 * stderr:.2g}"
    if stderr is None or not math.isfinite(stderr):
        return ""
    return f"{stderr:.2g}"


def threat_model_mismatch(record: dict) -> str | None:
    """A sentence when a RobustBench model of one threat model (Linf or L2) was attacked in the
    other norm (a number its leaderboard does not rank), else None."""
    info = record.get("model") or {}  # a zoo model's record carries robustbench_name and threat_model
    model_norm, attack_norm = info.get("threat_model"), protocol_norm(record.get("params") or {})
    if model_norm not in NORM_TEXT or attack_norm is None or attack_norm == model_norm:
        return None
    return (f"attacked in {NORM_TEXT.get(attack_norm, attack_norm)}, but {info.get('robustbench_name', 'the model')} "
            f"is a RobustBench {NORM_TEXT[model_norm]} model (its leaderboard number is {NORM_TEXT[model_norm]})")


def checks_status(record: dict) -> str:
    """The attack checks in a word: '⚑ k raised', 'passed' (every check assessed and passed), or
    'p passed, q not assessed' (a check whose precondition was empty, e.g. no image survived,
    has assessed nothing and never counts as passed)."""
    checks = {n: c for n, c in (record.get("diagnostics") or {}).items() if isinstance(c, dict)}
    raised = raised_checks(record)
    if raised:
        return f"⚑ {len(raised)} raised"
    unassessed = [n for n, c in checks.items() if c.get("flag") is None]
    if not unassessed:
        return "passed"
    return f"{len(checks) - len(unassessed)} passed, {len(unassessed)} not assessed"


def format_summary(records: list[dict]) -> str:
    """A Markdown table of records (metric, protocol, value in % for accuracies, ± stderr, n,
    attack checks, seconds), then the attack-failure checks they raised and any reliability
    warnings the metrics recorded."""
    lines = ["| metric | protocol | value | ± stderr or 95% CI | n | attack checks | seconds |",
             "|---|---|---:|---:|---:|---|---:|"]
    warnings, raised = [], []
    for r in records:
        pct = r.get("unit") == "fraction"
        scale = 100.0 if pct else 1.0
        value = f"{r['value'] * scale:.2f} %" if pct else f"{r['value']:.4g}"
        err = spread_text(r)
        checks = r.get("diagnostics")
        status = "" if not isinstance(checks, dict) else checks_status(r)
        lines.append(f"| {r['metric']} | {protocol_text(r)} | {value} | {err} | {r['n']} | {status} | "
                     f"{r['wall_seconds']:.1f} |")
        raised += [f"- ⚑ {line}" for line in check_lines(r)]
        warnings += [f"- {r['metric']}: {w}" for w in (r.get("extra") or {}).get("warnings", [])]
        mismatch = threat_model_mismatch(r)
        if mismatch:
            warnings.append(f"- {r['metric']}: {mismatch}")
        counted_wrong = (r.get("extra") or {}).get("nonfinite_counted_wrong")
        if counted_wrong:
            warnings.append(f"- {r['metric']}: {counted_wrong} of {r['n']} images had NaN or infinite logits "
                            f"and were counted as wrong ({option('nonfinite', 'wrong')})")
    if raised:
        lines += ["", "Attack-failure checks raised (the robust accuracy may be overstated):", *raised]
    if warnings:
        lines += ["", "Warnings raised by the metrics:", *warnings]
    return "\n".join(lines)
