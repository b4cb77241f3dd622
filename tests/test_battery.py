"""The evaluation battery on a smoke checkpoint: generation, memorization, landscapes, AutoAttack."""

import json

import numpy as np
import pytest
import torch

from energybench.cli import main
from energybench.evaluate import evaluate
from energybench.generation import GenerationConfig


def run_cli(capsys, *args):
    try:
        main(list(map(str, args)))
        code = 0
    except SystemExit as exc:
        code = exc.code
    return (code, *capsys.readouterr())


@pytest.mark.parametrize("mode, init", [("joint", "class-gaussian"), ("conditional", "uniform"),
                                        ("marginal", "uniform")])
def test_sample_command_saves_npz_and_grids(tmp_path, capsys, trained_run, mode, init):
    out = tmp_path / "s"
    code, stdout, err = run_cli(capsys, "sample", "--ckpt", trained_run / "last.pt", "--n-per-class", 3,
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


def test_sample_errors(tmp_path, capsys, trained_run):
    code, _, err = run_cli(capsys, "sample", "--ckpt", trained_run / "last.pt", "--init", "buffer",
                           "--steps", 1, "--out", tmp_path)
    assert code == 2 and "needs a checkpoint with a replay buffer" in err
    code, _, err = run_cli(capsys, "sample", "--ckpt", trained_run / "last.pt", "--mode", "dream")
    assert code == 2 and "unknown generation mode" in err


def test_landscape_and_memorization_records(trained_run, exact_npz, tmp_path):
    overrides = {"n_per_class": 2, "steps": 5, "init": "uniform"}
    records = {r["metric"]: r for r in evaluate(
        trained_run / "last.pt", ["memorization", "energy-hist", "energy-contour", "energy-dynamics"],
        data_spec=str(exact_npz), n=40, out_dir=tmp_path, overrides=overrides, log=lambda m: None)}
    mem = records["memorization"]
    assert mem["n"] == 20 and 0 < mem["value"] <= 1 and mem["params"]["k"] == 10
    assert (tmp_path / "memorization.png").exists()
    with np.load(tmp_path / "memorization.npz") as z:
        assert z["ssim"].shape == (20, 10) and (np.diff(z["ssim"], axis=1) <= 1e-6).all()
    hist = records["energy-hist"]["extra"]
    assert set(hist["energies"]) == {"clean", "adversarial", "generated"}
    assert hist["gap_adv_clean"] > 0  # PGD raises E(x, y) on a normal model
    assert 0 <= hist["overlap_clean_adv"] <= 1
    contour = records["energy-contour"]
    with np.load(tmp_path / "energy-contour.npz") as z:
        assert z["grid"].shape == (4, 21, 21)
    assert records["energy-dynamics"]["n"] == 4  # epochs in the fixture's log
    for name in ("energy-hist", "energy-contour", "energy-dynamics"):
        assert (tmp_path / f"{name}.png").exists()
    # generated once, shared by memorization and energy-hist
    assert len(list(tmp_path.glob("samples-*.npz"))) == 1
    assert contour["params"]["radius"] == pytest.approx(16 / 255)


def test_autoattack_metric_is_resumable(trained_run, exact_npz, tmp_path):
    kwargs = dict(data_spec=str(exact_npz), n=16, batch_size=16, out_dir=tmp_path,
                  overrides={"eps": 1 / 255}, log=lambda m: None)
    (first,) = evaluate(trained_run / "last.pt", ["autoattack"], **kwargs)
    assert first["n"] == 16 and first["value"] <= first["extra"]["clean_accuracy"]
    assert (tmp_path / "autoattack-state-16.json").exists()
    (again,) = evaluate(trained_run / "last.pt", ["autoattack"], force=True, **kwargs)
    assert again["value"] == first["value"]


def test_suite_all_keeps_going_past_refusals(tmp_path, capsys, trained_run, exact_npz, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    refused = {}
    records = evaluate(trained_run / "last.pt", ["clean", "is", "fid"], data_spec=str(exact_npz), n=20,
                       out_dir=tmp_path / "e", log=lambda m: None, refused=refused)
    assert [r["metric"] for r in records] == ["clean"] and set(refused) == {"is", "fid"}
