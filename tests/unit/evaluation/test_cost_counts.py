"""The cost plan counts what the metrics really do: each metric's declared gradient passes against
the forward passes a counting wrapper sees (a forward with an input gradient is a pass, one
without a third of one), and a long plan names a smaller --n that fits a first look."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from energybench.evaluation import costs, runner
from energybench.evaluation.runner import evaluate
from energybench.handles.checkpoint import load_model
from energybench.metrics import METRICS

REPO = Path(__file__).resolve().parents[3]


class Counting(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.passes = model, 0.0

    def forward(self, x):
        self.passes += len(x) if torch.is_grad_enabled() and x.requires_grad else len(x) / 3
        return self.model(x)


@pytest.mark.parametrize("metric, overrides", [
    ("pgd20", {}),
    ("attack-sanity", {"max_images": 20, "more_steps": 30, "restarts": 2, "square_queries": 30}),
    ("robust-curve", {"eps_grid": "0,4/255,8/255"}),
])
def test_declared_passes_match_the_passes_made(metric, overrides, exact_npz, tmp_path):
    model = Counting(load_model(REPO / "checkpoints" / "pgd-at-smoke.pt").model)
    evaluate(model, [metric], data=str(exact_npz), n=20, out_dir=tmp_path, overrides=overrides, log=lambda m: None)
    cls = METRICS.get(metric)
    params = cls.Params(**{k: (tuple(float(eval(v)) for v in x.split(",")) if k == "eps_grid" else x)
                           for k, x in overrides.items()})
    declared = cls(params).gradient_passes(20, 10)
    # the declared count leaves out one batch's checks (a second forward, the 16-image gradient probe)
    assert 0.75 * model.passes <= declared <= 1.05 * model.passes, (metric, declared, model.passes)


def test_autoattack_counts_its_first_attack_and_names_the_rest():
    metric = METRICS.get("autoattack")
    assert metric(metric.Params()).gradient_passes(5000, 10) == pytest.approx(1000 * (100 + 2 / 3))
    assert "still robust" in metric.uncounted


def test_a_long_plan_names_a_smaller_n(exact_npz, tmp_path, monkeypatch, run_cli):
    """PGD-20 on 1,017 images at 0.06 s a pass is 21 minutes: the plan says --n 500 takes 10."""
    monkeypatch.setattr(costs, "seconds_per_pass", lambda model, x, batch=None: 0.06)
    code, out, err = run_cli("eval", "--ckpt", REPO / "checkpoints" / "normal-smoke.pt", "--data", exact_npz,
                             "--metric", "pgd20", "--out", tmp_path, "--device", "cpu")
    assert code == 0, err
    (plan,) = [line for line in err.splitlines() if line.startswith("plan:")]
    assert "roughly 21 minutes" in plan and "a first look with --n 500 takes about 10 minutes" in plan, plan
    assert runner.costs.smaller_n([METRICS.get("pgd20")(METRICS.get("pgd20").Params())], 100, 10, 10.0) is None
