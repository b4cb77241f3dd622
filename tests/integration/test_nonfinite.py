"""NaN and infinite numbers are never results: logits that are not finite stop a metric in one
line (they used to count as class 0), and training never saves a state whose weights, energies
or logits blew up (the step after the last check used to be saved as 'the last good state')."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from energybench.core.errors import UserError
from energybench.evaluation.runner import evaluate
from energybench.handles.checkpoint import load_model, read_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[2]


class NaNOnSome(nn.Module):
    """The shipped JEAT model with NaN logits on every third image."""

    def __init__(self):
        super().__init__()
        self.model = load_model(REPO / "checkpoints" / "jeat-smoke.pt").model

    def forward(self, x):
        out = self.model(x).clone()
        out[::3] = float("nan")
        return out


def _data(n=32):
    rng = np.random.default_rng(0)
    return (torch.from_numpy(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)),
            torch.from_numpy(rng.integers(0, 10, n)))


@pytest.mark.parametrize("metric", ["clean", "pgd20", "pgd20-energy", "autoattack", "jfs", "mfs"])
def test_nan_logits_stop_the_metric_naming_how_many_images(metric, tmp_path):
    with pytest.raises(UserError, match=r"NaN or infinite logits for 11 of 32 images"):
        evaluate(NaNOnSome(), [metric], data=_data(), out_dir=tmp_path, log=lambda m: None,
                 overrides={"max_images": 32} if metric == "autoattack" else None)
    assert not list(tmp_path.glob(f"{metric}-*.json"))


class NaNOnBlackCorner(nn.Module):
    """NaN logits for images whose top-left pixel is exactly black (random probes never are)."""

    def __init__(self):
        super().__init__()
        self.model = load_model(REPO / "checkpoints" / "jeat-smoke.pt").model

    def forward(self, x):
        out = self.model(x)
        black = (x[:, 0, 0, 0] == 0).view(-1, 1)
        return torch.where(black, torch.full_like(out, float("nan")), out)


def test_an_exported_program_with_nan_rows_gets_one_line(tmp_path, run_cli):
    path = tmp_path / "nan.pt2"
    program = torch.export.export(NaNOnBlackCorner().eval(), (torch.rand(4, 3, 32, 32),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(program, str(path))
    data = tmp_path / "d.npz"
    images, labels = _data()
    images = images.clone()
    images[::3, 0, 0, 0] = 0
    images[1::3, 0, 0, 0] = images[2::3, 0, 0, 0] = 200
    np.savez(data, images=images.numpy(), labels=labels.numpy())
    for metric in ("clean", "pgd20"):
        code, out, err = run_cli("eval", "--model", path, "--data", data, "--metric", metric, "--device", "cpu",
                                 "--out", tmp_path / "out")
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{metric}: the model returned NaN or infinite logits for 11 of 32 images" in err, err


def _black_corner_data(n=32):
    """Random images with no pixel value below 16 (an 8/255 attack cannot reach black), except the
    top-left red value of every fourth image, which is black."""
    rng = np.random.default_rng(1)
    images = rng.integers(16, 256, (n, 32, 32, 3), dtype=np.uint8)
    images[::4, 0, 0, 0] = 0
    return torch.from_numpy(images), torch.from_numpy(rng.integers(0, 10, n))


@pytest.mark.parametrize("metric", ["clean", "pgd20"])
def test_go_on_counts_nan_answers_wrong(metric, tmp_path):
    """--nonfinite wrong: the 8 images with NaN logits count as wrong and the record says so. The
    reference is the same model without the NaN (per-image PGD starts make each image's attack
    independent of its batch): its per-image outcomes with those 8 images set to wrong."""
    images, labels = _black_corner_data()
    black = (images[:, 0, 0, 0] == 0).numpy()
    (went_on,) = evaluate(NaNOnBlackCorner(), [metric], data=(images, labels), out_dir=tmp_path / "on",
                          log=lambda m: None, nonfinite="wrong")
    inner = NaNOnBlackCorner().model
    (reference,) = evaluate(inner, [metric], data=(images, labels), out_dir=tmp_path / "ref", log=lambda m: None)
    column = "clean_correct" if metric == "clean" else "robust"
    with np.load(tmp_path / "ref" / reference["extra"]["outcomes"]) as ref:
        expected = (ref[column] & ~black).sum() / len(black)
    assert went_on["value"] == pytest.approx(expected)
    assert went_on["extra"]["nonfinite_counted_wrong"] == 8
    with np.load(tmp_path / "on" / went_on["extra"]["outcomes"]) as got:
        assert not got[column][black].any()
    # the model is deterministic: NaN logits that come back NaN are no randomness (NaN != NaN)
    if metric == "pgd20":
        randomized = went_on["diagnostics"]["randomized_forward"]
        assert randomized["flag"] is False and randomized["evidence"]["nonfinite_logits_changed"] == 0
    # the record is standard JSON: a strict parser that refuses NaN and Infinity reads it
    json.loads(Path(went_on["file"]).read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the record"))
    # a refusing run does not reuse the record that went on: it stops
    with pytest.raises(UserError, match=r"NaN or infinite logits for 8 of 32 images.*nonfinite=wrong"):
        evaluate(NaNOnBlackCorner(), [metric], data=(images, labels), out_dir=tmp_path / "on", log=lambda m: None)


def test_go_on_autoattacks_only_the_answered_images(tmp_path):
    """AutoAttack with --nonfinite wrong attacks the images with finite logits and counts the rest
    wrong: as many robust images as AutoAttack on those images alone (same seed, one chunk)."""
    images, labels = _black_corner_data()
    black = images[:, 0, 0, 0] == 0
    (went_on,) = evaluate(NaNOnBlackCorner(), ["autoattack"], data=(images, labels), out_dir=tmp_path / "on",
                          log=lambda m: None, nonfinite="wrong", overrides={"max_images": 32})
    (alone,) = evaluate(NaNOnBlackCorner().model, ["autoattack"], data=(images[~black], labels[~black]),
                        out_dir=tmp_path / "alone", log=lambda m: None, overrides={"max_images": 32})
    assert round(went_on["value"] * 32) == round(alone["value"] * 24)
    assert went_on["extra"]["nonfinite_counted_wrong"] == 8


def test_a_checkpoint_whose_normalisation_makes_nan_is_refused(tmp_path):
    ckpt = read_checkpoint(REPO / "checkpoints" / "jeat-smoke.pt")
    state = dict(ckpt["state_dict"])
    key = next(k for k in state if k.endswith("normalize.std"))
    state[key] = torch.full_like(state[key], 1e-45)  # finite weights, NaN logits
    save_checkpoint({**{k: v for k, v in ckpt.items() if k != "weights_sha256"}, "state_dict": state},
                    tmp_path / "tiny-std.pt")
    images, labels = _data(16)
    data = tmp_path / "named.npz"
    np.savez(data, images=images.numpy(), labels=labels.numpy(), label_names=np.array(ckpt["meta"]["classes"]))
    with pytest.raises(UserError, match=r"clean: the model returned NaN or infinite logits for \d+ of 16 images"):
        evaluate(tmp_path / "tiny-std.pt", ["clean"], data=str(data), out_dir=tmp_path / "e", log=lambda m: None)


def test_training_that_blows_up_on_its_last_step_is_not_saved(tmp_path, run_cli, jpeg_tar):
    """One step per epoch at lr 1e9: the step's own check passes (its loss is computed before the
    update), the update explodes the weights. The state is checked before it is saved, so the
    guard rolls back and finally stops, and last.pt stays the last state that was finite."""
    out = tmp_path / "run"
    code, stdout, err = run_cli("train", "normal", "--preset", "smoke", "--data", jpeg_tar, "--out", out,
                                "--device", "cpu", "--set", "optim.lr=1e9", "--set", "optim.epochs=1",
                                "--set", "data.train_subset=200", "--set", "run.guard.max_abs_energy=1e30")
    assert code == 2 and "training diverged" in err and "the last good state is" in err, err
    assert "at the end of epoch 1" in stdout + err
    ckpt = read_checkpoint(out / "last.pt")  # refuses non-finite weights itself
    assert ckpt["progress"]["global_step"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    code, stdout, err = run_cli("train", "normal", "--preset", "smoke", "--data", jpeg_tar, "--out", tmp_path / "off",
                                "--device", "cpu", "--set", "optim.lr=1e9", "--set", "optim.epochs=1",
                                "--set", "data.train_subset=200", "--set", "run.guard.max_abs_energy=1e30",
                                "--set", "run.guard.enabled=false")
    assert code == 2 and "training diverged by the end of epoch 1" in err and len(err.strip().splitlines()) == 1, err
