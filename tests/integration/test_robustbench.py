"""RobustBench models and leaderboard entries: a zoo entry evaluated end to end without a download,
its leaderboard entry read by RobustBench's own code, and robustbench kept out of everything else."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from testkit import synthetic_npz

pytestmark = pytest.mark.synthetic


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

    model = load_model(Path(__file__).resolve().parents[2] / "checkpoints" / "jeat-smoke.pt").model
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
