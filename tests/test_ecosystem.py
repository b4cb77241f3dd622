"""RobustBench models and leaderboard entries, the Python API on a user's module, redrawable
figures, config files and JSON output. Synthetic data only: these run on a fresh clone."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import energybench
from energybench.core.errors import UserError

pytestmark = pytest.mark.synthetic

CLASSES = [f"class{k}" for k in range(10)]


def synthetic_npz(path, n_train=60, n_test=24, seed=0):
    """A CIFAR-shaped dataset: per-class colour means plus noise (uint8), both splits."""
    rng = np.random.default_rng(seed)
    means = rng.integers(40, 215, size=(10, 3))

    def split(n):
        labels = np.arange(n) % 10
        images = means[labels][:, None, None, :] + rng.normal(0, 25, size=(n, 32, 32, 3))
        return np.clip(images, 0, 255).astype(np.uint8), labels

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    np.savez(path, train_images=xtr, train_labels=ytr, test_images=xte, test_labels=yte,
             label_names=np.array(CLASSES))
    return path


class SmallNet(nn.Module):
    """[0, 1] NCHW -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                  nn.Flatten(), nn.Linear(128, 10))

    def forward(self, x):
        return self.body(x)


def _model(seed=0):
    torch.manual_seed(seed)
    return SmallNet().eval()


# ----------------------------------------------------------------------------- RobustBench


ZOO_NAME = "Ding2020MMA"  # a WRN-28-4 in RobustBench's CIFAR-10 Linf zoo (5.8M parameters)


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    """RobustBench's layout MODEL_DIR/cifar10/Linf/NAME.pt holding a state dict of the entry's
    architecture (seeded weights), so robustbench.utils.load_model finds it and downloads nothing."""
    from energybench.handles.zoo import robustbench

    robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    torch.manual_seed(0)
    net = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf][ZOO_NAME]["model"]()
    root = tmp_path_factory.mktemp("zoo")
    (root / "cifar10" / "Linf").mkdir(parents=True)
    torch.save({"state_dict": net.state_dict()}, root / "cifar10" / "Linf" / f"{ZOO_NAME}.pt")
    return root


def test_robustbench_model_runs_end_to_end_and_exports_a_leaderboard_entry(zoo_dir, tmp_path, run_cli,
                                                                          monkeypatch):
    data = synthetic_npz(tmp_path / "synth.npz")
    out = tmp_path / "eval"
    code, stdout, stderr = run_cli("eval", "--model", f"robustbench:{ZOO_NAME}", "--model-dir", str(zoo_dir),
                                   "--data", str(data), "--n", "16", "--metric", "clean", "--metric",
                                   "autoattack", "--param", "max_images=4", "--format", "robustbench",
                                   "--out", str(out), "--device", "cpu")
    assert code == 0, stderr
    records = {r["metric"]: r for r in (json.loads(p.read_text()) for p in out.glob("*.json"))
               if "record_version" in r}
    # Reference: the same images through the model robustbench's own loader builds.
    from robustbench.utils import load_model

    reference = load_model(ZOO_NAME, model_dir=str(zoo_dir), dataset="cifar10", threat_model="Linf").eval()
    with np.load(data) as npz:
        x = torch.from_numpy(npz["test_images"][:16]).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(npz["test_labels"][:16])
    with torch.no_grad():
        expected = (reference(x).argmax(1) == y).float().mean().item()
    assert records["clean"]["value"] == pytest.approx(expected)
    assert records["clean"]["model"]["kind"] == "robustbench"
    assert records["clean"]["model"]["robustbench_name"] == ZOO_NAME
    assert records["autoattack"]["n"] == 4 and records["autoattack"]["value"] <= records["clean"]["value"] + 0.5

    (entry_file,) = out.glob("robustbench-*.json")
    entry = json.loads(entry_file.read_text())
    from robustbench.utils import ModelInfo

    fields = {f.name for f in dataclasses.fields(ModelInfo)}
    assert set(entry) <= fields
    assert {"name", "architecture", "eps", "clean_acc", "autoattack_acc", "dataset", "footnote"} <= set(entry)
    assert entry["eps"] == "8/255" and entry["clean_acc"] == f"{100 * expected:.2f}"
    assert "first 4 test images only" in entry["footnote"]
    # RobustBench's own leaderboard code reads it like one of its model_info/<dataset>/<threat>/NAME.json
    from robustbench.utils import get_leaderboard_latex

    board = tmp_path / "board" / "model_info" / "cifar10" / "Linf"
    board.mkdir(parents=True)
    (board / f"{ZOO_NAME}.json").write_text(entry_file.read_text())
    monkeypatch.chdir(tmp_path / "board")
    (row,) = get_leaderboard_latex("cifar10", "Linf").splitlines()
    assert row == (f"1 &\\citet{{{ZOO_NAME}}} & {entry['clean_acc']} & {entry['autoattack_acc']} & N & "
                   f"{entry['architecture'].replace('WideResNet', 'WRN')} &  & {ZOO_NAME}\\\\")


def test_a_leaderboard_entry_takes_its_name_authors_venue_and_architecture(tmp_path, run_cli):
    """An exported program's entry is named after its file (not its path) by default, and takes
    --name/--authors/--venue/--architecture/--link; those flags without --format robustbench are
    refused in one line."""
    from energybench.handles.checkpoint import load_model

    model = load_model(Path(__file__).resolve().parent.parent / "checkpoints" / "jeat-smoke.pt").model
    program = torch.export.export(model, (torch.rand(2, 3, 32, 32),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    path = tmp_path / "my_rn18.pt2"
    torch.export.save(program, str(path))
    data = synthetic_npz(tmp_path / "synth.npz")
    base = ["eval", "--model", path, "--data", data, "--n", "8", "--metric", "clean", "--metric", "autoattack",
            "--param", "max_images=4", "--format", "robustbench", "--device", "cpu"]
    code, _, err = run_cli(*base, "--out", tmp_path / "plain")
    assert code == 0, err
    (entry_file,) = (tmp_path / "plain").glob("robustbench-*.json")
    entry = json.loads(entry_file.read_text())
    assert entry["name"] == "my_rn18" and entry_file.name == "robustbench-my_rn18.json"
    assert "pass --architecture" in entry["architecture"]
    code, _, err = run_cli(*base, "--out", tmp_path / "named", "--name", "Mine2026 Robust", "--authors", "A. Author",
                           "--venue", "ICML 2026", "--architecture", "ResNet-18", "--link", "https://example.org")
    assert code == 0, err
    entry = json.loads((tmp_path / "named" / "robustbench-Mine2026_Robust.json").read_text())
    assert (entry["name"], entry["authors"], entry["venue"], entry["architecture"], entry["link"]) == \
        ("Mine2026 Robust", "A. Author", "ICML 2026", "ResNet-18", "https://example.org")
    code, _, err = run_cli("eval", "--model", path, "--data", data, "--metric", "clean", "--venue", "ICML")
    assert code == 2 and "--venue describe a RobustBench entry; add --format robustbench" in err


def test_robustbench_names_and_formats_are_checked(zoo_dir, tmp_path, run_cli):
    data = synthetic_npz(tmp_path / "synth.npz")
    code, _, err = run_cli("eval", "--model", "robustbench:Ding2020MM", "--model-dir", str(zoo_dir),
                           "--data", str(data))
    assert code == 2 and "did you mean Ding2020MMA" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("eval", "--model", f"robustbench:{ZOO_NAME}", "--model-dir", str(zoo_dir),
                           "--data", str(data), "--metric", "clean", "--format", "robustbench")
    assert code == 2 and "--metric autoattack" in err
    code, _, err = run_cli("eval", "--model", "robustbench:Wong2020Fast", "--model-dir", str(tmp_path / "none"),
                           "--data", str(data), "--metric", "clean")
    assert code == 2 and len(err.strip().splitlines()) == 1  # absent weights, no download here
    assert "could not be downloaded" in err and "with url" not in err
    assert not (tmp_path / "none").exists()  # the folders robustbench made for the download are gone


def test_a_zoo_model_defaults_to_its_datasets_test_split(zoo_dir, tmp_path, run_cli, monkeypatch):
    """Without --data, a RobustBench model is evaluated on its dataset from the data home; with
    none imported, one line says how to get it."""
    monkeypatch.setenv("ENERGYBENCH_HOME", str(tmp_path / "home"))
    base = ["eval", "--model", f"robustbench:{ZOO_NAME}", "--model-dir", str(zoo_dir), "--n", "8",
            "--metric", "clean", "--device", "cpu"]
    code, _, err = run_cli(*base, "--out", tmp_path / "none")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cifar10" in err, err
    code, _, err = run_cli("data", "import", synthetic_npz(tmp_path / "synth.npz"), "--name", "cifar10")
    assert code == 0, err
    code, _, err = run_cli(*base, "--out", tmp_path / "default")
    assert code == 0, err
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "default").glob("clean-*.json")]
    code, _, err = run_cli(*base, "--out", tmp_path / "given", "--data", synthetic_npz(tmp_path / "synth.npz"))
    (given,) = [json.loads(p.read_text()) for p in (tmp_path / "given").glob("clean-*.json")]
    assert record["value"] == given["value"] and record["n"] == given["n"] == 8
    assert record["data"]["label"] == "CIFAR-10 from npz synth.npz (imported)"


def test_nothing_else_needs_robustbench(tmp_path):
    """The toolkit imports without robustbench, and only robustbench: names need it."""
    data = synthetic_npz(tmp_path / "synth.npz")
    script = f"""
import sys
sys.modules["robustbench"] = None  # as if it were not installed
import torch, energybench, energybench.cli.main, energybench.evaluation.runner
from energybench.core.errors import UserError
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))
(r,) = energybench.evaluate(net, {str(data)!r}, metrics=["clean"], out_dir={str(tmp_path / 'e')!r}, device="cpu")
try:
    energybench.evaluate("robustbench:Ding2020MMA", {str(data)!r}, device="cpu")
except UserError as exc:
    print("REFUSED", exc)
print("OK", r["value"])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "REFUSED robustbench is not usable here" in result.stdout
    assert "pip install 'energybench[robustbench]'" in result.stdout


def test_robustbench_import_leaves_no_aliases_behind():
    from energybench.handles.zoo import robustbench

    robustbench()
    assert "autoattack" not in sys.modules or sys.modules["autoattack"].__name__ == "autoattack"


# ----------------------------------------------------------------------------- Python API


def test_python_api_runs_metrics_on_a_module_with_data_in_memory(tmp_path):
    model = _model()
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (40, 3, 32, 32), generator=gen, dtype=torch.uint8)
    y = torch.arange(40) % 10
    records = energybench.evaluate(model, (x, y), metrics=["clean", "pgd20"], out_dir=tmp_path,
                                   device="cpu", eps=4 / 255)
    by = {r["metric"]: r for r in records}
    with torch.no_grad():
        expected = (model(x.float() / 255).argmax(1) == y).float().mean().item()
    assert by["clean"]["value"] == pytest.approx(expected)
    assert by["pgd20"]["params"]["eps"] == pytest.approx(4 / 255)
    assert by["pgd20"]["params"]["step_size"] == pytest.approx(1 / 255)  # eps / 4
    assert by["clean"]["model"]["kind"] == "module" and by["clean"]["data"]["source"]["kind"] == "memory"
    # Same weights and data: the record is reused; one changed weight: a new record.
    (again,) = energybench.evaluate(_model(), (x, y), metrics=["clean"], out_dir=tmp_path, device="cpu")
    assert again["file"] == by["clean"]["file"] and again["created"] == by["clean"]["created"]
    changed = _model()
    with torch.no_grad():
        changed.body[-1].bias[0] += 1.0
    (other,) = energybench.evaluate(changed, (x, y), metrics=["clean"], out_dir=tmp_path, device="cpu")
    assert other["file"] != by["clean"]["file"]
    # Other images: another record too.
    (third,) = energybench.evaluate(_model(), (x.flip(0), y.flip(0)), metrics=["clean"], out_dir=tmp_path,
                                    device="cpu")
    assert third["file"] not in (by["clean"]["file"], other["file"])


def test_python_api_refuses_bad_input_in_one_line(tmp_path):
    x = torch.rand(4, 3, 32, 32)  # floats that are not 8-bit images: refused, not rounded
    with pytest.raises(UserError, match="float images must hold 8-bit images"):
        energybench.evaluate(_model(), (x, torch.zeros(4, dtype=torch.long)), out_dir=tmp_path, device="cpu")
    with pytest.raises(UserError, match="no selected metric takes it"):
        energybench.evaluate(_model(), (x.mul(255).to(torch.uint8), torch.zeros(4, dtype=torch.long)),
                             out_dir=tmp_path, device="cpu", probes=3)
    with pytest.raises(UserError, match="lists of names"):
        energybench.evaluate(_model(), "cifar10", metrics="clean", device="cpu")


def test_training_images_in_memory_serve_like_the_same_images_from_a_file(tmp_path):
    data = synthetic_npz(tmp_path / "synth.npz")
    with np.load(data) as npz:
        train = (npz["train_images"], npz["train_labels"])
    common = dict(metrics=["memorization"], n=10, device="cpu", n_per_class=1, steps=2, k=2, figure_rows=2)
    (from_file,) = energybench.evaluate(_model(), str(data), train_data=str(data), out_dir=tmp_path / "a", **common)
    (in_memory,) = energybench.evaluate(_model(), str(data), train_data=train, out_dir=tmp_path / "b", **common)
    assert in_memory["value"] == from_file["value"] and in_memory["extra"]["train_images"] == 60


# ----------------------------------------------------------------------------- figures


@pytest.fixture(scope="module")
def figure_records(tmp_path_factory):
    """energy-hist, energy-contour and memorization of a module, with in-memory training data."""
    root = tmp_path_factory.mktemp("figs")
    data = synthetic_npz(root / "synth.npz")
    records = energybench.evaluate(
        _model(), str(data), metrics=["energy-hist", "energy-contour", "memorization"], n=20,
        train_data=str(data), out_dir=root / "eval", device="cpu", n_per_class=2, steps=3, k=3,
        figure_rows=4, images=2, grid=5)
    return root / "eval", records


def test_figures_are_drawn_as_png_and_pdf_at_300_dpi(figure_records):
    from PIL import Image

    folder, records = figure_records
    for record in records:
        png = folder / record["extra"]["figure"]
        assert png.exists() and png.with_suffix(".pdf").exists()
        with Image.open(png) as image:
            assert round(image.info["dpi"][0]) == 300


def test_plot_redraws_figures_from_raw_data_only(figure_records, run_cli, tmp_path):
    folder, records = figure_records
    before = {p.name: p.read_bytes() for p in folder.glob("*.json")}
    drawn = {p.name: p.read_bytes() for p in [*folder.glob("*.png"), *folder.glob("*.pdf")]}
    for figure in drawn:
        (folder / figure).unlink()
    code, out, err = run_cli("plot", str(folder))
    assert code == 0, err
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(r["extra"]["figure"] for r in records)
    # the same pictures, byte for byte (no dates in the PDFs)
    assert {p.name: p.read_bytes() for p in [*folder.glob("*.png"), *folder.glob("*.pdf")]} == drawn
    assert {p.name: p.read_bytes() for p in folder.glob("*.json")} == before  # nothing recomputed
    code, out, err = run_cli("plot", records[0]["file"], "--out", str(tmp_path / "svg"), "--format", "svg")
    assert code == 0 and (tmp_path / "svg" / (f"{records[0]['file'].rsplit('/', 1)[1][:-5]}.svg")).exists()
    code, _, err = run_cli("plot", str(tmp_path / "nothing.json"))
    assert code == 2 and "does not exist" in err


def test_memorization_raw_data_holds_what_its_figure_shows(figure_records):
    folder, records = figure_records
    (record,) = [r for r in records if r["metric"] == "memorization"]
    with np.load(folder / record["extra"]["raw"]) as raw:
        assert raw["figure_samples"].shape == (4, 3, 32, 32) and raw["figure_samples"].dtype == np.uint8
        assert raw["figure_neighbours"].shape == (4, 3, 3, 32, 32)
        assert list(raw["classes"]) == CLASSES
        # the figure's SSIM values are the neighbour search's own
        rows = torch.linspace(0, len(raw["ssim"]) - 1, 4).long().numpy()  # spread over the classes
        assert np.array_equal(raw["figure_ssim"], raw["ssim"][rows])
        assert np.array_equal(raw["figure_labels"], raw["sample_labels"][rows])


# ----------------------------------------------------------------------------- CLI conventions


def test_show_config_output_is_a_config_file(tmp_path, run_cli):
    code, shown, _ = run_cli("train", "jeat", "--show-config")
    assert code == 0
    (tmp_path / "jeat.toml").write_text(shown)
    code, again, err = run_cli("train", "--config", str(tmp_path / "jeat.toml"), "--show-config")
    assert code == 0 and again == shown, err
    import tomllib

    import yaml

    (tmp_path / "jeat.yaml").write_text(yaml.safe_dump(tomllib.loads(shown), sort_keys=False))
    code, from_yaml, _ = run_cli("train", "--config", str(tmp_path / "jeat.yaml"), "--show-config")
    assert from_yaml == shown
    code, changed, _ = run_cli("train", "--config", str(tmp_path / "jeat.toml"), "--set", "recipe.eps=4/255",
                               "--set", "optim.lr=0.01", "--show-config")
    doc = tomllib.loads(changed)
    assert doc["recipe"]["eps"] == pytest.approx(4 / 255) and doc["optim"]["lr"] == 0.01
    code, _, err = run_cli("train", "jem", "--config", str(tmp_path / "jeat.toml"))
    assert code == 2 and "a config for jeat, not jem" in err


@pytest.mark.parametrize("args, expected", [
    (["train", "jaet"], "'jaet' is not one of"),
    (["train", "jeat", "--preset", "papr"], "'papr' is not one of"),
    (["train", "jeat", "--set", "params.eps=0.1"], "set as recipe.eps"),
    (["eval", "--ckpt", "x.pt", "--metric", "pgd-20"], "'pgd-20' is not one of"),
    (["eval", "--ckpt", "x.pt", "--suite", "robustness"], "'robustness' is not one of"),
    (["eval", "--ckpt", "x.pt", "--metric", "energy-hist", "--param", "noise_scale=0.01"], "is now called noise"),
    (["report", "--table", "jeat-t9"], "'jeat-t9' is not one of"),
])
def test_typos_and_old_names_are_refused_with_the_list_or_a_hint(run_cli, args, expected):
    code, _, err = run_cli(*args)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_list_and_eval_print_json(tmp_path, run_cli):
    code, out, _ = run_cli("list", "--json")
    listing = json.loads(out)
    assert code == 0 and "jeat" in listing["recipes"] and "autoattack" in listing["metrics"]
    model = _model()
    program = torch.export.export(model, (torch.rand(2, 3, 32, 32),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(program, tmp_path / "m.pt2")
    data = synthetic_npz(tmp_path / "synth.npz")
    code, out, err = run_cli("eval", "--model", str(tmp_path / "m.pt2"), "--data", str(data), "--metric",
                             "clean", "--json", "--device", "cpu")
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["metric"] == "clean" and record["model"]["kind"] == "export"


def test_progress_without_a_terminal_is_plain_log_lines(capsys, monkeypatch):
    from energybench.core import progress as progress_module

    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    monkeypatch.setenv("ENERGYBENCH_PROGRESS_SECONDS", "0")
    bar = progress_module.progress(range(3), desc="work")
    assert isinstance(bar, progress_module.LogLines)  # pytest's stderr is not a terminal
    bar.set_postfix(loss="0.5")
    assert list(bar) == [0, 1, 2]
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("work: 1/3 (33%)") and lines[-1].startswith("work: 3/3 (100%)")
    assert "loss=0.5" in lines[-1] and "\r" not in "".join(lines)
    assert len(lines) == 3 and sum(line.startswith("work: 3/3") for line in lines) == 1  # the final line once


def test_a_terminal_that_reports_no_width_gets_plain_lines(monkeypatch):
    from energybench.core import progress as progress_module

    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(progress_module.sys.stderr, "fileno", lambda: 2)
    monkeypatch.setattr(progress_module.os, "get_terminal_size", lambda fd: os.terminal_size((0, 0)))
    assert isinstance(progress_module.progress(range(3), desc="work"), progress_module.LogLines)
    monkeypatch.setattr(progress_module.os, "get_terminal_size", lambda fd: os.terminal_size((80, 24)))
    assert not isinstance(progress_module.progress(range(3), desc="work"), progress_module.LogLines)


def test_autoattack_reports_each_attack_as_it_ends(monkeypatch, capsys):
    """pyautoattack's own lines (per attack and batch, with the running robust accuracy) reach
    stderr as progress while the record still collects its per-attack accuracies."""
    import logging

    from energybench.attacks.autoattack import _collect_log

    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    with _collect_log() as log:
        logging.getLogger("auto-attack").info("robust accuracy after APGD-CE: 31.25% (total time 2.4 s)")
    assert log.after == {"apgd-ce": 0.3125}
    assert capsys.readouterr().err.strip() == "autoattack: robust accuracy after APGD-CE: 31.25% (total time 2.4 s)"


def _hist_raw(seed, shift):
    rng = np.random.default_rng(seed)
    return {"clean": rng.normal(shift, 1, 50), "adversarial": rng.normal(shift + 1, 1, 50),
            "generated": rng.normal(shift - 2, 1, 20)}


def test_figure_titles_name_the_file_the_data_and_the_counts(figure_records):
    from energybench.metrics.landscape_figures import energy_hist
    from energybench.records.figures import model_label, read_raw

    folder, records = figure_records
    (record,) = [r for r in records if r["metric"] == "energy-hist"]
    figure = energy_hist(record, read_raw(Path(record["file"]), record))
    title = figure.axes[0].get_title()
    assert record["data"]["label"] in title and "20 test images, 20 SGLD samples" in title, title
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "thin vertical lines: the means" in legend
    run = {"recipe": "jeat", "model": {"name": "wrn"}, "checkpoint": {"which": "last"}}
    assert model_label({"model": {**run, "path": "/x/runs/jeat-s1/last.pt"}}) == "jeat (wrn, jeat-s1/last.pt)"
    assert model_label({"model": {**run, "path": "/x/checkpoints/jeat-smoke.pt"}}) == "jeat (wrn, jeat-smoke.pt)"


def test_comparison_panels_in_natural_order_with_an_optional_shared_axis():
    from energybench.reporting.plotting import hist_comparison

    record = {"params": {"eps": 8 / 255}, "data": {"label": "CIFAR-10 (JPEG q75 copy)"}}
    panels = {name: (record, _hist_raw(k, 10 * k)) for k, name in enumerate(["noise-s16", "noise-s8", "noise-s24"])}
    titles = [ax.get_title() for ax in hist_comparison(panels).axes if ax.get_visible()]
    assert titles == ["noise-s8 (n = 50)", "noise-s16 (n = 50)", "noise-s24 (n = 50)"]
    own = [ax.get_xlim() for ax in hist_comparison(panels).axes[:3]]
    shared = [ax.get_xlim() for ax in hist_comparison(panels, shared_x=True).axes[:3]]
    assert len(set(own)) == 3 and len(set(shared)) == 1


def test_contour_levels_are_round_and_cover_the_range():
    from energybench.metrics.landscape_figures import round_levels

    for bound in (0.0137, 0.8, 3.3, 47.0):
        levels = round_levels(bound)
        step = levels[1] - levels[0]
        mantissa = step / 10 ** np.floor(np.log10(step))
        assert min(abs(mantissa - m) for m in (1, 2, 2.5, 5)) < 1e-9, (bound, step)
        assert np.allclose(np.diff(levels), step) and np.isclose(levels[0], -levels[-1])
        assert levels[0] <= -bound and levels[-1] >= bound and len(levels) <= 22


def test_robustness_comparison_has_wilson_error_bars():
    from energybench.core.stats import wilson_interval
    from energybench.reporting.plotting import robustness_scatter

    points = [{"name": "a", "clean": 0.5, "pgd20": 0.2, "autoattack": 0.15, "n_clean": 100, "n_pgd20": 100,
               "n_autoattack": 50},
              {"name": "b", "clean": 0.8, "pgd20": 0.05, "n_clean": 100, "n_pgd20": 100}]
    figure = robustness_scatter(points, "CIFAR-10 (JPEG q75 copy)")
    ax = figure.axes[0]
    assert "CIFAR-10 (JPEG q75 copy)" in ax.get_title() and "Wilson" in ax.get_title()
    bars = [c for c in ax.containers if c.has_yerr]
    low, high = wilson_interval(0.2, 100)
    segments = [seg for bar in bars for collection in bar.lines[2] for seg in collection.get_segments()]
    vertical = {(round(float(s[0][1]), 6), round(float(s[1][1]), 6)) for s in segments if s[0][0] == s[1][0]}
    assert (round(100 * float(low), 6), round(100 * float(high), 6)) in vertical
    assert len(bars) == 3  # PGD-20 twice and AutoAttack once


def test_plot_compare_energy_histograms_with_a_shared_axis(figure_records, run_cli, tmp_path):
    folder, records = figure_records
    (record,) = [r for r in records if r["metric"] == "energy-hist"]
    code, out, err = run_cli("plot", record["file"], record["file"], "--compare", "hists", "--shared-x",
                             "--out", str(tmp_path / "cmp"))
    assert code == 0, err
    assert (tmp_path / "cmp" / "hists.png").exists() and (tmp_path / "cmp" / "hists.pdf").exists()
