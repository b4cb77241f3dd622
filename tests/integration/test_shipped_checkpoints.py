"""The small checkpoints shipped in checkpoints/ (made by scripts/ship_checkpoints.py from the smoke
reproduction): they load, their committed records belong to them, and their numbers come back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from energybench.core.hashing import file_sha256
from energybench.handles.checkpoint import load_model, read_checkpoint

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
SHIPPED = sorted(CHECKPOINTS.glob("*-smoke.pt"))
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def committed_records(ckpt: Path) -> dict[str, dict]:
    folder = CHECKPOINTS / "records" / ckpt.name.removesuffix("-smoke.pt")
    return {r["metric"]: r for r in (json.loads(p.read_text()) for p in folder.glob("*.json"))}


def test_the_smoke_reproductions_recipes_are_shipped():
    assert {p.name for p in SHIPPED} == {f"{r}-smoke.pt" for r in
                                         ("normal", "pgd-at", "trades", "jem", "jeat", "eb-jdat", "jempp",
                                          "sadajem", "eb-jdat-sadajem")}


@pytest.mark.parametrize("ckpt", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoint_loads_and_its_records_are_its_own(ckpt, tmp_path, run_cli):
    raw = read_checkpoint(ckpt)  # checks the weights against their digest
    assert raw["recipe_state"] == {} and "optimizer" not in raw  # evaluation only
    assert ckpt.with_name(f"{ckpt.stem}.log.jsonl").is_file()  # what energy-dynamics reads
    records = committed_records(ckpt)
    assert set(records) == {"clean", "pgd20"}
    assert all(r["model"]["sha256"] == file_sha256(ckpt) for r in records.values())
    # It evaluates on any CIFAR-10-classed data without ../shared (synthetic images here).
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "synth.npz", images=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
             labels=np.arange(8) % 10, label_names=np.array(CIFAR10))
    code, _, err = run_cli("eval", "--ckpt", ckpt, "--data", tmp_path / "synth.npz", "--metric", "clean",
                           "--out", tmp_path / "e", "--device", "cpu")
    assert code == 0, err


@pytest.mark.slow
@pytest.mark.parametrize("ckpt", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoint_reproduces_its_committed_numbers(ckpt, tmp_path, jpeg_tar):
    """Same checkpoint, data and protocol: the committed values come back (within the CI
    reference's tolerance for accuracies, one image in 50, for other CPUs)."""
    from energybench.evaluation.runner import evaluate

    records = committed_records(ckpt)
    again = {r["metric"]: r for r in evaluate(ckpt, ["clean", "pgd20"], data=str(jpeg_tar),
                                              n=records["clean"]["n"], out_dir=tmp_path, log=lambda m: None)}
    for metric, record in records.items():
        assert again[metric]["identity"]["params"] == record["identity"]["params"]
        assert again[metric]["value"] == pytest.approx(record["value"], abs=0.020)
    assert load_model(ckpt).checkpoint["meta"]["data_spec"] == "../shared/data/cifar10-jpeg75.tar.gz"


@pytest.mark.parametrize("ckpt", SHIPPED, ids=lambda p: p.name)
def test_committed_records_are_reused_without_recomputation(ckpt, tmp_path, jpeg_tar, monkeypatch):
    """The record format and every record key are unchanged by moves of the code: evaluating the
    same checkpoint, data and protocol into a folder holding the committed records computes
    nothing and returns exactly those records."""
    import shutil

    from energybench.evaluation.runner import evaluate
    from energybench.metrics import METRICS
    from energybench.metrics.base import Metric

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{self.name} was recomputed: its committed record was not reused")

    classes = {Metric, *(cls for name in METRICS for cls in METRICS.get(name).__mro__ if issubclass(cls, Metric))}
    for cls in classes:  # every class that defines a way to compute, so no override escapes
        for method in ("compute", "shard", "finish"):
            if method in vars(cls):
                monkeypatch.setattr(cls, method, refuse)
    folder = CHECKPOINTS / "records" / ckpt.name.removesuffix("-smoke.pt")
    out = tmp_path / "records"
    shutil.copytree(folder, out)
    records = committed_records(ckpt)
    again = {r["metric"]: r for r in evaluate(ckpt, sorted(records), data=str(jpeg_tar),
                                              n=records["clean"]["n"], out_dir=out, log=lambda m: None)}
    for metric, record in records.items():
        assert again[metric]["value"] == record["value"] and again[metric]["identity"] == record["identity"]
