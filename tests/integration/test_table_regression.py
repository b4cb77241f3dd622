"""CI regression of the papers' table numbers.

tests/reference/ci/ holds the output of `energybench reproduce --preset ci` (records, rendered
tables) and tolerances.json: one tolerance per metric, derived by scripts/ci_reference.py from the
spread of the same reproduction under different thread counts and CPU instruction sets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from energybench.reporting.cells import collect_records
from energybench.reporting.render import FORMATS, render
from energybench.reporting.report import build
from energybench.reporting.table_specs import load_table, table_names

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "ci"
SMOKE_REPORT = Path(__file__).resolve().parents[2] / "reports" / "reproduce-smoke"


def values_by_run(records_dir: Path) -> dict[tuple[str, str], dict]:
    """{(run, metric): record}; a run's records behind test-time purification are the run '<run>+purified'."""
    def run(r):
        return Path(r["_file"]).parent.name + ("+purified" if (r.get("identity") or {}).get("purification") else "")

    return {(run(r), r["metric"]): r for r in collect_records([records_dir])}


def out_of_tolerance(new: dict, reference: dict, tolerances: dict) -> list[str]:
    """Every (run, metric) whose value left its metric's tolerance, as readable lines."""
    problems = []
    for key in sorted(set(new) | set(reference)):
        if key not in new or key not in reference:
            problems.append(f"{key}: only in {'the new run' if key in new else 'the reference'}")
            continue
        tol = tolerances[key[1]]
        ref, got = reference[key]["value"], new[key]["value"]
        allowed = tol.get("abs", 0.0) + tol.get("rel", 0.0) * abs(ref)
        if not abs(got - ref) <= allowed:
            problems.append(f"{key[0]} {key[1]}: {got:.6g} vs reference {ref:.6g} (allowed ± {allowed:.3g})")
    return problems


@pytest.mark.parametrize("folder", [REFERENCE, SMOKE_REPORT], ids=["ci-reference", "smoke-report"])
def test_committed_results_render_to_the_committed_tables(folder):
    records = collect_records([folder / "records"])
    assert records, f"no records under {folder}"
    for name in table_names():
        grid = build(load_table(name), records)
        for fmt in FORMATS:
            assert render(grid, fmt) == (folder / "tables" / f"{name}.{fmt}").read_text(), (name, fmt)


def test_every_reference_metric_has_a_justified_tolerance():
    tolerances = json.loads((REFERENCE / "tolerances.json").read_text())["tolerances"]
    metrics = {metric for _, metric in values_by_run(REFERENCE / "records")}
    assert metrics <= set(tolerances)
    for metric in metrics:
        assert tolerances[metric]["why"] and (tolerances[metric].get("abs", 0) > 0 or tolerances[metric].get("rel", 0) > 0)


def test_tolerance_check_catches_a_changed_number():
    reference = values_by_run(REFERENCE / "records")
    tolerances = json.loads((REFERENCE / "tolerances.json").read_text())["tolerances"]
    changed = {k: dict(v) for k, v in reference.items()}
    key = next(k for k in changed if k[1] == "pgd20")
    changed[key]["value"] += 2 * (tolerances["pgd20"].get("abs", 0) + tolerances["pgd20"].get("rel", 0)) + 1e-6
    assert out_of_tolerance(reference, reference, tolerances) == []
    assert [line.split(":")[0] for line in out_of_tolerance(changed, reference, tolerances)] == [f"{key[0]} pgd20"]


@pytest.mark.slow
def test_ci_reproduction_stays_within_tolerance_of_the_reference(tmp_path, jpeg_tar):
    """Re-run the whole CI reproduction (train 10 tiny models, evaluate, render) and compare."""
    from energybench.workflows.reproduce import reproduce

    index = reproduce("ci", tmp_path / "out", tmp_path / "runs", {"cifar10": str(jpeg_tar)},
                      torch.device("cpu"), log=lambda m: None)
    assert index.exists()
    tolerances = json.loads((REFERENCE / "tolerances.json").read_text())["tolerances"]
    problems = out_of_tolerance(values_by_run(tmp_path / "out" / "records"),
                                values_by_run(REFERENCE / "records"), tolerances)
    assert not problems, "table numbers left their tolerance:\n" + "\n".join(problems)
