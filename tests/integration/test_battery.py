"""The evaluation battery on a smoke checkpoint: generation, memorization, landscapes, AutoAttack."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from energybench.energy.generation import GenerationConfig
from energybench.evaluation.runner import evaluate


@pytest.mark.parametrize("mode, init", [("joint", "class-gaussian"), ("conditional", "uniform"),
                                        ("marginal", "uniform")])
def test_sample_command_saves_npz_and_grids(tmp_path, run_cli, trained_run, mode, init):
    out = tmp_path / "s"
    code, stdout, err = run_cli("sample", "--ckpt", trained_run / "last.pt", "--n-per-class", 3,
                                "--mode", mode, "--init", init, "--steps", 5, "--out", out, "--device", "cpu")
    assert code == 0, err
    with np.load(out / "samples.npz") as z:
        assert z["images"].shape == (30, 32, 32, 3) and z["images"].dtype == np.uint8
        imgs = z["images_float"]
        assert np.isfinite(imgs).all() and imgs.min() >= 0 and imgs.max() <= 1
        if mode != "marginal":
            assert np.bincount(z["labels"], minlength=10).tolist() == [3] * 10
        assert json.loads(str(z["config"]))["mode"] == mode
    assert (out / "grid.png").exists() and len(list(out.glob("grid-*.png"))) >= 1


def test_sample_errors(tmp_path, run_cli, trained_run):
    code, _, err = run_cli("sample", "--ckpt", trained_run / "last.pt", "--init", "buffer",
                           "--steps", 1, "--out", tmp_path)
    assert code == 2 and "needs a checkpoint with a replay buffer" in err
    shipped = Path(__file__).resolve().parents[2] / "checkpoints" / "jem-smoke.pt"
    code, _, err = run_cli("sample", "--ckpt", shipped, "--init", "buffer", "--steps", 1, "--out", tmp_path / "s")
    assert code == 2 and "is a jem checkpoint whose replay buffer was stripped when it was shipped" in err, err
    code, _, err = run_cli("sample", "--ckpt", trained_run / "last.pt", "--mode", "dream")
    assert code == 2 and "Invalid value for '--mode': 'dream' is not one of" in err


def test_landscape_and_memorization_records(trained_run, exact_npz, tmp_path):
    overrides = {"n_per_class": 2, "steps": 5, "init": "uniform"}
    records = {r["metric"]: r for r in evaluate(
        trained_run / "last.pt", ["memorization", "energy-hist", "energy-contour", "energy-dynamics"],
        data=str(exact_npz), n=40, out_dir=tmp_path, overrides=overrides, log=lambda m: None)}
    mem = records["memorization"]
    assert mem["n"] == 20 and 0 < mem["value"] <= 1 and mem["params"]["k"] == 10
    assert (tmp_path / mem["extra"]["figure"]).exists()
    with np.load(tmp_path / mem["extra"]["raw"]) as z:
        assert z["ssim"].shape == (20, 10) and (np.diff(z["ssim"], axis=1) <= 1e-6).all()
    hist = records["energy-hist"]["extra"]
    assert set(hist["energies"]) == {"clean", "adversarial", "generated"}
    assert hist["gap_adv_clean"] > 0  # PGD raises E(x, y) on a normal model
    assert 0 <= hist["overlap_clean_adv"] <= 1
    contour = records["energy-contour"]
    with np.load(tmp_path / contour["extra"]["raw"]) as z:
        assert z["grid"].shape == (4, 21, 21)
    assert records["energy-dynamics"]["n"] == 4  # epochs in the fixture's log
    for name in ("energy-hist", "energy-contour", "energy-dynamics"):
        figure = tmp_path / records[name]["extra"]["figure"]
        assert figure.exists() and figure.stem == Path(records[name]["file"]).stem
    # generated once, shared by memorization and energy-hist
    assert len(list(tmp_path.glob("samples-*.npz"))) == 1
    assert contour["params"]["radius"] == pytest.approx(16 / 255)


def test_autoattack_metric_is_resumable(trained_run, exact_npz, tmp_path):
    kwargs = dict(data=str(exact_npz), n=16, batch_size=16, out_dir=tmp_path,
                  overrides={"eps": 1 / 255}, log=lambda m: None)
    (first,) = evaluate(trained_run / "last.pt", ["autoattack"], **kwargs)
    assert first["n"] == 16 and first["value"] <= first["extra"]["clean_accuracy"]
    state = tmp_path / first["extra"]["state_file"]
    assert state.exists() and state.name == Path(first["file"]).stem + ".state.json"
    (again,) = evaluate(trained_run / "last.pt", ["autoattack"], force=True, **kwargs)
    assert again["value"] == first["value"]


def test_suite_all_keeps_going_past_refusals(tmp_path, run_cli, trained_run, exact_npz, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    refused = {}
    records = evaluate(trained_run / "last.pt", ["clean", "is", "fid"], data=str(exact_npz), n=20,
                       out_dir=tmp_path / "e", log=lambda m: None, refused=refused)
    assert [r["metric"] for r in records] == ["clean"] and set(refused) == {"is", "fid"}


def test_exported_model_pgd20_agrees_with_apgd_ce(trained_run, exact_npz, tmp_path):
    """The cross-check of issue 4 on an exported checkpoint (no public checkpoint is reachable from
    these machines): eval's PGD-20 (step eps/4) on the exported program vs pyautoattack's APGD-CE
    on the same 300 exact-pixel images, at 2/255 where the model keeps some robustness; within 3
    points (20 steps and 1 restart vs APGD's 100 iterations; about one standard error at n = 300).
    AutoAttack itself is checked against pyautoattack in test_autoattack.py (too slow on 300
    robust-ish images for CI)."""
    from pyautoattack.autopgd_base import APGDAttack

    from energybench.handles.checkpoint import load_model

    model = load_model(trained_run / "last.pt").model
    program = torch.export.export(model, (torch.rand(8, 3, 32, 32),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    torch.export.save(program, str(tmp_path / "model.pt2"))
    eps = 2 / 255
    records = {r["metric"]: r for r in evaluate(
        tmp_path / "model.pt2", ["pgd20"], data=str(exact_npz), n=300,
        batch_size=300, out_dir=tmp_path / "e", overrides={"eps": eps, "step_size": eps / 4},
        log=lambda m: None)}
    from energybench.data import load_split

    test = load_split(exact_npz, "test").subset(300)
    x, y = test.images.float() / 255, test.labels
    apgd = APGDAttack(model, n_iter=100, norm="Linf", eps=eps, loss="ce", seed=0, device="cpu")
    with torch.no_grad():
        apgd_acc = float((model(apgd.perturb(x, y)).argmax(1) == y).float().mean())
    assert 0.05 < apgd_acc, apgd_acc
    assert abs(records["pgd20"]["value"] - apgd_acc) <= 0.03 + 1e-9, (records["pgd20"]["value"], apgd_acc)
