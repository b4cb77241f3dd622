"""Paper comparisons that hold: model selection by the right criterion, settings as the public
code has them (TRADES' schedule, the adversarial-training WideResNet, EB-JDAT's train-mode
sampling, each table row's sampler), several seeds with mean ± std, and paired significance tests
checked against scipy."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from energybench.core.errors import UserError
from energybench.core.stats import compare, mcnemar_exact, paired_bootstrap
from energybench.reporting.cells import cell_protocol, collect_records, measured_cell
from energybench.reporting.render import render
from energybench.reporting.report import build
from energybench.reporting.table_specs import load_table
from energybench.training.config import apply_overrides
from energybench.training.recipes import preset_config

REPO = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------- model selection


def _train_with_holdout(recipe: str, jpeg_tar, out: Path, epochs: int = 4):
    from energybench.training.run import train

    cfg = preset_config(recipe, "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(jpeg_tar)))
    cfg = apply_overrides(cfg, ["data.train_subset=1200", "data.holdout=200", f"optim.epochs={epochs}",
                                "data.eval_subset=0", "run.robust_eval=100", "run.dynamics_probe=0",
                                "recipe.steps=2" if recipe == "pgd-at" else "optim.lr=0.05"])
    train(cfg, out, torch.device("cpu"))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    best = torch.load(out / "best.pt", weights_only=True)
    return log, best


def test_a_recipe_without_an_attack_keeps_its_most_accurate_epoch(jpeg_tar, tmp_path):
    log, best = _train_with_holdout("normal", jpeg_tar, tmp_path / "normal")
    accs = [row["val_acc"] for row in log]
    assert best["selection"]["by"] == "val_acc" and best["selection"]["rule"] == "auto"
    assert best["selection"]["epoch"] == 1 + accs.index(max(accs))
    assert best["selection"]["value"] == max(accs)


def test_a_recipe_that_trains_on_attacks_keeps_its_most_robust_epoch(jpeg_tar, tmp_path):
    log, best = _train_with_holdout("pgd-at", jpeg_tar, tmp_path / "pgd-at", epochs=3)
    robust = [row["val_robust_acc"] for row in log]
    assert best["selection"]["by"] == "val_robust_acc"
    assert best["selection"]["epoch"] == 1 + robust.index(max(robust))
    assert "PGD-10" in best["selection"]["attack"]


def test_the_selection_rule_reaches_the_records(jpeg_tar, tmp_path, exact_npz):
    from energybench.evaluation.runner import evaluate

    _train_with_holdout("normal", jpeg_tar, tmp_path / "run", epochs=2)
    (record,) = evaluate(tmp_path / "run" / "best.pt", ["clean"], data=str(exact_npz), n=50,
                         out_dir=tmp_path / "eval", log=lambda m: None)
    assert record["model"]["checkpoint"]["which"] == "best" and record["model"]["checkpoint"]["by"] == "val_acc"
    from energybench.reporting.cells import Scale

    assert "by clean accuracy on 200 held-out" in Scale.of(record).describe()


# --------------------------------------------------------------------------- settings as published


def _trades_code_lr(epoch_1_based: int, lr: float = 0.1) -> float:
    """adjust_learning_rate of the TRADES repository's train_trades_cifar10.py, written out."""
    if epoch_1_based >= 100:
        return lr * 0.001
    if epoch_1_based >= 90:
        return lr * 0.01
    if epoch_1_based >= 75:
        return lr * 0.1
    return lr


def test_trades_trains_76_epochs_with_the_official_drop():
    from energybench.training.optim import learning_rate

    cfg = preset_config("trades", "paper")
    assert cfg.optim.epochs == 76
    steps = 10  # per epoch
    for epoch in range(cfg.optim.epochs):
        for step in (0, steps - 1):
            ours = learning_rate(cfg.optim, epoch * steps + step, cfg.optim.epochs * steps)
            assert ours == pytest.approx(_trades_code_lr(epoch + 1)), epoch


@pytest.mark.parametrize("depth", [28, 34])
def test_robustbench_wide_resnet_loads_strictly_and_gives_the_same_logits(depth):
    from energybench.handles.zoo import robustbench
    from energybench.models import create_model

    public = robustbench().model_zoo.architectures.wide_resnet.WideResNet(depth=depth, widen_factor=10).eval()
    ours = create_model("wrn", depth=depth, width=10, layout="trades", normalize="none").eval()
    ours.load_state_dict(public.state_dict(), strict=True)
    assert set(ours.state_dict()) == set(public.state_dict())
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), public(x), atol=1e-5)


def test_the_adversarial_training_presets_use_that_layout():
    for recipe, normalize in (("pgd-at", "cifar"), ("trades", "none")):
        kwargs = preset_config(recipe, "paper").model.kwargs
        assert kwargs["layout"] == "trades" and kwargs["normalize"] == normalize
    assert preset_config("jem", "paper").model.kwargs.get("layout", "jem") == "jem"


def test_ebjdat_samples_in_train_mode_as_its_code(tmp_path):
    from energybench.energy.sgld import SGLDConfig, sgld
    from energybench.models import create_model

    assert preset_config("eb-jdat", "paper").params.sgld_train_mode is True
    assert preset_config("jem", "paper").params.sgld_train_mode is False
    torch.manual_seed(0)
    model = create_model("tiny-cnn", width=8).train()  # has batch norm
    x0 = torch.rand(16, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    cfg = SGLDConfig(steps=3, step_size=0.1, noise=0.01, train_mode=True)
    out = sgld(model, x0, cfg, gen)
    # the reference: the same steps written out, the model left in train mode
    reference_model = create_model("tiny-cnn", width=8).train()
    reference_model.load_state_dict(before)
    gen = torch.Generator().manual_seed(1)
    x = x0.clone()
    for _ in range(3):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad((-torch.logsumexp(reference_model(x), 1)).sum(), x)
        x = (x.detach() - 0.1 * g + 0.01 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    assert torch.allclose(out, x, atol=1e-6)
    assert not torch.equal(model.state_dict()["bn1.running_mean"] if "bn1.running_mean" in before else
                           next(v for k, v in model.state_dict().items() if k.endswith("running_mean")),
                           next(v for k, v in before.items() if k.endswith("running_mean")))
    eval_model = create_model("tiny-cnn", width=8).train()
    eval_model.load_state_dict(before)
    sgld(eval_model, x0, replace(cfg, train_mode=False), torch.Generator().manual_seed(1))
    assert all(torch.equal(eval_model.state_dict()[k], before[k]) for k in before)  # eval mode: untouched


def test_each_row_generates_with_its_papers_sampler():
    from energybench.workflows.plan import plan

    spec = load_table("jeat-t2")
    entries = {e["key"]: e for e in spec["entries"]}
    is_measure = next(m for m in spec["measures"] if m["key"] == "is")
    assert cell_protocol(is_measure, entries["at"])["mode"] == "conditional"
    assert cell_protocol(is_measure, entries["jem"])["mode"] == "joint"
    runs = {r.name: r for r in plan(["jeat-t2"])}
    assert ("is", {"mode": "conditional"}) in runs["pgd-at"].evaluations
    assert ("is", {"mode": "joint"}) in runs["jeat"].evaluations
    # a record made with another sampler does not fill the cell
    records = collect_records([REPO / "tests" / "reference" / "ci" / "records"])
    template = copy.deepcopy(next(r for r in records if r["model"]["recipe"] == "pgd-at" and r["metric"] == "clean" and "purification" not in r["identity"]))
    from energybench.metrics import METRICS

    fake = {**template, "metric": "is", "unit": "score", "value": 5.0, "stderr": 0.1,
            "identity": {**template["identity"], "metric": "is", "metric_version": METRICS.get("is").version}}

    for mode, fills in (("joint", False), ("conditional", True)):
        params = METRICS.get("is")(METRICS.get("is").Params(mode=mode, n_per_class=5000)).protocol()
        record = {**fake, "params": params, "_file": f"x/{mode}.json"}
        assert (measured_cell([record], entries["at"], is_measure, spec["paper_scale"]) is not None) is fills


# --------------------------------------------------------------------------- seeds and significance


def _seed_copies(record: dict, values: list[float]) -> list[dict]:
    out = []
    for seed, value in enumerate(values):
        r = copy.deepcopy(record)
        r["value"] = value
        r["model"]["training"]["seed"] = seed
        r["model"]["sha256"] = r["identity"]["model_sha256"] = f"{seed:064d}"
        r["_file"] = f"records/run-seed{seed}/{Path(record['_file']).name}"
        out.append(r)
    return out


def test_seeds_give_mean_and_standard_deviation():
    records = collect_records([REPO / "tests" / "reference" / "ci" / "records"])
    clean = next(r for r in records if r["model"]["recipe"] == "jeat" and r["metric"] == "clean" and "purification" not in r["identity"])
    seeds = _seed_copies(clean, [0.30, 0.34, 0.32])
    spec = load_table("jeat-t3")
    entry = next(e for e in spec["entries"] if e["key"] == "jeat")
    measure = next(m for m in spec["measures"] if m["metric"] == "clean")
    m = measured_cell(seeds, entry, measure, spec["paper_scale"])
    assert m.value == pytest.approx(32.0) and m.stderr == pytest.approx(np.std([30, 34, 32], ddof=1))
    assert m.seeds == (0, 1, 2)
    text = render(build(spec, seeds), "md")
    assert "32.00 ± 2.00 [a†; 3 seeds]" in text and "3 seeds: the mean ± standard deviation" in text


def test_two_candidates_that_differ_are_an_error_naming_both():
    records = collect_records([REPO / "tests" / "reference" / "ci" / "records"])
    clean = next(r for r in records if r["model"]["recipe"] == "jeat" and r["metric"] == "clean" and "purification" not in r["identity"])
    other = copy.deepcopy(clean)
    other["identity"]["data"] = {**other["identity"]["data"], "hash": "another test set"}
    other["_file"] = "elsewhere/clean.json"
    with pytest.raises(UserError, match=r"elsewhere/clean.json.*differ in test data"):
        build(load_table("jeat-t3"), [clean, other])
    twin = copy.deepcopy(clean)
    twin["identity"]["seed"] = 7
    twin["_file"] = "other-seed/clean.json"
    with pytest.raises(UserError, match=r"differ in evaluation seed"):
        build(load_table("jeat-t3"), [clean, twin])


def test_mcnemar_matches_scipys_binomial_test():
    rng = np.random.default_rng(0)
    for n, p_a, p_b in [(300, 0.3, 0.35), (1000, 0.5, 0.5), (50, 0.9, 0.2), (20, 0.5, 0.5)]:
        a, b = rng.random(n) < p_a, rng.random(n) < p_b
        ours = mcnemar_exact(a, b)
        discordant = int((a != b).sum())
        reference = scipy.stats.binomtest(int((a & ~b).sum()), discordant, 0.5).pvalue if discordant else 1.0
        assert ours["p"] == pytest.approx(reference, rel=1e-9, abs=1e-12)
    assert mcnemar_exact(np.ones(10, bool), np.ones(10, bool))["p"] == 1.0


def test_paired_bootstrap_matches_scipys():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 1.0, 400)
    b = a - 0.1 + rng.normal(0, 0.3, 400)
    ours = paired_bootstrap(a, b, resamples=4000, seed=3)
    reference = scipy.stats.bootstrap((a, b), lambda x, y, axis=-1: (x - y).mean(axis=axis), paired=True,
                                      n_resamples=4000, method="percentile", random_state=3)
    assert ours["low"] == pytest.approx(reference.confidence_interval.low, abs=0.01)
    assert ours["high"] == pytest.approx(reference.confidence_interval.high, abs=0.01)
    assert ours["difference"] == pytest.approx(0.1, abs=0.05)
    # the sentence a report prints says both ends and whether the interval holds 0
    significant = compare("a", a, "b", b)
    assert significant.significant and significant.detail.endswith(
        f"[{significant.result['low']:.3g}, {significant.result['high']:.3g}] excludes 0")
    same = compare("a", a, "b", a + rng.normal(0, 0.3, 400))
    assert not same.significant and same.detail.endswith("contains 0")


def test_tables_mark_rows_that_do_not_differ_significantly(exact_npz, tmp_path):
    from energybench.evaluation.runner import evaluate

    for name in ("jem", "jeat"):
        evaluate(REPO / "checkpoints" / f"{name}-smoke.pt", ["clean", "pgd20"], data=str(exact_npz), n=300,
                 out_dir=tmp_path / name, log=lambda m: None)
    records = collect_records([tmp_path])
    grid = build(load_table("jeat-t3"), records)
    text = render(grid, "md")
    from energybench.records.outcomes import paired

    jem, jeat = ([r for r in records if r["model"]["recipe"] == n and r["metric"] == "pgd20" and "purification" not in r["identity"]][0] for n in ("jem", "jeat"))
    a, b = paired({**jem, "file": jem["_file"]}, {**jeat, "file": jeat["_file"]}, "robust")
    p = mcnemar_exact(a, b)["p"]
    row = next(line for line in text.splitlines() if line.startswith("| JEM |"))
    assert ("≈" in row.split("|")[5]) is (p >= 0.05)
    assert f"McNemar exact p = {p:.2g}" in text
    tidy = {(r["entry"], r["measure"]): r for r in grid.tidy}
    assert (tidy[("JEM", "PGD-20")]["not_significant_vs"] == "JEAT") is (p >= 0.05)
    from energybench.reporting.report import orderings

    line = next(x for x in orderings(load_table("jeat-t3"), grid) if " PGD-20: " in x)
    assert "paper JEAT > JEM (30.55 vs 6.11)" in line  # JEAT's Table 3 ordering
    holds = tidy[("JEAT", "PGD-20")]["measured"] > tidy[("JEM", "PGD-20")]["measured"]
    assert (": holds" in line) is holds and (", significant" in line) is (p < 0.05)


def test_reproduce_trains_every_seed_and_reports_them(jpeg_tar, tmp_path):
    from energybench.workflows.reproduce import reproduce

    index = reproduce("ci", tmp_path / "out", tmp_path / "runs", {"cifar10": str(jpeg_tar)}, torch.device("cpu"),
                      tables=["jeat-t1"], seeds=2, log=lambda m: None)
    assert (tmp_path / "runs" / "normal-seed1" / "last.pt").exists()
    seeds = {torch.load(tmp_path / "runs" / name / "last.pt", weights_only=True)["config"]["run"]["seed"]
             for name in ("normal", "normal-seed1")}
    assert seeds == {0, 1}
    table = (tmp_path / "out" / "tables" / "jeat-t1.md").read_text()
    assert "2 seeds]" in table and "2 seeds: the mean ± standard deviation" in table
    assert "2 training seeds per run" in index.read_text()
    assert list((tmp_path / "out" / "records" / "normal-seed1").glob("pgd20-*.outcomes.npz"))
