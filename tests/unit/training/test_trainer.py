import json
from dataclasses import replace

import pytest
import torch

from energybench.core.errors import UserError
from energybench.training.config import OptimConfig, apply_overrides
from energybench.training.optim import learning_rate
from energybench.training.recipes import preset_config
from energybench.training.run import train


def small_config(jpeg_tar, *extra):
    cfg = preset_config("normal", "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(jpeg_tar)))
    return apply_overrides(cfg, ["data.train_subset=600", "optim.batch_size=100", "optim.epochs=2",
                                 "data.eval_subset=100", "run.deterministic=true", *extra])


def test_resume_after_kill_is_exact(tmp_path, jpeg_tar):
    cfg = small_config(jpeg_tar, "run.checkpoint_every_steps=4", "model.kwargs.width=8")
    full = train(cfg, tmp_path / "full", torch.device("cpu"))
    # 6 steps per epoch; checkpoints at steps 4, 6 (epoch end) and 8. "Kill" the second run
    # after 11 steps: its newest checkpoint is from step 8, two steps into epoch 2.
    train(cfg, tmp_path / "killed", torch.device("cpu"), stop_after_steps=11)
    mid = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    assert mid["progress"]["global_step"] == 8 and mid["progress"]["step_in_epoch"] == 2
    resumed = train(cfg, tmp_path / "killed", torch.device("cpu"), resume=True)
    a = torch.load(full, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    log_a = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log_b] == [1, 2]
    for ra, rb in zip(log_a, log_b):
        assert ra["loss"] == pytest.approx(rb["loss"]) and ra["eval_acc"] == rb["eval_acc"]


def test_existing_run_is_not_overwritten(tmp_path, jpeg_tar):
    cfg = small_config(jpeg_tar, "optim.epochs=1")
    train(cfg, tmp_path / "r", torch.device("cpu"))
    with pytest.raises(UserError, match="already holds a run.*resume"):
        train(cfg, tmp_path / "r", torch.device("cpu"))
    with pytest.raises(UserError, match="nothing to resume"):
        train(cfg, tmp_path / "empty", torch.device("cpu"), resume=True)


def test_log_has_the_documented_fields(tmp_path, jpeg_tar):
    cfg = small_config(jpeg_tar, "optim.epochs=1")
    train(cfg, tmp_path / "r", torch.device("cpu"))
    (record,) = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    for key in ("epoch", "loss", "train_acc", "eval_acc", "lr", "images_per_s", "epoch_seconds"):
        assert isinstance(record[key], (int, float)), key
    assert 0 <= record["train_acc"] <= 1 and record["images_per_s"] > 0


def test_learning_rate_schedules():
    multi = OptimConfig(lr=0.1, schedule="multistep", milestones=(0.5, 0.75), gamma=0.1)
    assert [learning_rate(multi, s, 100) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cos = OptimConfig(lr=0.1, schedule="cosine")
    assert learning_rate(cos, 0, 100) == pytest.approx(0.1)
    assert learning_rate(cos, 50, 100) == pytest.approx(0.05)
    warm = OptimConfig(lr=1e-4, schedule="constant", warmup_steps=1000)
    assert learning_rate(warm, 0, 10_000) == pytest.approx(1e-7)
    assert learning_rate(warm, 999, 10_000) == pytest.approx(1e-4)
    with pytest.raises(UserError, match="schedule must be one of multistep, cosine, constant"):
        OptimConfig(schedule="step")


def test_training_learns(trained_run):
    log = [json.loads(x) for x in (trained_run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]
    assert log[-1]["eval_acc"] > 0.3  # 10 classes: chance is 0.1


def test_holdout_and_best_checkpoint_by_robust_accuracy(tmp_path, jpeg_tar, exact_npz):
    """data.holdout removes a class-balanced, seeded set from training; each epoch logs PGD-10
    robust accuracy on it, and best.pt is the epoch with the highest (first of ties); eval says
    which checkpoint a record is of."""
    from energybench.data import load_split
    from energybench.evaluation.runner import evaluate
    from energybench.training.splits import balanced_subset, split_holdout

    cfg = small_config(jpeg_tar, "optim.epochs=3", "data.holdout=100", "run.robust_eval=60",
                       "run.select_by=robust")  # (normal would select by clean accuracy under 'auto')
    last = train(cfg, tmp_path / "r", torch.device("cpu"))
    log = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    robust = [r["val_robust_acc"] for r in log]
    assert all(r["val_robust_n"] == 60 and r["val_n"] == 100 for r in log)
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=True)
    assert best["selection"]["epoch"] == 1 + robust.index(max(robust)) == best["progress"]["epoch"]
    assert best["selection"]["by"] == "val_robust_acc" and best["selection"]["value"] == max(robust)
    raw = torch.load(last, weights_only=True)
    assert raw["meta"]["num_train_images"] + raw["meta"]["num_holdout_images"] == 600
    # the split: disjoint, class-balanced, the same for the same seed
    data = balanced_subset(load_split(jpeg_tar, "train"), 400)
    kept, held = split_holdout(data, 100, seed=0)
    assert len(kept) == 300 and torch.bincount(held.labels, minlength=10).tolist() == [10] * 10
    as_rows = lambda d: {bytes(img.numpy()) for img in d.images}  # noqa: E731
    assert not as_rows(kept) & as_rows(held)
    assert torch.equal(split_holdout(data, 100, seed=0)[1].images, held.images)
    records = {p: evaluate(tmp_path / "r" / p, ["clean"], data=str(exact_npz), n=10,
                           out_dir=tmp_path / f"e-{p}", log=lambda m: None)[0] for p in ("last.pt", "best.pt")}
    assert records["last.pt"]["model"]["checkpoint"] == {"which": "last"}
    assert records["best.pt"]["model"]["checkpoint"]["which"] == "best"
    assert records["best.pt"]["model"]["checkpoint"]["epoch"] == best["selection"]["epoch"]
