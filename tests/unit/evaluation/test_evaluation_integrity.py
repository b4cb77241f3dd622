"""Every number belongs to exactly the model, data and protocol its record names.

One test per defect of the evaluation-integrity issue; each fails on the code before the fix:
PGD step following the budget, caches keyed by model and protocol, records keyed by protocol,
energy-dynamics raw rows, a killed AutoAttack run resumed, class order, weight integrity, TF32.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from energybench.core.errors import UserError
from energybench.evaluation.runner import evaluate

QUIET = dict(log=lambda m: None)


def test_pgd_step_follows_the_budget_and_matches_apgd_ce(trained_run, exact_npz, tmp_path):
    """--eps alone gives step eps/4 (recorded), and PGD-20 at 1/255 lands within 2 points of
    pyautoattack's APGD-CE (100 iterations, its own step-size schedule) on the same images."""
    from pyautoattack.autopgd_base import APGDAttack

    from energybench.data import load_split
    from energybench.handles.checkpoint import load_model

    eps = 1 / 255
    (record,) = evaluate(trained_run / "last.pt", ["pgd20"], data=str(exact_npz), n=500,
                         out_dir=tmp_path, overrides={"eps": eps}, **QUIET)
    assert record["params"]["eps"] == pytest.approx(eps)
    assert record["params"]["step_size"] == pytest.approx(eps / 4)
    test = load_split(exact_npz, "test").subset(500)
    model = load_model(trained_run / "last.pt").model
    x, y = test.images.float() / 255, test.labels
    x_adv = APGDAttack(model, n_iter=100, norm="Linf", eps=eps, loss="ce", seed=0, device="cpu").perturb(x, y)
    with torch.no_grad():
        apgd = float((model(x_adv).argmax(1) == y).float().mean())
    assert abs(record["value"] - apgd) <= 0.02, (record["value"], apgd)
    (given,) = evaluate(trained_run / "last.pt", ["pgd20"], data=str(exact_npz), n=500,
                        out_dir=tmp_path, overrides={"eps": eps, "step_size": "0.5/255"}, **QUIET)
    assert given["params"]["step_size"] == pytest.approx(0.5 / 255)


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, jpeg_tar):
    """Another tiny model (another seed) for the tests that must tell two models apart."""
    from dataclasses import replace

    from energybench.training.config import apply_overrides
    from energybench.training.recipes import preset_config
    from energybench.training.run import train

    cfg = preset_config("normal", "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(jpeg_tar)))
    cfg = apply_overrides(cfg, ["data.train_subset=2000", "optim.epochs=2", "data.eval_subset=0",
                                "run.seed=7"])
    out = tmp_path_factory.mktemp("second") / "run"
    train(cfg, out, torch.device("cpu"))
    return out


def test_caches_are_keyed_by_model_and_protocol(trained_run, second_run, exact_npz, tmp_path):
    """AutoAttack's state and the generated samples of a second model (or another eps) in the same
    folder are its own: each equals what a fresh folder gives."""
    kwargs = dict(data=str(exact_npz), n=16, batch_size=16, **QUIET)
    shared = tmp_path / "shared"
    overrides = {"eps": 8 / 255, "n_per_class": 1, "steps": 5}
    metrics = ["autoattack", "energy-hist"]
    first = {r["metric"]: r for r in evaluate(trained_run / "last.pt", metrics, out_dir=shared,
                                              overrides=overrides, **kwargs)}
    second = {r["metric"]: r for r in evaluate(second_run / "last.pt", metrics, out_dir=shared,
                                               overrides=overrides, **kwargs)}
    alone = {r["metric"]: r for r in evaluate(second_run / "last.pt", metrics, out_dir=tmp_path / "alone",
                                              overrides=overrides, **kwargs)}
    for metric in metrics:
        assert second[metric]["value"] == alone[metric]["value"]
        assert second[metric]["extra"] == alone[metric]["extra"] or metric == "energy-hist"
    assert second["energy-hist"]["extra"]["energies"] == alone["energy-hist"]["extra"]["energies"]
    assert first["energy-hist"]["extra"]["energies"] != second["energy-hist"]["extra"]["energies"]
    assert len(list(shared.glob("samples-*.npz"))) == 2
    assert len(list(shared.glob("autoattack-*.state.json"))) == 2
    # --force into the same folder recomputes from scratch: no chunk is taken from the old state,
    # even one edited to claim every image robust
    state = shared / Path(second["autoattack"]["file"]).with_suffix(".state.json").name
    saved = json.loads(state.read_text())
    for chunk in saved["chunks"].values():
        chunk["robust"] = chunk["adv"] = "1" * len(chunk["robust"])
    state.write_text(json.dumps(saved))
    # without --force, the edited state is refused: its contents no longer match their digest
    Path(second["autoattack"]["file"]).unlink()
    with pytest.raises(UserError, match="does not match its digest"):
        evaluate(second_run / "last.pt", ["autoattack"], out_dir=shared, overrides=overrides, **kwargs)
    (forced,) = evaluate(second_run / "last.pt", ["autoattack"], out_dir=shared, overrides=overrides,
                         force=True, **kwargs)
    assert forced["value"] == alone["autoattack"]["value"] and forced["extra"]["chunks_resumed"] == 0


def test_energy_dynamics_keeps_its_raw_rows(tmp_path, jpeg_tar):
    from dataclasses import replace

    from energybench.training.config import apply_overrides
    from energybench.training.recipes import preset_config
    from energybench.training.run import train

    cfg = preset_config("normal", "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(jpeg_tar)))
    cfg = apply_overrides(cfg, ["data.train_subset=500", "optim.epochs=2", "data.eval_subset=0",
                                "run.dynamics_probe=16"])
    train(cfg, tmp_path / "run", torch.device("cpu"))
    (record,) = evaluate(tmp_path / "run" / "last.pt", ["energy-dynamics"], n=8, out_dir=tmp_path / "ev", **QUIET)
    raw = tmp_path / "ev" / record["extra"]["raw"]
    rows = [json.loads(line) for line in raw.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all("dxE_joint" in r for r in rows)
    assert json.loads(Path(record["file"]).read_text())["metric"] == "energy-dynamics"


_AUTOATTACK_CHILD = """
import sys, torch
from energybench.handles.checkpoint import load_model
from energybench.data import load_split
from energybench.attacks.autoattack import run_autoattack
torch.set_num_threads(1)
model = load_model(sys.argv[1]).model
test = load_split(sys.argv[2], "test").subset(36)
run_autoattack(model, test.images.float() / 255, test.labels, eps=2 / 255, seed=0, batch_size=12,
               state_path=__import__("pathlib").Path(sys.argv[3]), chunk_size=12, key={"test": 1})
"""


def test_killed_autoattack_resumes_to_the_uninterrupted_result(trained_run, exact_npz, tmp_path):
    """A real AutoAttack run is killed (SIGKILL) after its first chunk; the resumed run reuses
    that chunk and ends with exactly the robust flags and per-attack numbers of an uninterrupted run."""
    from energybench.attacks.autoattack import run_autoattack
    from energybench.data import load_split
    from energybench.handles.checkpoint import load_model

    state = tmp_path / "aa.state.json"
    env = dict(os.environ, ENERGYBENCH_PROGRESS="0")
    child = subprocess.Popen([sys.executable, "-c", _AUTOATTACK_CHILD, str(trained_run / "last.pt"),
                              str(exact_npz), str(state)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
        if state.exists() and len(json.loads(state.read_text())["chunks"]) >= 1:
            break
        time.sleep(0.05)
    assert child.poll() is None, f"the run ended before it could be killed: {child.stderr.read()}"
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = len(json.loads(state.read_text())["chunks"])
    assert 1 <= done < 3, "killed mid-attack: some chunks finished, not all"

    model = load_model(trained_run / "last.pt").model
    test = load_split(exact_npz, "test").subset(36)
    x, y = test.images.float() / 255, test.labels
    kwargs = dict(eps=2 / 255, seed=0, batch_size=12, chunk_size=12, key={"test": 1})
    resumed = run_autoattack(model, x, y, state_path=state, **kwargs)
    fresh = run_autoattack(model, x, y, state_path=tmp_path / "fresh.state.json", **kwargs)
    assert resumed.chunks_resumed == done and fresh.chunks_resumed == 0
    assert torch.equal(resumed.robust_flags, fresh.robust_flags)
    assert resumed.per_attack == fresh.per_attack and resumed.clean_accuracy == fresh.clean_accuracy
    with pytest.raises(UserError, match="another model, data or protocol"):
        run_autoattack(model, x, y, state_path=state, **{**kwargs, "eps": 1 / 255})
    assert all(p.grad is None for p in model.parameters())  # no gradients left on the model


def test_autoattack_warnings_reach_the_record_and_summary(trained_run, exact_npz, tmp_path):
    """AutoAttack's own reliability checks (here: a randomised model) are kept, not dropped."""
    from energybench.handles.checkpoint import load_model
    from energybench.records.text import format_summary

    class Noisy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) + 0.5 * torch.randn(len(x), 10)

    noisy = Noisy(load_model(trained_run / "last.pt").model)  # any nn.Module is a model handle
    (record,) = evaluate(noisy, ["autoattack"], data=str(exact_npz), n=8,
                         batch_size=8, out_dir=tmp_path, overrides={"eps": 1 / 255}, **QUIET)
    assert any("random" in w.lower() for w in record["extra"]["warnings"])
    assert "Warnings raised by the metrics" in format_summary([record])


def test_data_with_other_class_order_is_refused(trained_run, exact_npz, tmp_path):
    with np.load(exact_npz) as z:
        names = [str(n) for n in z["label_names"]]
        images, labels = z["images"], z["labels"]
    swapped = names[1:] + names[:1]
    np.savez(tmp_path / "swapped.npz", images=images, labels=labels, label_names=np.array(swapped))
    with pytest.raises(UserError, match="classes in another order") as info:
        evaluate(trained_run / "last.pt", ["clean"], data=str(tmp_path / "swapped.npz"), n=8,
                 out_dir=tmp_path / "out", **QUIET)
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()
    np.savez(tmp_path / "same.npz", images=images, labels=labels, label_names=np.array(names))
    (ok,) = evaluate(trained_run / "last.pt", ["clean"], data=str(tmp_path / "same.npz"), n=8,
                     out_dir=tmp_path / "out", **QUIET)
    assert ok["n"] == 8


def test_flipped_weight_bytes_are_refused(trained_run, tmp_path):
    from energybench.handles.checkpoint import read_checkpoint

    raw = (trained_run / "last.pt").read_bytes()
    weight = torch.load(trained_run / "last.pt", weights_only=True)["state_dict"]
    needle = max(weight.values(), key=lambda t: t.numel()).contiguous().numpy().tobytes()[:64]
    at = raw.find(needle)
    assert at > 0 and raw.find(needle, at + 1) < 0
    corrupt = bytearray(raw)
    corrupt[at + 10] ^= 0x10  # one bit inside the largest weight tensor
    (tmp_path / "flipped.pt").write_bytes(bytes(corrupt))
    torch.load(tmp_path / "flipped.pt", weights_only=True)  # torch itself does not notice
    with pytest.raises(UserError, match="do not match their stored digest"):
        read_checkpoint(tmp_path / "flipped.pt")
    ckpt = torch.load(trained_run / "last.pt", weights_only=True)
    key = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][key] = ckpt["state_dict"][key].clone().fill_(float("nan"))
    from energybench.handles.checkpoint import save_checkpoint

    save_checkpoint(ckpt, tmp_path / "nan.pt")
    with pytest.raises(UserError, match="NaN or infinite"):
        read_checkpoint(tmp_path / "nan.pt")


def test_metrics_run_without_tf32(trained_run, exact_npz, tmp_path, monkeypatch):
    """Whatever TF32 setting the process had, metrics run with IEEE float32 matmuls and
    convolutions, and the setting is restored afterwards."""
    from energybench.metrics.accuracy import CleanAccuracy

    switches = [torch.backends.cuda.matmul, torch.backends.cudnn.conv]
    seen = {}
    original = CleanAccuracy.compute

    def spy(self, ctx):
        seen["inside"] = [s.fp32_precision for s in switches]
        return original(self, ctx)

    monkeypatch.setattr(CleanAccuracy, "compute", spy)
    before = [s.fp32_precision for s in switches]
    for s in switches:
        s.fp32_precision = "tf32"
    try:
        evaluate(trained_run / "last.pt", ["clean"], data=str(exact_npz), n=8, out_dir=tmp_path, **QUIET)
        assert seen["inside"] == ["ieee", "ieee"]
        assert [s.fp32_precision for s in switches] == ["tf32", "tf32"]
    finally:
        for s, value in zip(switches, before):
            s.fp32_precision = value


def test_a_long_evaluation_says_its_plan_and_estimate_first(trained_run, exact_npz, tmp_path, monkeypatch):
    """The pass count is the protocol's arithmetic (PGD-20: 20 steps + the clean and final
    forwards per image; jfs: 2 + 2 per probe); the line comes before any metric runs, only for
    metrics not yet recorded, and the warm-up leaves the RNG and the parameters' .grad alone."""
    from energybench.evaluation import costs
    from energybench.evaluation import runner as evaluation
    from energybench.metrics import METRICS
    from energybench.metrics.robustness import PGDConfig

    pgd = METRICS.get("pgd20")(PGDConfig())
    assert pgd.gradient_passes(100, 10) == pytest.approx(100 * (20 + 2 / 3))
    jfs = METRICS.get("jfs")(METRICS.get("jfs").Params(probes=4))
    assert jfs.gradient_passes(100, 10) == 100 * (2 + 2 * 4)
    monkeypatch.setattr(evaluation, "ANNOUNCE_PASSES", 0)
    monkeypatch.setattr(evaluation, "ANNOUNCE_SECONDS", 0.0)
    lines = []
    evaluate(trained_run / "last.pt", ["clean", "pgd20"], data=str(exact_npz), n=16, out_dir=tmp_path,
             overrides={"steps": 2}, log=lines.append)
    assert lines[0].startswith("plan: clean, pgd20 on 16 images: about 48 image gradient passes, roughly")
    lines.clear()
    evaluate(trained_run / "last.pt", ["clean", "pgd20"], data=str(exact_npz), n=16, out_dir=tmp_path,
             overrides={"steps": 2}, log=lines.append)
    assert not any(line.startswith("plan:") for line in lines)  # both recorded: nothing to announce
    from energybench.handles.checkpoint import load_model

    model = load_model(trained_run / "last.pt").model
    x = torch.rand(4, 3, 32, 32)
    state = torch.get_rng_state()
    assert costs.seconds_per_pass(model, x) > 0
    assert torch.equal(torch.get_rng_state(), state) and all(p.grad is None for p in model.parameters())
