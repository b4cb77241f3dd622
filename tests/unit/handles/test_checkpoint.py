import pickle

import pytest
import torch

from energybench.core.errors import UserError
from energybench.evaluation.runner import evaluate
from energybench.handles.checkpoint import FORMAT, load_model, read_checkpoint, save_checkpoint
from energybench.handles.exported import load_exported
from energybench.models import create_model


def test_round_trip_rebuilds_model_with_no_flags(trained_run, exact_test):
    raw = torch.load(trained_run / "last.pt", weights_only=True)  # plain types only
    assert raw["format"] == FORMAT and raw["recipe"] == "normal"
    assert raw["model"] == {"name": "tiny-cnn", "kwargs": {"width": 48, "num_classes": 10}}
    assert raw["meta"]["train_source"]["label"] == "CIFAR-10 (JPEG q75 copy)"
    assert raw["progress"]["finished"] and raw["optimizer"]["state"]
    for key in ("seed", "energybench", "torch", "git_sha", "data_spec"):
        assert key in raw["meta"]
    loaded = load_model(trained_run / "last.pt")
    fresh = create_model("tiny-cnn", width=48, num_classes=10).eval()
    fresh.load_state_dict(raw["state_dict"])
    x = exact_test.images[:8].float() / 255
    assert torch.equal(loaded.model(x), fresh(x))
    assert len(loaded.sha256) == 64


def test_half_precision_weights_are_converted_and_said(trained_run, exact_test, tmp_path, capsys):
    """float16 weights load as their float32 values (the model computes in float32), with a line
    on stderr and a note in the record's model description naming the conversion."""
    raw = torch.load(trained_run / "last.pt", weights_only=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in raw["state_dict"].items()}
    save_checkpoint({**raw, "state_dict": half}, tmp_path / "half.pt")
    loaded = load_model(tmp_path / "half.pt")
    floats = sum(v.is_floating_point() for v in half.values())
    assert loaded.info["converted_weights"] == f"converted {floats} weight tensor(s) from float16 to float32"
    assert "from float16 to float32" in capsys.readouterr().err
    reference = create_model("tiny-cnn", width=48, num_classes=10).eval()
    reference.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    x = exact_test.images[:8].float() / 255
    assert torch.equal(loaded.model(x), reference(x))
    (record,) = evaluate(tmp_path / "half.pt", ["clean"], data=exact_test, n=8, out_dir=tmp_path / "ev",
                         log=lambda m: None)
    assert record["model"]["converted_weights"].startswith("converted")


def test_save_refuses_non_plain_objects(tmp_path):
    with pytest.raises(TypeError, match="not a plain type"):
        save_checkpoint({"format": FORMAT, "bad": object()}, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def _one_line_error(path, match):
    with pytest.raises(UserError, match=match) as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value)


def test_refuses_bad_files(tmp_path, trained_run):
    _one_line_error(tmp_path / "missing.pt", "checkpoint not found")
    good = (trained_run / "last.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    _one_line_error(tmp_path / "truncated.pt", "corrupt or truncated")
    (tmp_path / "noise.pt").write_bytes(b"\x00garbage" * 100)
    _one_line_error(tmp_path / "noise.pt", "is not a PyTorch file")
    torch.save({"format": FORMAT, "payload": Payload()}, tmp_path / "code.pt")
    _one_line_error(tmp_path / "code.pt", "pickled Python objects")
    with open(tmp_path / "plain-pickle.pt", "wb") as fh:
        pickle.dump({"x": Payload()}, fh)
    _one_line_error(tmp_path / "plain-pickle.pt", "corrupt|pickled")
    torch.save(create_model("tiny-cnn").state_dict(), tmp_path / "foreign.pt")
    _one_line_error(tmp_path / "foreign.pt", "not an energybench checkpoint .*bare state_dict")
    ckpt = torch.load(trained_run / "last.pt", weights_only=True)
    save_checkpoint({**ckpt, "format_version": 99}, tmp_path / "future.pt")
    _one_line_error(tmp_path / "future.pt", "format version 99.*upgrade")
    save_checkpoint({**ckpt, "model": {"name": "tiny-cnn", "kwargs": {"width": 8}}}, tmp_path / "w.pt")
    with pytest.raises(UserError, match="weights do not fit"):
        load_model(tmp_path / "w.pt")


@pytest.mark.parametrize("dynamic", [True, False])
def test_exported_program_evaluates_like_the_checkpoint(tmp_path, trained_run, exact_npz, dynamic):
    model = load_model(trained_run / "last.pt").model
    example = (torch.rand(64, 3, 32, 32),)
    shapes = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic else None
    program = torch.export.export(model, example, dynamic_shapes=shapes)
    path = tmp_path / "model.pt2"
    torch.export.save(program, str(path))
    exported = load_exported(path)
    assert exported.fixed_batch == (None if dynamic else 64)
    kwargs = dict(data=str(exact_npz), n=300, batch_size=100, log=lambda m: None)
    ours = {r["metric"]: r for r in evaluate(trained_run / "last.pt", ["clean", "pgd20"],
                                              out_dir=tmp_path / "a", **kwargs)}
    theirs = {r["metric"]: r for r in evaluate(path, ["clean", "pgd20"], out_dir=tmp_path / "b", **kwargs)}
    assert theirs["clean"]["model"]["kind"] == "export"
    assert theirs["clean"]["value"] == ours["clean"]["value"]
    assert abs(theirs["pgd20"]["value"] - ours["pgd20"]["value"]) <= 0.01


def test_export_refusals(tmp_path):
    (tmp_path / "junk.pt2").write_bytes(b"not a program")
    with pytest.raises(UserError, match="cannot load .* as a torch.export program"):
        load_exported(tmp_path / "junk.pt2")
    program = torch.export.export(torch.nn.Identity(), (torch.rand(2, 3, 32, 32),))
    torch.export.save(program, str(tmp_path / "identity.pt2"))
    with pytest.raises(UserError, match="must return .* logits"):
        load_exported(tmp_path / "identity.pt2")
