"""The GPU check's CPU dry run (scripts/gpu_check.py --tiny): every part runs and reports, so that
the one call on a lent GPU works the first time. On the CPU the shipped checkpoints must give their
committed records back image for image, and AutoAttack its committed CPU reference."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from energybench.training.recipes import recipe_names

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.real_data]


def test_tiny_dry_run_reports_every_part(tmp_path, jpeg_tar):
    out = tmp_path / "gpu-check"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--tiny", "--device", "cpu",
                           "--out", str(out), "--data", str(jpeg_tar)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    parts = results["parts"]
    assert list(parts) == ["checkpoints", "pgd", "training", "autoattack", "syncs", "tests"]
    assert all(part["status"] == 0 for part in parts.values())

    rows = parts["checkpoints"]["rows"]
    assert {(r["recipe"], r["metric"]) for r in rows} == {(c, m) for c in ("pgd-at", "jem") for m in ("clean", "pgd20")}
    assert all(r["images_differing"] == 0 and r["device"] == r["cpu"] for r in rows)

    for row in parts["pgd"]["rows"]:
        assert row["images"] == 64 and row["images_per_s"] > 0 and row["limit_seconds"] > 0
        assert row["ratio_to_limit"] == pytest.approx(row["seconds"] / row["limit_seconds"])
    assert [r["precision"] for r in parts["pgd"]["rows"]] == ["float32", "bfloat16"]

    training = {r["recipe"]: r for r in parts["training"]["rows"]}
    assert sorted(training) == sorted(recipe_names())
    assert all(r["nonfinite_losses"] == 0 and r["step_seconds"] > 0 for r in training.values())
    assert training["normal"]["vs_normal"] == 1.0

    aa = parts["autoattack"]
    assert aa["images"] == 10 and aa["images_differing"] == 0 and aa["device"] == aa["cpu"]
    assert "CUDA only" in parts["syncs"]["skipped_reason"]
    assert parts["tests"]["status"] == 0 and "passed" in parts["tests"]["summary"]

    readme = (out / "README.md").read_text()
    for heading in ("## checkpoints", "## pgd", "## training", "## autoattack", "## syncs", "## tests"):
        assert heading in readme
    assert (out / "parts.log").read_text().count("==== ") == 5 and (out / "tests.log").exists()


def test_synchronisations_are_counted_by_the_energybench_line_that_made_them(monkeypatch):
    """CUDA's sync debug mode warns at each wait for the GPU; the check names the innermost
    energybench line on the stack for each (here warnings stand in for CUDA's, on the CPU)."""
    import importlib.util
    import warnings

    import torch

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    namespace = {}
    source = "import warnings\n\ndef wait():\n    warnings.warn('called a synchronizing CUDA operation')\n"
    exec(compile(source, str(REPO / "energybench" / "attacks" / "pgd.py"), "exec"), namespace)

    def work():
        namespace["wait"]()
        namespace["wait"]()
        warnings.warn("called a synchronizing CUDA operation")  # outside the package
        warnings.warn("an unrelated warning")

    assert gpu_check.sync_sites(work) == {"energybench/attacks/pgd.py:4": 2, "outside energybench": 1}
    assert gpu_check.count_syncs(namespace["wait"]) == 1
    assert modes == ["warn", "default"] * 2
