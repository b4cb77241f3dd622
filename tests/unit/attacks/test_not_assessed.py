"""A check whose precondition is empty has assessed nothing: it is null with its reason, never
'passed', in the record and in the summary (for a model the attack breaks completely, every check
that looks at the surviving images)."""

from __future__ import annotations

import pytest
import torch

from energybench.attacks import diagnostics
from energybench.records.text import checks_status

pytestmark = pytest.mark.synthetic


def test_checks_on_survivors_are_not_assessed_when_none_survived():
    n = 8
    none_survived = torch.zeros(n, dtype=torch.bool)
    grads = diagnostics.unavailable_gradients(torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool),
                                              none_survived)
    margins = torch.linspace(1, -1, 10).view(-1, 1).expand(10, n)
    steps = diagnostics.incomplete_optimisation(margins, margins[-1], none_survived)
    black = diagnostics.black_box(0, 0, n)
    for check in (grads, steps, black):
        record = check.as_record()
        assert record["flag"] is None and "advice" not in record, record
        assert record["note"], record
    assert "no image survived" in grads.note and "no image survived" in steps.note
    assert "no image robust" in black.note


def test_empty_inputs_are_not_assessed():
    assert diagnostics.probability_output(torch.zeros(0, 10)).flag is None
    assert diagnostics.randomized_forward(torch.nn.Linear(3, 2), torch.zeros(0, 3), torch.zeros(0, 2)).flag is None


def test_the_summary_never_calls_an_unassessed_check_passed():
    def record(*flags):
        return {"diagnostics": {f"c{i}": {"title": f"c{i}", "flag": f} for i, f in enumerate(flags)}}

    assert checks_status(record(False, False)) == "passed"
    assert checks_status(record(False, None, None)) == "1 passed, 2 not assessed"
    assert checks_status(record(True, None)) == "⚑ 1 raised"
