"""Paper tables (energybench report) and the reproduction plan, on the committed CI records."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from pathlib import Path

import pytest

from energybench.core.errors import UserError
from energybench.reporting.cells import collect_records, select_data
from energybench.reporting.render import render
from energybench.reporting.report import build
from energybench.reporting.table_specs import load_table, table_names
from energybench.workflows.plan import parse_only, plan

RECORDS = Path(__file__).resolve().parents[2] / "reference" / "ci" / "records"


def row_of(markdown: str, label: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_jeat_t2_prints_the_published_jfs_row_beside_measured_values(run_cli):
    code, out, err = run_cli("report", "--table", "jeat-t2", "--results", str(RECORDS))
    assert code == 0, err
    row = row_of(out, "JFS ↓")
    assert row[1::2] == ["6.97", "2.83", "0.330", "0.023"]  # published, as the paper prints them
    measured = row[2::2]
    assert all(re.search(r" ± .* \[[a-z]†?\]$", cell) for cell in measured), measured
    assert row_of(out, "IS ↑")[2::2] == ["missing"] * 4  # no Inception weights here: never a number


def test_every_table_renders_every_published_number_and_never_fills_missing_cells_with_them():
    for name in table_names():
        spec = load_table(name)
        grid = build(spec, [])
        text = render(grid, "md")
        for entry in spec["entries"]:
            for value in spec["published"].get(entry["key"], {}).values():
                if value is not None:
                    assert value in text
        measured = [row[2::2] for row in grid.rows]
        assert {cell for row in measured for cell in row} <= {"missing", "no recipe", "missing · public: missing"}


def test_secondary_sources_are_marked():
    text = render(build(load_table("ebjdat-jem"), []), "md")
    assert row_of(text, "JEM")[1] == "92.90§"
    assert "§ published value taken from secondary notes" in text
    assert "§" not in render(build(load_table("jeat-t3"), []), "md").split("\n- ")[0]


def test_measured_cells_name_their_scale_and_mark_a_scale_unlike_the_papers():
    records = collect_records([RECORDS])
    text = render(build(load_table("jeat-t3"), records), "md")
    assert "[a†]" in row_of(text, "JEAT")[2]
    assert "tiny-cnn (210,922 parameters), 2 epochs on 1,000 training images of CIFAR-10 (JPEG q75 copy)" in text
    paper_like = copy.deepcopy([r for r in records if r["model"]["recipe"] == "jeat" and r["metric"] == "clean" and "purification" not in r["identity"]])
    paper_like[0]["model"]["model"]["name"] = "wrn-28-10"
    paper_like[0]["n"] = 10000
    paper_like[0]["data"]["label"] = "CIFAR-10"
    text = render(build(load_table("jeat-t3"), paper_like), "md")
    assert row_of(text, "JEAT")[2].endswith("[a]") and "†" not in text.split("\n- ")[0]


def test_recipe_parameters_select_the_noise_runs():
    records = collect_records([RECORDS])
    grid = build(load_table("noise-study"), records)
    sigma = {row["entry"]: row["measured"] for row in grid.tidy if row["metric"] == "clean"}
    assert all(v is not None for v in sigma.values())
    by_run = {Path(r["_file"]).parent.name: r["value"] * 100 for r in records if r["metric"] == "clean"}
    assert sigma["noise σ = 16/255"] == pytest.approx(by_run["noise-s16"])


def test_two_different_records_for_one_cell_is_an_error(tmp_path):
    records = collect_records([RECORDS])
    twin = copy.deepcopy(next(r for r in records if r["model"]["recipe"] == "jem" and r["metric"] == "clean" and "purification" not in r["identity"]))
    twin["n"], twin["identity"]["n"], twin["_file"] = 50, 50, "other/clean.json"
    with pytest.raises(UserError, match="different records fit 'JEM'.*differ in number of test images"):
        build(load_table("jeat-t3"), records + [twin])


def test_csv_is_tidy_and_tex_is_escaped():
    records = collect_records([RECORDS])
    rows = list(csv.DictReader(io.StringIO(render(build(load_table("jeat-t1"), records), "csv"))))
    assert len(rows) == 6 and {r["entry"] for r in rows} == {"CIFAR-10", "CIFAR-100"}
    c100 = [r for r in rows if r["entry"] == "CIFAR-100"]
    assert all(r["measured"] == "" and r["published"] for r in c100)  # no CIFAR-100 here
    tex = render(build(load_table("jeat-t1"), records), "tex")
    assert "\\begin{tabular}" in tex and "$\\pm$" in tex and "±" not in tex


def test_report_cli_errors_are_one_line(run_cli, tmp_path):
    for args, message in [
        (["report", "--table", "jeat-t9"], "'jeat-t9' is not one of 'ebjdat-at'"),
        (["report", "--table", "jeat-t2", "--format", "docx", "--results", str(RECORDS)], "'docx' is not one of 'md', 'tex', 'csv'"),
        (["report", "--table", "jeat-t2", "--results", str(tmp_path / "nowhere")], "does not exist"),
        (["reproduce", "--preset", "huge"], "'huge' is not one of 'ci', 'smoke', 'paper'"),
        (["reproduce", "--only", "jem,gan"], "unknown recipe(s) gan"),
    ]:
        code, out, err = run_cli(*args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)


def test_report_writes_all_tables_to_a_file(run_cli, tmp_path):
    code, _, err = run_cli("report", "--table", "all", "--results", str(RECORDS), "--out", str(tmp_path / "t.md"))
    assert code == 0, err
    text = (tmp_path / "t.md").read_text()
    assert all(load_table(n)["title"] in text for n in table_names())


def test_the_reproduction_plan_is_read_off_the_tables():
    runs = {r.name: r for r in plan(table_names())}
    assert set(runs) == {"normal", "normal-cifar100", "pgd-at", "trades", "jem", "jeat", "eb-jdat",
                         "jempp", "sadajem", "eb-jdat-sadajem", "noise-s8", "noise-s16", "noise-s24"}
    assert set(runs["normal"].metrics) == {"clean", "pgd20", "pgd20-energy", "jfs", "mfs", "is", "fid",
                                           "attack-sanity"}
    assert "pgd20-ebjdat-public" in runs["eb-jdat"].metrics and "pgd20-ebjdat-public" not in runs["jeat"].metrics
    assert runs["noise-s8"].params == {"sigma": pytest.approx(8 / 255)}
    assert set(runs["eb-jdat"].metrics) == {"clean", "pgd20", "autoattack", "fid", "is", "pgd20-ebjdat-public",
                                            "attack-sanity"}
    assert {r.name for r in plan(table_names(), parse_only("jem, noise"))} == {"jem", "noise-s8", "noise-s16", "noise-s24"}
    # the purification table evaluates the same jem and jeat models behind purification, as well as plain
    purified = [p for m, p in runs["jem"].evaluations if m == "bpda-eot"]
    assert {} in purified and {"purification": {"steps": 10, "step_size": 0.25, "noise": 0.005, "chains": 20}} in purified


def test_reproduction_presets_are_valid_for_every_recipe_and_metric():
    from energybench.evaluation.protocol import metric_params
    from energybench.training.config import apply_overrides
    from energybench.training.recipes import preset_config, recipe_names
    from energybench.workflows.plan import PRESETS

    for preset in PRESETS.values():
        for recipe in recipe_names():
            cfg = apply_overrides(preset_config(recipe, preset.recipe_preset), list(preset.train_overrides))
            assert cfg.recipe == recipe
        for metric, overrides in preset.metric_params.items():
            params = metric_params(metric, overrides)
            assert all(getattr(params, k) == v for k, v in overrides.items())
    assert PRESETS["paper"].n_for("clean") is None and PRESETS["paper"].metric_params["autoattack"]["max_images"] == 10_000


def test_a_reproduction_made_in_parts_is_one_report(tmp_path, jpeg_tar, monkeypatch, run_cli):
    """Two --only invocations into one folder: the second keeps the first's runs in status.json and
    on the index page (in the plan's order), and names both commands; a folder of another preset
    is rewritten, not merged; --table trains and renders for the tables chosen. Training and
    evaluation are replaced by a stand-in status."""
    import torch

    from energybench.workflows import reproduce as rp

    done = []

    def stand_in(p, run, seed, run_dir, out_dir, data, device, inception_weights, log, world):
        done.append(run.name)
        return {"train_seconds_total": 60.0, "refused": {}, "evaluated": "last"}

    monkeypatch.setattr(rp, "_reproduce_run", stand_in)
    out, data = tmp_path / "out", {"cifar10": str(jpeg_tar)}
    for only in ("normal", "pgd-at"):
        index = rp.reproduce("ci", out, tmp_path / "runs", data, torch.device("cpu"), only=only,
                             log=lambda m: None, made_by=f"energybench reproduce --only {only}")
    assert done == ["normal", "normal-cifar100", "pgd-at"]
    status = json.loads((out / "status.json").read_text())
    assert set(status["runs"]) == {"pgd-at", "normal", "normal-cifar100"} and status["made_by"] == [
        "energybench reproduce --only normal", "energybench reproduce --only pgd-at"]
    page = index.read_text()
    assert "`energybench reproduce --only normal`, then `energybench reproduce --only pgd-at`" in page
    assert page.index("| pgd-at | pgd-at | cifar10 |") < page.index("| normal | normal | cifar10 |")  # plan order
    assert "Compute: 3.0 minutes of training" in page
    code, _, err = run_cli("reproduce", "--preset", "ci", "--table", "purification", "--data", jpeg_tar, "--out", out,
                           "--runs", tmp_path / "runs")
    assert code == 0 and done[3:] == ["jem", "jeat"], err  # only the models of the chosen table
    assert "--table purification" in json.loads((out / "status.json").read_text())["made_by"][-1]
    from energybench.reporting.table_specs import load_table

    page = index.read_text()
    assert "| JEM + purification |" in page and load_table("jeat-t1")["title"] not in page
    rp.reproduce("smoke", out, tmp_path / "runs", data, torch.device("cpu"), only="normal",
                 log=lambda m: None, seeds=1, made_by="energybench reproduce --preset smoke --only normal")
    status = json.loads((out / "status.json").read_text())
    assert set(status["runs"]) == {"normal", "normal-cifar100"} and len(status["made_by"]) == 1


@pytest.mark.slow
def test_reproduce_draws_figures_writes_an_index_and_resumes(tmp_path, jpeg_tar, monkeypatch):
    import torch

    from energybench.workflows import plan as planning
    from energybench.workflows import reproduce as rp

    tiny = planning.ReproductionPreset("tiny", "smoke", ("data.train_subset=300", "optim.epochs=1", "data.eval_subset=0"),
                                 {"default": 40}, figures=True, summary="test")
    monkeypatch.setitem(planning.PRESETS, "tiny", tiny)
    out, runs = tmp_path / "out", tmp_path / "runs"
    index = rp.reproduce("tiny", out, runs, {"cifar10": str(jpeg_tar)}, torch.device("cpu"),
                         only="normal", tables=["jeat-t1"], log=lambda m: None)
    page = index.read_text()
    assert "| normal-cifar100 | normal | cifar100 | 0 | – | skipped: " in page  # no CIFAR-100 here: said why
    assert "| normal | normal | cifar10 |" in page and "| last | complete |" in page
    figures = out / "figures" / "normal"
    assert (figures / "samples" / "grid.png").exists() and "(figures/normal/samples/grid.png)" in page
    for metric in ["energy-hist", "energy-contour", "energy-dynamics", "memorization"]:
        (record,) = figures.glob(f"{metric}-*.json")  # each figure beside its record and raw data
        extra = json.loads(record.read_text())["extra"]
        assert (figures / extra["figure"]).exists() and f"(figures/normal/{extra['figure']})" in page
        assert Path(extra["figure"]).stem == record.stem and (figures / extra["raw"]).exists()
    assert "No attack | 94.39 | " in page and (out / "tables" / "jeat-t1.tex").exists()
    records = sorted((out / "records" / "normal").glob("*.json"))
    assert sorted(r.stem.rsplit("-", 1)[0] for r in records) == ["attack-sanity", "clean", "pgd20", "pgd20-energy"]
    assert len(list((out / "records" / "normal").glob("*.outcomes.npz"))) == 3  # clean and the two attacks
    stamps = {r: r.stat().st_mtime_ns for r in (runs / "normal" / "eval").glob("*.json")}
    rp.reproduce("tiny", out, runs, {"cifar10": str(jpeg_tar)}, torch.device("cpu"),
                 only="normal", tables=["jeat-t1"], log=lambda m: None)
    assert {r: r.stat().st_mtime_ns for r in stamps} == stamps  # resumed: nothing recomputed


def test_a_table_never_mixes_test_sets():
    """Each cell had one candidate, but 'No attack' from one test set and 'PGD-20' from another
    would sit side by side: an error naming both."""
    records = collect_records([RECORDS])
    normal = [r for r in records if r["model"]["recipe"] == "normal"]
    moved = copy.deepcopy(next(r for r in normal if r["metric"] == "pgd20"))
    moved["identity"]["data"] = {**moved["identity"]["data"], "hash": "the exact-pixel copy"}
    moved["data"]["label"] = "CIFAR-10 test, exact pixels"
    moved["_file"] = "exact/pgd20.json"
    mixed = [r for r in normal if r["metric"] != "pgd20"] + [moved]
    with pytest.raises(UserError, match=r"table jeat-t1 would mix test sets: .* from CIFAR-10 \(JPEG q75 copy\).*"
                                        r"from CIFAR-10 test, exact pixels \(exact/pgd20.json\)"):
        build(load_table("jeat-t1"), mixed)
    # report --data keeps one test set: the moved record alone, or every other one
    exact = select_data(mixed, "cifar-10 test,  exact pixels")
    assert [r["_file"] for r in exact] == ["exact/pgd20.json"]
    jpeg = select_data(mixed, "CIFAR-10 (JPEG q75 copy)")
    assert len(jpeg) == len(mixed) - 1 and moved not in jpeg
    build(load_table("jeat-t1"), jpeg)
    with pytest.raises(UserError, match=r"no record was measured on test data 'CIFAR-100'; the results hold: "
                                        r"'CIFAR-10 \(JPEG q75 copy\)', 'CIFAR-10 test, exact pixels'"):
        select_data(mixed, "CIFAR-100")


def test_summary_spreads_use_significant_digits_and_wilson_intervals():
    """A small score's stderr keeps its digits (it used to print 0.00); an accuracy on few images
    or at 0%/100% shows its 95% Wilson interval, checked against scipy's binomtest."""
    from scipy.stats import binomtest

    from energybench.core.stats import wilson_interval
    from energybench.records.text import spread_text

    assert spread_text({"metric": "jfs", "value": 0.07346, "stderr": 0.0021, "n": 1000, "unit": "score"}) == "0.0021"
    assert spread_text({"value": 0.3, "stderr": 0.0205, "n": 500, "unit": "fraction"}) == "2.05"
    for k, n in ((0, 20), (7, 20), (20, 20), (0, 500), (13, 37)):
        reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = wilson_interval(k / n, n)
        assert float(low) == pytest.approx(reference.low, abs=2e-4)
        assert float(high) == pytest.approx(reference.high, abs=2e-4)
        text = spread_text({"value": k / n, "stderr": 0.0, "n": n, "unit": "fraction"})
        assert text == f"95% CI {100 * max(0.0, float(low)):.1f}–{100 * min(1.0, float(high)):.1f}"
        assert "-0.0" not in text  # a bound rounding leaves at -1e-17 is shown as 0.0


def test_your_own_models_get_a_table_of_their_own(tmp_path, run_cli, jpeg_tar):
    """A model that is no recipe fills no paper table: report says so and --table own shows it
    beside the recipe models, each cell its record's value ± standard error, with ≈ marks from the
    same paired tests."""
    import torch.nn as nn

    from energybench.api import evaluate
    from energybench.handles.checkpoint import load_model
    from energybench.reporting.own_table import own_table

    shipped = Path(__file__).resolve().parents[3] / "checkpoints"
    mine = tmp_path / "mine"
    base = load_model(shipped / "pgd-at-smoke.pt").model

    class Mine(nn.Module):  # the same weights behind a wrapper: a model no recipe made
        def __init__(self):
            super().__init__()
            self.inner = base

        def forward(self, x):
            return self.inner(x)

    (record,) = evaluate(Mine(), str(jpeg_tar), ["clean"], n=500, out_dir=mine)
    assert record["model"].get("recipe") is None
    results = [str(shipped / "records" / "pgd-at"), str(shipped / "records" / "normal"), str(mine)]
    code, out, err = run_cli("report", "--table", "jeat-t1", *[a for r in results for a in ("--results", r)])
    assert code == 0 and "1 model(s) in the results are no energybench recipe" in err and "--table own" in err, err
    code, out, err = run_cli("report", "--table", "own", *[a for r in results for a in ("--results", r)])
    assert code == 0, err
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    ours = next(v for k, v in rows.items() if "Mine" in k or "module" in k)
    assert f"{100 * record['value']:.2f} ± {100 * record['stderr']:.2f}" in ours, out
    assert "| Model | clean | pgd20 (L-inf eps 8/255, step 2/255) |" in out
    # the same weights answer the same on every image: its clean accuracy equals pgd-at's, marked ≈
    pgd_at = next(v for k, v in rows.items() if k.startswith("pgd-at"))
    assert pgd_at.split(" | ")[1].split(" [")[0] == ours.split(" | ")[1].split(" [")[0] and "≈" in ours
    assert "–" in ours.split(" | ")[2] or "missing" in ours.split(" | ")[2]  # no pgd20 record of it
    spec = own_table(collect_records(results))
    assert {e["model_sha256"] for e in spec["entries"]} == {r["model"]["sha256"] for r in collect_records(results)}


def test_the_robustness_comparison_never_pools_a_purified_model_with_the_plain_one(tmp_path, monkeypatch):
    from energybench.workflows import reproduce as rp

    drawn = []
    monkeypatch.setattr(rp, "robustness_scatter", lambda points, data=None: drawn.append(points) or object())
    monkeypatch.setattr(rp, "save", lambda fig, stem: [])

    def record(run, metric, value, purification=None):
        identity = {"purification": purification} if purification else {}
        return {"_file": str(tmp_path / run / f"{metric}.json"), "metric": metric, "value": value, "n": 100,
                "params": {}, "identity": identity, "data": {"label": "test"}}

    purify = {"steps": 10, "chains": 20}
    records = [record("jem", "clean", 0.30), record("jem", "pgd20", 0.10), record("jem-seed1", "clean", 0.32),
               record("jem-seed1", "pgd20", 0.12), record("jem", "clean", 0.50, purify),
               record("jem", "pgd20", 0.40, purify)]
    rp.comparison_figures(records, [], tmp_path)
    (points,) = drawn
    by_name = {p["name"]: p for p in points}
    assert by_name["jem"]["clean"] == pytest.approx(0.31) and by_name["jem"]["pgd20"] == pytest.approx(0.11)
    assert by_name["jem + purification"]["clean"] == 0.50 and by_name["jem + purification"]["pgd20"] == 0.40
