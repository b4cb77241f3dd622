"""An evaluation estimated beyond LONG_RUN_HOURS starts only when confirmed: `--yes`, a yes on a
terminal, or `yes=True` in Python; otherwise one line with the estimate, before any metric runs.
The machine's speed is replaced by a fixed per-pass time, so nothing here depends on it."""

from __future__ import annotations

import pytest
import torch
from testkit import seeded_model, synthetic_npz

import energybench
from energybench.core.errors import UserError
from energybench.evaluation import costs, runner

pytestmark = pytest.mark.synthetic

SLOW = 10.0  # seconds per image gradient pass: 24 images x 1,000 steps = 24,000 passes, 2.8 days


@pytest.fixture
def slow_machine(monkeypatch):
    monkeypatch.setattr(costs, "seconds_per_pass", lambda model, x, batch=None: SLOW)


def _run(tmp_path, **kwargs):
    data = synthetic_npz(tmp_path / "data.npz")
    return energybench.evaluate(seeded_model(), str(data), metrics=["pgd20"], out_dir=tmp_path / "out",
                                device="cpu", steps=1000, **kwargs)


def test_a_run_beyond_the_bound_is_refused_with_its_estimate_before_anything_runs(tmp_path, slow_machine):
    with pytest.raises(UserError) as caught:
        _run(tmp_path)
    message = str(caught.value)
    assert "days from a timed warm-up" in message and "beyond the 24 hours" in message, message
    assert "yes=True" in message and "\n" not in message  # the API's own argument name
    assert not any((tmp_path / "out").glob("*.json")) if (tmp_path / "out").exists() else True


def test_yes_starts_it(tmp_path, monkeypatch):
    # the estimate is beyond the bound, but the real work is 1,000 PGD steps
    # of a small net on 24 images: seconds
    monkeypatch.setattr(costs, "seconds_per_pass", lambda model, x, batch=None: SLOW)
    (record,) = _run(tmp_path, yes=True)
    assert record["metric"] == "pgd20" and record["n"] == 24


def test_the_plan_says_durations_in_units_a_person_reads():
    assert costs.duration_text(45) == "45 s"
    assert costs.duration_text(600) == "10 minutes"
    assert costs.duration_text(7200) == "2.0 hours"
    assert costs.duration_text(3 * 86400) == "3.0 days"


def test_the_command_line_asks_on_a_terminal_and_refuses_in_a_script(tmp_path, monkeypatch, run_cli):
    monkeypatch.setattr(runner, "ANNOUNCE_PASSES", 0)  # so that a one-step attack is costed at all
    monkeypatch.setattr(costs, "seconds_per_pass", lambda model, x, batch=None: 20_000.0)  # 24 passes: 5.6 days
    data = synthetic_npz(tmp_path / "data.npz")
    program = torch.export.export(seeded_model().eval(), (torch.rand(2, 3, 32, 32),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}})
    torch.export.save(program, str(tmp_path / "model.pt2"))
    args = ["eval", "--model", str(tmp_path / "model.pt2"), "--data", str(data), "--metric", "pgd20",
            "--param", "steps=1", "--device", "cpu", "--out", str(tmp_path / "out")]
    code, out, err = run_cli(*args)  # stdin is not a terminal here: a script
    assert code == 2 and "confirm with --yes" in err and len(err.strip().splitlines()) == 1, err
    code, out, err = run_cli(*args, "--yes")
    assert code == 0, err


def test_an_linf_budget_beyond_any_published_one_needs_confirming(tmp_path):
    """eps 0.5 (an L2 length) given to an L-inf attack is 127.5/255: refused in one line that
    names both ways out; confirmed, it runs at the budget given; 16/255 runs without asking."""
    data = synthetic_npz(tmp_path / "data.npz")
    run = dict(metrics=["pgd20"], out_dir=tmp_path / "out", device="cpu", steps=1)
    with pytest.raises(UserError) as caught:
        energybench.evaluate(seeded_model(), str(data), eps=0.5, **run)
    message = str(caught.value)
    assert "127.5/255" in message and "norm=L2" in message and "yes=True" in message, message
    (record,) = energybench.evaluate(seeded_model(), str(data), eps=0.5, yes=True, **run)
    assert record["params"]["eps"] == 0.5
    (usual,) = energybench.evaluate(seeded_model(), str(data), eps=16 / 255, **run)
    assert usual["params"]["eps"] == 16 / 255
    (l2,) = energybench.evaluate(seeded_model(), str(data), eps=0.5, norm="L2", **run)
    assert l2["params"]["norm"] == "L2"
