"""The Python API (`energybench.evaluate`) on a user's module with data in memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from testkit import seeded_model, synthetic_npz

import energybench
from energybench.core.errors import UserError
from energybench.core.validation import RangeError

pytestmark = pytest.mark.synthetic


def test_python_api_runs_metrics_on_a_module_with_data_in_memory(tmp_path):
    model = seeded_model()
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
    # the record describes its own budget, not the default one
    assert "eps 4/255, step 1/255" in by["pgd20"]["summary"] and "8/255" not in by["pgd20"]["summary"]
    assert by["clean"]["model"]["kind"] == "module" and by["clean"]["data"]["source"]["kind"] == "memory"
    # Same weights and data: the record is reused; one changed weight: a new record.
    (again,) = energybench.evaluate(seeded_model(), (x, y), metrics=["clean"], out_dir=tmp_path, device="cpu")
    assert again["file"] == by["clean"]["file"] and again["created"] == by["clean"]["created"]
    changed = seeded_model()
    with torch.no_grad():
        changed.body[-1].bias[0] += 1.0
    (other,) = energybench.evaluate(changed, (x, y), metrics=["clean"], out_dir=tmp_path, device="cpu")
    assert other["file"] != by["clean"]["file"]
    # Other images: another record too.
    (third,) = energybench.evaluate(seeded_model(), (x.flip(0), y.flip(0)), metrics=["clean"], out_dir=tmp_path,
                                    device="cpu")
    assert third["file"] not in (by["clean"]["file"], other["file"])


def test_python_api_refuses_bad_input_in_one_line(tmp_path):
    x = torch.rand(4, 3, 32, 32)  # floats that are not 8-bit images: refused, not rounded
    with pytest.raises(UserError, match="float images must hold 8-bit images"):
        energybench.evaluate(seeded_model(), (x, torch.zeros(4, dtype=torch.long)), out_dir=tmp_path, device="cpu")
    with pytest.raises(UserError, match="no selected metric takes it"):
        energybench.evaluate(seeded_model(), (x.mul(255).to(torch.uint8), torch.zeros(4, dtype=torch.long)),
                             out_dir=tmp_path, device="cpu", probes=3)
    with pytest.raises(UserError, match="lists of names"):
        energybench.evaluate(seeded_model(), "cifar10", metrics="clean", device="cpu")
    # a protocol value past its declared limit: the range error itself, never a TypeError from
    # re-raising it with the API's wording, and nothing is run
    images = (x.mul(255).to(torch.uint8), torch.zeros(4, dtype=torch.long))
    for value in ({"eot": 10**9}, {"steps": 10**12}):
        with pytest.raises(RangeError, match=r"must be in \[1, \d+\], got \d+"):
            energybench.evaluate(seeded_model(), images, metrics=["pgd20"], out_dir=tmp_path / "limits",
                                 device="cpu", **value)
    assert not (tmp_path / "limits").exists() or not any((tmp_path / "limits").glob("*.json"))


def test_training_images_in_memory_serve_like_the_same_images_from_a_file(tmp_path):
    data = synthetic_npz(tmp_path / "synth.npz")
    with np.load(data) as npz:
        train = (npz["train_images"], npz["train_labels"])
    common = dict(metrics=["memorization"], n=10, device="cpu", n_per_class=1, steps=2, k=2, figure_rows=2)
    (from_file,) = energybench.evaluate(seeded_model(), str(data), train_data=str(data), out_dir=tmp_path / "a", **common)
    (in_memory,) = energybench.evaluate(seeded_model(), str(data), train_data=train, out_dir=tmp_path / "b", **common)
    assert in_memory["value"] == from_file["value"] and in_memory["extra"]["train_images"] == 60


def test_the_callers_module_comes_back_in_the_modes_it_was_given(tmp_path):
    """Evaluation runs in eval mode; the module is handed back as it came, submodule by submodule
    (a module in training mode with one frozen, eval-mode layer stays exactly so)."""
    model = seeded_model().train()
    model.body[0].eval()
    before = [m.training for m in model.modules()]
    images = (torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 10)
    energybench.evaluate(model, images, metrics=["clean"], out_dir=tmp_path, device="cpu")
    assert [m.training for m in model.modules()] == before
    with pytest.raises(UserError):
        energybench.evaluate(model, images, metrics=["no-such-metric"], out_dir=tmp_path, device="cpu")
    assert [m.training for m in model.modules()] == before
