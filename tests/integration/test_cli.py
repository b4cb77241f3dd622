import json
from pathlib import Path

import numpy as np
import pytest


def _records(folder, metric):
    return {json.loads(p.read_text())["params"].get("eps"): json.loads(p.read_text())
            for p in sorted(folder.glob(f"{metric}-*.json"))}


def test_train_eval_json(tmp_path, run_cli, jpeg_tar):
    run = tmp_path / "run"
    code, out, err = run_cli("train", "normal", "--preset", "smoke", "--data", jpeg_tar,
                             "--out", run, "--set", "data.train_subset=1000",
                             "--set", "optim.epochs=1", "--device", "cpu")
    assert code == 0, err
    assert (run / "last.pt").exists() and (run / "log.jsonl").exists() and (run / "config.json").exists()
    code, out, err = run_cli("eval", "--ckpt", run / "last.pt", "--n", 64, "--suite", "smoke",
                             "--batch-size", 32, "--device", "cpu")
    assert code == 0, err
    assert "| clean |" in out and "| pgd20 | L-inf eps 8/255, step 2/255 |" in out
    assert "CIFAR-10 (JPEG q75 copy)" in out
    records = run / "eval-last"
    (clean,) = _records(records, "clean").values()
    (pgd,) = _records(records, "pgd20").values()
    assert clean["n"] == 64 and 0 <= clean["value"] <= 1 and isinstance(clean["stderr"], float)
    assert pgd["params"] == {"eps": 8 / 255, "step_size": 2 / 255, "steps": 20, "restarts": 1,
                             "objective": "ce", "random_start": True, "eot": 1}
    assert set(pgd["diagnostics"]) == {"randomized_forward", "probability_output", "unavailable_gradients",
                                       "incomplete_optimisation", "gradient_direction"}
    assert pgd["value"] <= clean["value"]
    for key in ("seed", "device", "dtype", "versions", "wall_seconds", "model", "data", "identity"):
        assert key in pgd
    assert pgd["model"]["sha256"] and pgd["data"]["label"] == "CIFAR-10 (JPEG q75 copy)"
    assert (records / "summary.md").exists()
    # A second run reuses the records; --force recomputes.
    code, out, err = run_cli("eval", "--ckpt", run / "last.pt", "--n", 64, "--batch-size", 32,
                             "--device", "cpu")
    assert err.count("already recorded") == 2
    code, out, err = run_cli("eval", "--ckpt", run / "last.pt", "--n", 64, "--metric", "clean",
                             "--batch-size", 32, "--force", "--device", "cpu")
    assert code == 0 and "already recorded" not in err


def test_records_are_keyed_by_protocol(tmp_path, run_cli, trained_run):
    """An eps sweep into one folder keeps every record; the step follows eps unless given; a
    rerun of any protocol is skipped; the summary shows eps and step."""
    out = tmp_path / "sweep"
    base = ["eval", "--ckpt", trained_run / "last.pt", "--n", 32, "--metric", "pgd20", "--out", out,
            "--device", "cpu"]
    for eps in ("2/255", "8/255"):
        code, stdout, err = run_cli(*base, "--eps", eps)
        assert code == 0, err
    code, stdout, err = run_cli(*base, "--eps", "2/255", "--param", "step_size=1/255")
    assert code == 0 and "| pgd20 | L-inf eps 2/255, step 1/255 |" in stdout
    by_step = {(round(r["params"]["eps"] * 255, 6), round(r["params"]["step_size"] * 255, 6))
               for r in map(lambda p: json.loads(p.read_text()), out.glob("pgd20-*.json"))}
    assert by_step == {(2, 0.5), (8, 2), (2, 1)}
    # summary.md lists every record of the folder, not only the last command's
    summary = (out / "summary.md").read_text()
    for protocol in ("L-inf eps 2/255, step 0.5/255", "L-inf eps 8/255, step 2/255", "L-inf eps 2/255, step 1/255"):
        assert f"| pgd20 | {protocol} |" in summary, summary
    assert "All 3 records in this folder" in summary
    code, stdout, err = run_cli(*base, "--eps", "2/255")
    assert "already recorded" in err and "| pgd20 | L-inf eps 2/255, step 0.5/255 |" in stdout
    from energybench.records.collection import load_records

    frame = load_records([out])
    pairs = sorted(zip((frame["eps"] * 255).round(6), (frame["step_size"] * 255).round(6)))
    assert pairs == [(2, 0.5), (2, 1), (8, 2)]
    assert list(frame["norm"]) == ["Linf"] * 3  # explicit, though L-inf records leave it out of params


def test_list_shows_registries(run_cli):
    code, out, _ = run_cli("list")
    assert code == 0
    for word in ("recipes:", "normal", "models:", "wrn-28-10", "preact-resnet18", "tiny-cnn",
                 "metrics:", "pgd20", "suites:", "smoke"):
        assert word in out


@pytest.mark.parametrize("args, message", [
    (["train", "nope"], "'nope' is not one of 'eb-jdat'"),
    (["train", "normal", "--set", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
    (["train", "normal", "--data", "/no/such/folder", "--out", "{tmp}/r"], "does not exist"),
    (["train", "normal", "--preset", "giant"], "'giant' is not one of 'paper', 'smoke'"),
    (["eval", "--ckpt", "{tmp}/none.pt"], "checkpoint not found"),
    (["eval", "--ckpt", "{ckpt}", "--metric", "fid9"], "'fid9' is not one of 'attack-sanity', 'autoattack'"),
    (["eval", "--ckpt", "{ckpt}", "--suite", "everything"], "'everything' is not one of 'all'"),
    (["eval", "--ckpt", "{ckpt}", "--eps", "8"], "out of range.*8/255"),
    (["eval", "--ckpt", "{ckpt}", "--n", "0"], "--n.*0 is not in the range x>=1"),
    (["eval", "--ckpt", "{ckpt}", "--device", "tpu"], "unknown device"),
    (["eval", "--ckpt", "{garbage}"], "corrupt or truncated"),
    (["eval", "--ckpt", "{ckpt}", "--bogus"], "No such option"),
    (["data", "info", "/no/such/data"], "does not exist"),
    (["eval", "--ckpt", "{ckpt}", "--param", "probes=4"], "--param probes: no selected metric takes it"),
    (["eval", "--ckpt", "{ckpt}", "--metric", "jfs", "--param", "probes=many"], "must be an integer"),
])
def test_bad_input_gives_one_line_error(run_cli, tmp_path, trained_run, args, message):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"PK\x03\x04 truncated")
    fill = {"tmp": tmp_path, "ckpt": trained_run / "last.pt", "garbage": garbage}
    code, out, err = run_cli(*[a.format(**fill) for a in args])
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("energybench: error:"), err
    assert __import__("re").search(message, lines[0]), lines[0]


def test_data_commands(run_cli, tmp_path, monkeypatch, exact_npz, jpeg_tar):
    monkeypatch.setenv("ENERGYBENCH_HOME", str(tmp_path / "home"))
    code, out, err = run_cli("data", "verify", jpeg_tar, "--reference", exact_npz)
    assert code == 0 and "known: CIFAR-10 (JPEG q75 copy)" in out and "labels match" in out
    code, out, err = run_cli("data", "import", exact_npz)
    assert code == 0 and "cifar10.npz" in out
    code, out, err = run_cli("data", "info")
    assert "test: 1017 images" in out and "train: none" in out


def test_norm_is_case_insensitive_and_names_the_same_record(tmp_path, run_cli):
    """`--norm linf` is `--norm Linf`, which is the default: one record, reused."""
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, images=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), labels=np.arange(8) % 10)
    checkpoint = Path(__file__).resolve().parents[2] / "checkpoints" / "jeat-smoke.pt"
    base = ["eval", "--ckpt", checkpoint, "--data", data, "--metric", "pgd20",
            "--param", "steps=2", "--device", "cpu", "--out", tmp_path / "out"]
    code, out, err = run_cli(*base, "--norm", "linf")
    assert code == 0, err
    code, out, err = run_cli(*base)
    assert code == 0 and "already recorded" in err, err
    code, out, err = run_cli(*base, "--norm", "l2")
    assert code == 0 and len(list((tmp_path / "out").glob("pgd20-*.json"))) == 2, err
