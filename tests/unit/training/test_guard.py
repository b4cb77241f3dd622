import json
from dataclasses import replace

import pytest
import torch

from energybench.core.errors import UserError
from energybench.training.config import GuardConfig, apply_overrides
from energybench.training.guard import divergence_reason, largest_logit
from energybench.training.recipes import preset_config
from energybench.training.run import train
from energybench.training.trainer import step_numbers


def config(jpeg_tar, *extra):
    cfg = preset_config("normal", "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(jpeg_tar)))
    return apply_overrides(cfg, ["data.train_subset=640", "optim.batch_size=64", "optim.epochs=2",
                                 "data.eval_subset=100", "model.width=8", "run.dynamics_probe=0",
                                 "optim.schedule=constant", *extra])


def test_divergence_reasons():
    cfg = GuardConfig(max_abs_energy=100, max_gap=10)
    ok = float(largest_logit(torch.ones(2, 3)))
    assert divergence_reason(1.0, ok, {}, cfg) is None
    assert "loss is nan" in divergence_reason(float("nan"), ok, {}, cfg)
    assert "beyond the bound" in divergence_reason(1.0, float(largest_logit(-torch.ones(2, 3) * 1e3)), {}, cfg)
    assert "logits are not finite" in divergence_reason(1.0, float(largest_logit(torch.tensor([[0.0, float("nan")]]))), {}, cfg)
    assert "gap_px" in divergence_reason(1.0, ok, {"gap_px": -50.0}, cfg)
    assert "E_sgld is inf" in divergence_reason(1.0, ok, {"E_sgld": float("inf")}, cfg)


def test_step_numbers_match_the_separate_reads():
    """One transfer gives what .item() on each would: loss, right answers, largest |logit| and the
    tensor stats (float stats pass through)."""
    torch.manual_seed(0)
    logits, y = torch.randn(16, 10), torch.randint(0, 10, (16,))
    loss, stat = torch.nn.functional.cross_entropy(logits, y), logits.mean()
    got = step_numbers(loss, logits, y, {"E": stat, "already": 0.5})
    assert got == (loss.item(), int((logits.argmax(1) == y).sum()), logits.abs().max().item(),
                   {"E": stat.item(), "already": 0.5})


def test_provoked_divergence_rolls_back_lowers_lr_and_finishes(tmp_path, jpeg_tar):
    # lr 1e4 blows the logits past the bound within a few steps; one roll-back with factor 1e-5
    # brings it to 0.1, which trains.
    cfg = config(jpeg_tar, "optim.lr=1e4", "run.guard.lr_factor=1e-5", "run.guard.max_abs_energy=1e3")
    ckpt = train(cfg, tmp_path / "r", torch.device("cpu"))
    events = [json.loads(x) for x in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    assert len(events) == 1 and events[0]["event"] == "diverged"
    assert events[0]["lr_scale"] == pytest.approx(1e-5) and events[0]["reseeds"] == 1
    raw = torch.load(ckpt, weights_only=True)
    assert raw["progress"]["finished"] and raw["progress"]["lr_scale"] == pytest.approx(1e-5)
    log = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and log[-1]["lr"] == pytest.approx(0.1)
    assert all(torch.isfinite(v).all() for v in raw["state_dict"].values() if v.is_floating_point())


def test_gives_up_after_the_configured_retries(tmp_path, jpeg_tar):
    cfg = config(jpeg_tar, "optim.lr=1e6", "run.guard.retries=2", "run.guard.lr_factor=0.9")
    with pytest.raises(UserError, match="diverged 3 times .* giving up after run.guard.retries=2"):
        train(cfg, tmp_path / "r", torch.device("cpu"))
    events = (tmp_path / "r" / "events.jsonl").read_text().splitlines()
    assert len(events) == 2


def test_guard_off_fails_fast(tmp_path, jpeg_tar):
    cfg = config(jpeg_tar, "optim.lr=1e6", "run.guard.enabled=false")
    with pytest.raises(UserError, match="training diverged at epoch 1"):
        train(cfg, tmp_path / "r", torch.device("cpu"))


def test_roll_backs_show_in_records_and_table_cells(tmp_path, jpeg_tar, exact_npz):
    """A run the guard rolled back says so in every record and in every table cell built on it."""
    from energybench.evaluation.runner import evaluate
    from energybench.reporting.render import render
    from energybench.reporting.report import build
    from energybench.reporting.table_specs import load_table

    cfg = config(jpeg_tar, "optim.lr=1e4", "run.guard.lr_factor=1e-5", "run.guard.max_abs_energy=1e3")
    ckpt = train(cfg, tmp_path / "r", torch.device("cpu"))
    (record,) = evaluate(ckpt, ["clean"], data=str(exact_npz), n=20, out_dir=tmp_path / "e",
                         log=lambda m: None)
    assert record["model"]["training"]["rollbacks"] == 1
    assert record["model"]["training"]["lr_scale"] == pytest.approx(1e-5)
    record["_file"] = record["file"]
    text = render(build(load_table("jeat-t1"), [record]), "md")
    assert "‡" in text.split("\n- ")[0]  # in the cell
    assert "rolled its training back 1 time (learning rate finally x1e-05)" in text
