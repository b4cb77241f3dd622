"""Readers that do not trust their inputs: `plot` on crafted records and raw data, each refused in
one line (exit 2), never a traceback, never a file read outside the record's folder."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from energybench.evaluation.runner import evaluate
from energybench.records.store import sealed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hist_record(tmp_path_factory):
    """A real energy-hist record with its raw data (synthetic data, the shipped JEM model)."""
    out = tmp_path_factory.mktemp("hist")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 16)
    data = out / "d.npz"
    np.savez(data, train_images=images, train_labels=labels, test_images=images, test_labels=labels)
    (record,) = evaluate(REPO / "checkpoints" / "jem-smoke.pt", ["energy-hist"], data=str(data), out_dir=out,
                         train_data=str(data), log=lambda m: None,
                         overrides={"n_per_class": 1, "steps": 2, "init": "uniform", "pgd_steps": 2})
    return Path(record["file"])


def _crafted(hist_record: Path, tmp_path: Path, how: str) -> Path:
    record = json.loads(hist_record.read_text())
    folder = tmp_path / how
    folder.mkdir()
    raw = hist_record.with_suffix(".npz")
    target = folder / hist_record.name
    if how == "deep-json":
        target.write_text("[" * 100_000 + "]" * 100_000)
        return target
    if how == "metric-list":
        record["metric"] = ["energy-hist"]
    elif how == "extra-null":
        record["extra"] = None
    elif how == "raw-outside":
        record["extra"]["raw"] = "../../../etc/passwd"
    elif how == "raw-absolute":
        record["extra"]["raw"] = str(raw.resolve())
    elif how == "raw-pickled":
        np.savez(folder / raw.name, clean=np.array([object()], dtype=object))
    elif how == "raw-corrupt":
        (folder / raw.name).write_bytes(raw.read_bytes()[:100])
    elif how == "raw-missing-keys":
        np.savez(folder / raw.name, something=np.zeros(3))
    elif how == "raw-pickle-file":
        (folder / raw.name).write_bytes(pickle.dumps({"clean": [1, 2]}))
    if how not in ("raw-pickled", "raw-corrupt", "raw-missing-keys", "raw-pickle-file"):
        (folder / raw.name).write_bytes(raw.read_bytes())
    record = sealed(record)  # a forger who re-seals: the deeper checks must still refuse
    target.write_text(json.dumps(record))
    return target


@pytest.mark.parametrize("how, message", [
    ("deep-json", r"is not readable JSON"),
    ("metric-list", r"no record with a figure|is not an energybench record"),
    ("extra-null", r"its raw data \(none named\) is not beside it"),
    ("raw-outside", r"its raw data must be a file beside it"),
    ("raw-absolute", r"its raw data must be a file beside it"),
    ("raw-pickled", r"raw data .* is unreadable"),
    ("raw-corrupt", r"raw data .* is unreadable"),
    ("raw-missing-keys", r"does not hold what its figure needs"),
    ("raw-pickle-file", r"raw data .* is unreadable"),
])
def test_plot_refuses_crafted_records_in_one_line(how, message, hist_record, tmp_path, run_cli):
    import re

    record = _crafted(hist_record, tmp_path, how)
    code, out, err = run_cli("plot", record, "--out", tmp_path / "figures")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(message, lines[0]), lines[0]
    assert not list((tmp_path / "figures").glob("*.png")) if (tmp_path / "figures").exists() else True


@pytest.mark.parametrize("how, message", [
    ("deep", r"is not readable JSON"),
    ("value-string", r"its value is not a number"),
    ("model-null", r"its model is not an object with a sha256"),
    ("no-params", r"it has no params"),
    ("no-data", r"it has no data"),
    ("n-string", r"its n is not a positive integer"),
    ("training-list", r"its model.training is not an object"),
])
def test_report_refuses_malformed_records_in_one_line(how, message, tmp_path, run_cli):
    import re

    source = next((REPO / "tests" / "reference" / "ci" / "records" / "jeat").glob("clean-*.json"))
    record = json.loads(source.read_text())
    folder = tmp_path / "results"
    folder.mkdir()
    target = folder / source.name
    if how == "deep":
        target.write_text("{" + '"a":' * 50_000 + "1" + "}" * 50_000)
    else:
        if how == "value-string":
            record["value"] = "0.5"
        elif how == "model-null":
            record["model"] = None
        elif how == "no-params":
            del record["params"]
        elif how == "no-data":
            del record["data"]
        elif how == "n-string":
            record["n"] = "300"
        elif how == "training-list":
            record["model"]["training"] = [1, 2]
        target.write_text(json.dumps(record))
    code, out, err = run_cli("report", "--table", "jeat-t3", "--results", folder)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"data": "three"}, r"data must be a data spec, LabeledImages or \(images, labels\); got a tuple of 3"),
    ({"data": "dict"}, r"got a dict"),
    ({"n": "5"}, r"n must be an integer, got '5'"),
    ({"n": 2.5}, r"n must be an integer, got 2.5"),
    ({"eps": [0.1]}, r"eps must be a number, got \[0.1\]"),
    ({"batch_size": "8"}, r"batch_size must be an integer, got '8'"),
    ({"model": "tuple"}, r"must return \(N, num_classes\) logits .* it returned a tuple"),
])
def test_the_python_api_checks_its_arguments_before_any_work(kwargs, message, tmp_path):
    import torch

    import energybench
    from energybench.core.errors import UserError
    from energybench.handles.checkpoint import load_model

    model = load_model(REPO / "checkpoints" / "jeat-smoke.pt").model
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 10, 8))

    class ReturnsTuple(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model  # a submodule, so the model moves to the evaluation's device with it

        def forward(self, images):
            return self.inner(images), 1

    kwargs = dict(kwargs)
    data = {"three": (x, y, y), "dict": {"images": x}}.get(kwargs.pop("data", None), (x, y))
    handle = ReturnsTuple() if kwargs.pop("model", None) == "tuple" else model
    with pytest.raises(UserError, match=message):
        energybench.evaluate(handle, data, metrics=["clean", "pgd20"], out_dir=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_the_python_api_takes_float_images_in_torchs_convention(tmp_path):
    """Float (N, 3, H, W) in [0, 1] holding 8-bit images give the same records as the uint8 they
    encode; floats that are not 8-bit images, or out of [0, 1], are refused, not rounded."""
    import torch

    import energybench
    from energybench.core.errors import UserError
    from energybench.handles.checkpoint import load_model

    model = load_model(REPO / "checkpoints" / "jeat-smoke.pt").model
    rng = np.random.default_rng(0)
    as_uint8 = torch.from_numpy(rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 10, 16))
    as_float = as_uint8.float() / 255  # what torchvision's ToTensor gives
    (from_uint8,) = energybench.evaluate(model, (as_uint8, y), metrics=["clean"], out_dir=tmp_path / "u8")
    (from_float,) = energybench.evaluate(model, (as_float, y), metrics=["clean"], out_dir=tmp_path / "f32")
    assert from_float["value"] == from_uint8["value"] and from_float["data"] == from_uint8["data"]
    with pytest.raises(UserError, match="must hold 8-bit images"):
        energybench.evaluate(model, (as_float * 0.99, y), metrics=["clean"], out_dir=tmp_path / "x")
    with pytest.raises(UserError, match=r"finite and in \[0, 1\]"):
        energybench.evaluate(model, (as_float * 255, y), metrics=["clean"], out_dir=tmp_path / "x")


def test_a_wrong_training_data_spec_fails_before_any_metric_runs(tmp_path):
    import energybench
    from energybench.core.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        energybench.evaluate(REPO / "checkpoints" / "jeat-smoke.pt", metrics=["clean", "memorization"],
                             data=str(REPO.parent / "shared" / "data" / "cifar10-test-exact-1017.npz"),
                             train_data=str(tmp_path / "no-such-data.npz"), out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_every_figure_gets_a_caption_saying_what_on_what_and_how_many(hist_record, tmp_path, run_cli):
    code, out, err = run_cli("plot", hist_record, "--out", tmp_path)
    assert code == 0, err
    record = json.loads(hist_record.read_text())
    caption = (tmp_path / f"{hist_record.stem}.caption.txt").read_text()
    assert caption.startswith("energy-hist of jem (tiny-cnn, jem-smoke.pt) (file checkpoints/jem-smoke.pt) on ")
    assert f"on {record['data']['label']}: n = {record['n']} test images" in caption
    assert f"value {record['value']:.4g}" in caption and hist_record.name in caption


def test_python_api_errors_name_its_arguments_not_cli_flags(tmp_path):
    """The same check as the CLI's, worded for the function that was called."""
    import energybench
    from energybench.core.errors import UserError

    exact = str(REPO.parent / "shared" / "data" / "cifar10-test-exact-1017.npz")
    with pytest.raises(UserError) as caught:
        energybench.evaluate(REPO / "checkpoints" / "jeat-smoke.pt", exact, n=5000, out_dir=tmp_path)
    assert str(caught.value).startswith("n=5000 is more than the 1,017 test images") and "--" not in str(caught.value)
    with pytest.raises(UserError) as caught:
        energybench.evaluate(REPO / "checkpoints" / "jeat-smoke.pt", exact, metrics=["clean"], probes=3)
    assert str(caught.value).startswith("probes: no selected metric takes it")
