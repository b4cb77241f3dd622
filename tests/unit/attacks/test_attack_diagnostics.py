"""Robustness numbers that cannot be fooled: per-image outcomes, the indicators of attack failure,
EOT-PGD for randomized models, the public codes' evaluation protocols, and the robustness curve.

Deliberately broken models each raise their indicator: a non-differentiable quantising input
layer (unavailable gradients), fresh input noise on every forward (randomized forward; EOT-PGD
then finds a lower accuracy), a softmax output (probability output), an input gradient replaced by
noise of its own scale (gradient direction). The shipped checkpoints raise none, and the unbounded
attack reaches 0% on each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from energybench.attacks.broken_models import FreshNoise, NoiseGradient, Quantised, Softmaxed
from energybench.core.errors import UserError
from energybench.evaluation.runner import evaluate
from energybench.handles.checkpoint import load_model
from energybench.records.outcomes import paired, read_outcomes
from energybench.reporting.cells import collect_records
from energybench.reporting.render import render
from energybench.reporting.report import build
from energybench.reporting.table_specs import load_table

REPO = Path(__file__).resolve().parents[3]
SHIPPED = sorted((REPO / "checkpoints").glob("*-smoke.pt"))
ALWAYS_ON = {"randomized_forward", "probability_output", "unavailable_gradients", "incomplete_optimisation",
             "gradient_direction"}


@pytest.fixture(scope="module")
def base():
    return load_model(REPO / "checkpoints" / "pgd-at-smoke.pt").model


def _flags(record) -> set[str]:
    return {name for name, check in record["diagnostics"].items() if check["flag"]}


@pytest.mark.parametrize("wrapper, expected", [(Quantised, "unavailable_gradients"),
                                               (Softmaxed, "probability_output"),
                                               (FreshNoise, "randomized_forward")])
def test_a_broken_model_raises_its_indicator_and_no_other(wrapper, expected, base, exact_npz, tmp_path):
    (record,) = evaluate(wrapper(base), ["pgd20"], data=str(exact_npz), n=300, out_dir=tmp_path, log=lambda m: None)
    assert set(record["diagnostics"]) == ALWAYS_ON
    assert _flags(record) == {expected}, record["diagnostics"]
    check = record["diagnostics"][expected]
    assert check["advice"] and check["title"]
    summary = (tmp_path / "summary.md").read_text() if (tmp_path / "summary.md").exists() else ""
    from energybench.records.text import format_summary

    text = format_summary([record])
    assert "⚑ 1 raised" in text and f"⚑ pgd20: {check['title']}" in text


def test_a_noise_gradient_is_caught_by_the_always_on_direction_check(base, exact_npz, tmp_path):
    """The gradient-direction check alone separates it from the honest model (the noise walk also
    leaves images still moving at the end, which incomplete optimisation may notice)."""
    (record,) = evaluate(NoiseGradient(base), ["pgd20"], data=str(exact_npz), n=128, out_dir=tmp_path,
                         log=lambda m: None)
    assert {"gradient_direction"} <= _flags(record) <= {"gradient_direction", "incomplete_optimisation"}
    evidence = record["diagnostics"]["gradient_direction"]["evidence"]
    assert evidence["considered"] >= 8 and 2 * evidence["gradient_beats_every_random_step"] < evidence["considered"]
    assert "gradient-free" in record["diagnostics"]["gradient_direction"]["advice"]
    (honest,) = evaluate(base, ["pgd20"], data=str(exact_npz), n=128, out_dir=tmp_path / "honest", log=lambda m: None)
    assert honest["diagnostics"]["gradient_direction"]["flag"] is False


def test_eot_pgd_breaks_more_of_the_randomized_model(base, exact_npz, tmp_path):
    model = FreshNoise(base)
    (plain,) = evaluate(model, ["pgd20"], data=str(exact_npz), n=500, out_dir=tmp_path, log=lambda m: None)
    (eot,) = evaluate(model, ["pgd20"], data=str(exact_npz), n=500, out_dir=tmp_path, log=lambda m: None,
                      overrides={"eot": 10})
    assert eot["params"]["eot"] == 10 and plain["params"]["eot"] == 1
    assert eot["value"] < plain["value"] - 0.02, (plain["value"], eot["value"])
    assert "eot=10" in plain["diagnostics"]["randomized_forward"]["advice"]
    assert plain["diagnostics"]["incomplete_optimisation"]["flag"] is None  # not assessed on noise
    assert plain["diagnostics"]["gradient_direction"]["flag"] is None


def test_tiny_steps_raise_incomplete_optimisation(base, exact_npz, tmp_path):
    (record,) = evaluate(base, ["pgd20"], data=str(exact_npz), n=300, out_dir=tmp_path, log=lambda m: None,
                         overrides={"step_size": 0.1 / 255})
    assert _flags(record) == {"incomplete_optimisation"}
    assert record["diagnostics"]["incomplete_optimisation"]["evidence"]["still_improving"] > 30


@pytest.mark.slow
def test_shipped_checkpoints_raise_nothing_and_the_unbounded_attack_reaches_zero(exact_npz, tmp_path):
    for ckpt in SHIPPED:
        out = tmp_path / ckpt.stem
        pgd, sanity = evaluate(ckpt, ["pgd20", "attack-sanity"], data=str(exact_npz), n=300, out_dir=out,
                               log=lambda m: None, overrides={"max_images": 100})
        assert not _flags(pgd), (ckpt.stem, pgd["diagnostics"])
        assert not _flags(sanity) and sanity["value"] == 0, (ckpt.stem, sanity["diagnostics"])
        assert sanity["extra"]["accuracy"]["unbounded"] == 0.0
        assert sanity["diagnostics"]["unbounded"]["flag"] is False


def test_models_from_public_handles_raise_nothing(exact_npz, tmp_path):
    """The same shipped weights as a torch.export program and as a plain nn.Module."""
    model = load_model(REPO / "checkpoints" / "jeat-smoke.pt").model
    path = tmp_path / "jeat.pt2"
    torch.export.save(torch.export.export(model, (torch.rand(2, 3, 32, 32),),
                                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}}), str(path))
    for handle in (path, model):
        (record,) = evaluate(handle, ["pgd20"], data=str(exact_npz), n=200, out_dir=tmp_path / "e",
                             log=lambda m: None)
        assert not _flags(record) and set(record["diagnostics"]) == ALWAYS_ON


def test_the_sanity_suite_catches_a_masked_model(base, exact_npz, tmp_path):
    """Gradient masking is what the suite is for: the quantised model survives unbounded PGD."""
    (record,) = evaluate(Quantised(base), ["attack-sanity"], data=str(exact_npz), n=60, out_dir=tmp_path,
                         log=lambda m: None, overrides={"max_images": 60, "square_queries": 200})
    assert record["diagnostics"]["unbounded"]["flag"] is True
    assert record["diagnostics"]["black_box"]["flag"] is True  # Square needs no gradient
    assert record["value"] == sum(bool(c["flag"]) for c in record["diagnostics"].values())


# --------------------------------------------------------------------------- per-image outcomes


def test_per_image_outcomes_add_up_to_the_record(base, exact_npz, tmp_path):
    clean, pgd, energy = evaluate(base, ["clean", "pgd20", "pgd20-energy"], data=str(exact_npz), n=200,
                                  out_dir=tmp_path, log=lambda m: None)
    o = read_outcomes(pgd)
    assert list(o["index"]) == list(range(200))
    assert o["robust"].sum() == round(pgd["value"] * 200)
    assert np.array_equal(o["robust"], o["clean_correct"] & o["adv_correct"])
    assert np.array_equal(o["adv_correct"], o["margin"] > 0)  # the margin decides the prediction
    with torch.no_grad():
        images = torch.from_numpy(np.load(exact_npz)["images"][:200]).permute(0, 3, 1, 2).float() / 255
        logits = base(images)
    labels = torch.from_numpy(np.load(exact_npz)["labels"][:200]).long()
    assert np.array_equal(read_outcomes(clean)["clean_correct"], (logits.argmax(1) == labels).numpy())
    a, b = paired(clean, pgd, "clean_correct")
    assert np.array_equal(a, b)  # the same clean predictions, image by image
    robust_ce, robust_energy = paired(pgd, energy, "robust")
    assert robust_ce.shape == robust_energy.shape == (200,)


def test_paired_outcomes_refuse_other_images(base, exact_npz, tmp_path):
    (a,) = evaluate(base, ["pgd20"], data=str(exact_npz), n=100, out_dir=tmp_path, log=lambda m: None)
    (b,) = evaluate(base, ["pgd20"], data=str(exact_npz), n=120, out_dir=tmp_path, log=lambda m: None)
    with pytest.raises(UserError, match="different test images"):
        paired(a, b, "robust")


def test_random_starts_do_not_depend_on_the_batch(base, exact_npz, tmp_path):
    (big,) = evaluate(base, ["pgd20"], data=str(exact_npz), n=96, out_dir=tmp_path / "a", log=lambda m: None,
                      batch_size=96)
    (small,) = evaluate(base, ["pgd20"], data=str(exact_npz), n=96, out_dir=tmp_path / "b", log=lambda m: None,
                        batch_size=32)
    a, b = read_outcomes(big), read_outcomes(small)
    assert np.array_equal(a["robust"], b["robust"])
    assert np.allclose(a["margin"], b["margin"], atol=1e-4)


# --------------------------------------------------------------------------- public protocols


def _eval_jempp_pgd(model01, x01, y, noise01, start_u):
    """EB-JDAT's public PGD as eval_jempp.py runs it (its bundled torchattacks PGD on inputs
    normalised to [-1, 1]: eps 8/255, alpha 1/255, 20 steps, random start, clamp to [-1, 1]),
    written here from that code, in [-1, 1] units, with the noise and random start given."""
    def f(xpm1):
        return model01((xpm1 + 1) / 2)

    images = (2 * x01 - 1) + 2 * noise01  # Normalize((.5,)*3, (.5,)*3), then + randn * sigma
    eps, alpha = 8 / 255, 1 / 255
    adv = (images + (2 * start_u - 1) * eps).clamp(-1, 1)
    for _ in range(20):
        adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(f(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = (images + (adv - images).clamp(-eps, eps)).clamp(-1, 1)
    with torch.no_grad():
        return f(images).argmax(1) == y, f(adv).argmax(1) == y


def test_ebjdat_public_protocol_matches_its_code(base, exact_npz, tmp_path):
    from energybench.attacks.pgd import image_noise
    from energybench.metrics.robustness import image_seeds, test_noise

    (record,) = evaluate(base, ["pgd20-ebjdat-public"], data=str(exact_npz), n=100, out_dir=tmp_path,
                         log=lambda m: None)
    assert record["params"]["eps"] == pytest.approx(4 / 255) and record["params"]["step_size"] == pytest.approx(0.5 / 255)
    assert record["params"]["test_noise"] == pytest.approx(0.015) and record["params"]["robust_needs_clean"] is False
    npz = np.load(exact_npz)
    x = torch.from_numpy(npz["images"][:100]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(npz["labels"][:100]).long()
    index = torch.arange(100)
    noise = test_noise(x, index, 0.015, 0) - x  # the same noise draw, in pixel units
    start = image_noise(x.shape, image_seeds(0, index), 0)
    clean_ref, adv_ref = _eval_jempp_pgd(base, x, y, noise, start)
    o = read_outcomes(record)
    assert (o["adv_correct"] == adv_ref.numpy()).mean() >= 0.99
    assert (o["clean_correct"] == clean_ref.numpy()).mean() >= 0.99
    assert np.array_equal(o["robust"], o["adv_correct"])  # its count: right adversarial predictions
    assert record["value"] == pytest.approx(adv_ref.float().mean().item(), abs=0.011)


def test_jem_public_protocol_adds_test_noise_and_counts_as_standard(base, exact_npz, tmp_path):
    standard, public = evaluate(base, ["pgd20", "pgd20-jem-public"], data=str(exact_npz), n=100,
                                out_dir=tmp_path, log=lambda m: None)
    assert public["params"]["eps"] == standard["params"]["eps"] == pytest.approx(8 / 255)
    assert public["params"]["test_noise"] == pytest.approx(0.03 / 2)
    o = read_outcomes(public)
    assert np.array_equal(o["robust"], o["clean_correct"] & o["adv_correct"])
    assert public["file"] != standard["file"]


def test_a_table_shows_the_public_protocol_beside_the_standard_one(tmp_path):
    records = collect_records([REPO / "tests" / "reference" / "ci" / "records"])
    text = render(build(load_table("ebjdat-at"), records), "md")
    row = next(line for line in text.splitlines() if line.startswith("| EB-JDAT-JEM++ |"))
    assert "· public:" in row
    assert "· public: the same measure under EB-JDAT's public evaluation" in text


def test_a_flagged_record_marks_its_table_cell(tmp_path):
    records = collect_records([REPO / "tests" / "reference" / "ci" / "records"])
    pgd = next(r for r in records if r["metric"] == "pgd20" and r["model"]["recipe"] == "jeat"
               and "purification" not in r["identity"])
    pgd["diagnostics"]["unavailable_gradients"]["flag"] = True
    text = render(build(load_table("jeat-t3"), records), "md")
    row = next(line for line in text.splitlines() if line.startswith("| JEAT |"))
    assert "⚑" in row and "⚑ JEAT, PGD-20: attack-failure checks raised (unavailable gradients)" in text
    clean_row = [c.strip() for c in row.strip("|").split("|")]
    assert "⚑" not in clean_row[2]  # the clean-accuracy cell is not an attack


# --------------------------------------------------------------------------- robustness curve


def test_robust_curve_is_monotone_with_its_area_and_figure(base, exact_npz, tmp_path, run_cli):
    (record,) = evaluate(base, ["robust-curve"], data=str(exact_npz), n=100, out_dir=tmp_path, log=lambda m: None,
                         overrides={"eps_grid": "0,2/255,4/255,8/255,16/255"})
    eps, acc = np.array(record["extra"]["eps"]), np.array(record["extra"]["accuracy"])
    assert eps[0] == 0 and np.all(np.diff(acc) <= 0.02)
    assert record["value"] == pytest.approx(np.trapezoid(acc, eps) / eps[-1])
    assert record["diagnostics"]["budget_monotone"]["flag"] is False
    assert record["unit"] == "area" and 0 < record["stderr"] < 0.1  # a bootstrap over images
    assert Path(record["file"]).with_suffix(".png").exists()
    caption = Path(record["file"]).with_suffix(".caption.txt").read_text()
    assert "L-inf eps 0/255 to 16/255 (5 budgets), step 0.25 eps" in caption and "n = 100" in caption
    # the legend explains the band and the dotted line; --label names the model
    from energybench.metrics.robust_curve_figure import robust_curve
    from energybench.records.figures import read_raw

    fig = robust_curve(record, read_raw(Path(record["file"]), record))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("95% Wilson" in t for t in legend) and any("standard budget (8/255)" in t for t in legend)
    assert "first 1,017" not in fig.axes[0].get_title() and "(n = 100)" in legend[0]
    code, out, err = run_cli("plot", record["file"], "--label", "my model", "--out", tmp_path / "named")
    assert code == 0, err
    assert (tmp_path / "named" / Path(record["file"]).with_suffix(".caption.txt").name).read_text().startswith(
        "robust-curve of my model")
    (other,) = evaluate(REPO / "checkpoints" / "normal-smoke.pt", ["robust-curve"], data=str(exact_npz), n=100,
                        out_dir=tmp_path / "normal", log=lambda m: None,
                        overrides={"eps_grid": "0,2/255,4/255,8/255,16/255"})
    code, out, err = run_cli("plot", record["file"], other["file"], "--compare", "curves", "--out", tmp_path / "fig")
    assert code == 0, err
    assert (tmp_path / "fig" / "curves.png").exists() and (tmp_path / "fig" / "curves.pdf").exists()


def test_pgd20_records_at_several_budgets_plot_as_a_curve(base, exact_npz, tmp_path, run_cli):
    """An eps sweep made one run per budget (the way --eps works) is drawn by plot --compare as
    accuracy against eps, one curve per model, its points the records' own values."""
    out = tmp_path / "sweep"
    values = {}
    for eps in (2 / 255, 4 / 255, 8 / 255):
        (record,) = evaluate(base, ["pgd20"], data=str(exact_npz), n=40, out_dir=out, log=lambda m: None,
                             overrides={"eps": eps})
        values[eps] = record["value"]
    code, printed, err = run_cli("plot", out, "--compare", "sweep", "--out", tmp_path / "fig")
    assert code == 0, err
    assert (tmp_path / "fig" / "sweep.png").exists()
    from energybench.reporting.plotting import budget_sweep
    from energybench.records.store import load_record

    fig = budget_sweep([load_record(f) for f in sorted(out.glob("pgd20-*.json"))])
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "o"]
    assert list(line.get_xdata()) == pytest.approx([2, 4, 8])
    assert list(line.get_ydata()) == pytest.approx([100 * values[e] for e in (2 / 255, 4 / 255, 8 / 255)])


@pytest.mark.parametrize("args, message", [
    (["--metric", "pgd20", "--param", "eot=0"], r"eot must be in \[1, 1000\], got 0"),
    (["--metric", "pgd20", "--param", "objective=dlr"], r"objective must be one of ce, energy, margin"),
    (["--metric", "robust-curve", "--param", "eps_grid=8/255"], r"eps_grid needs at least two budgets"),
    (["--metric", "attack-sanity", "--param", "restarts=1"], r"restarts must be in \[2, 1000\], got 1"),
])
def test_bad_diagnostic_options_get_one_line(args, message, run_cli, tmp_path):
    import re

    data = tmp_path / "d.npz"
    np.savez(data, images=np.zeros((8, 32, 32, 3), np.uint8), labels=np.arange(8) % 10)
    code, out, err = run_cli("eval", "--model", REPO / "checkpoints" / "jeat-smoke.pt", "--data", data,
                             "--device", "cpu", "--out", tmp_path / "out", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_saved_adversarial_examples_are_the_ones_the_record_counts(base, exact_npz, tmp_path, run_cli):
    """--save-adversarial writes each image's adversarial example: inside the eps-ball around its
    exact-pixel image and in [0, 1], and the model's answers on them are the record's adv_correct;
    a record kept without them is computed again when they are asked for."""
    from energybench.data import load_split
    from energybench.records.outcomes import read_outcomes

    args = ["eval", "--ckpt", REPO / "checkpoints" / "pgd-at-smoke.pt", "--data", exact_npz, "--n", 40,
            "--metric", "pgd20", "--out", tmp_path, "--device", "cpu"]
    code, out, err = run_cli(*args)
    assert code == 0 and not list(tmp_path.glob("*.adversarial.npz")), err
    code, out, err = run_cli(*args, "--save-adversarial")
    assert code == 0 and "computing it again to keep them" in err, err
    (saved,) = tmp_path.glob("pgd20-*.adversarial.npz")
    adv = np.load(saved)
    record = json.loads(saved.with_name(saved.name.replace(".adversarial.npz", ".json")).read_text())
    assert record["extra"]["adversarial"] == saved.name
    clean = load_split(exact_npz, "test").subset(40)
    x = clean.images.permute(0, 3, 1, 2).float() / 255 if clean.images.shape[-1] == 3 else clean.images.float() / 255
    images = torch.from_numpy(adv["images"])
    assert images.shape == (40, 3, 32, 32) and images.dtype == torch.float32
    assert (images - x[adv["index"]]).abs().max() <= 8 / 255 + 1e-6 and images.min() >= 0 and images.max() <= 1
    with torch.no_grad():
        right = (base(images).argmax(1) == clean.labels[adv["index"]]).numpy()
    outcomes = read_outcomes(record | {"file": str(saved.with_name(saved.name.replace(".adversarial.npz", ".json")))})
    assert (right == outcomes["adv_correct"]).all() and (adv["adv_correct"] == outcomes["adv_correct"]).all()
    code, out, err = run_cli(*args, "--save-adversarial")
    assert "already recorded" in err  # kept with its examples now: reused
