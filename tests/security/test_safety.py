"""Safety of what energybench reads and writes: exported programs never unpickle code, run folders
and the data cache are locked against a second writer, temporary files never outlive an error,
written files have ordinary permissions, and resume applies only the overrides that keep a run
the same run."""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


class _Payload:
    """Pickles to a call that creates `marker` when unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _exported(tmp_path: Path) -> Path:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 10))
    path = tmp_path / "plain.pt2"
    torch.export.save(torch.export.export(model.eval(), (torch.rand(2, 3, 32, 32),)), str(path))
    return path


def _crafted(plain: Path, out: Path, marker: Path, where: str) -> Path:
    """A copy of `plain` whose first weight (where='weights') or sample inputs ('sample_inputs')
    is replaced by a pickle that would create `marker`."""
    payload = io.BytesIO()
    torch.save(_Payload(marker), payload)
    with zipfile.ZipFile(plain) as zin:
        items = [(info, zin.read(info.filename)) for info in zin.infolist()]
    target = None
    if where == "weights":
        for i, (info, data) in enumerate(items):
            if info.filename.endswith("_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"]))
                config["config"][first]["use_pickle"] = True
                target = "data/weights/" + config["config"][first]["path_name"]
                items[i] = (info, json.dumps(config).encode())
    with zipfile.ZipFile(out, "w") as zout:
        for info, data in items:
            if (target and info.filename.endswith(target)) or (where == "sample_inputs" and "sample_inputs" in info.filename):
                data = payload.getvalue()
            zout.writestr(info, data)
    return out


@pytest.mark.parametrize("where", ["weights", "sample_inputs"])
@pytest.mark.parametrize("command", ["eval", "sample"])
def test_crafted_pt2_never_runs_code(tmp_path, run_cli, exact_npz, where, command):
    marker = tmp_path / "pwned"
    evil = _crafted(_exported(tmp_path), tmp_path / "evil.pt2", marker, where)
    assert not marker.exists()
    args = ["--ckpt", evil, "--device", "cpu", "--out", tmp_path / "out"]
    if command == "eval":
        args += ["--data", exact_npz, "--n", 4]
    code, out, err = run_cli(command, *args)
    assert not marker.exists(), "unpickling the archive ran code"
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "refusing" in lines[0]
    assert ("stored pickled" if where == "weights" else "sample inputs") in lines[0]
    assert not (tmp_path / "out").exists()


def test_plain_torch_export_load_would_run_the_crafted_code(tmp_path):
    """The reference: torch's own loader executes both crafted archives (why we inspect first)."""
    plain = _exported(tmp_path)
    for where in ("weights", "sample_inputs"):
        marker = tmp_path / f"ran-{where}"
        evil = _crafted(plain, tmp_path / f"evil-{where}.pt2", marker, where)
        try:
            torch.export.load(str(evil))
        except Exception:  # noqa: BLE001  torch fails after unpickling; the code has run by then
            pass
        assert marker.exists()


def _cli(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "energybench", *map(str, args)], cwd=REPO,
                            env=dict(os.environ, ENERGYBENCH_PROGRESS="0", **(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_second_training_into_a_locked_folder_gets_one_line(tmp_path, run_cli, jpeg_tar):
    run = tmp_path / "run"
    common = ["--preset", "smoke", "--data", jpeg_tar, "--out", run, "--device", "cpu",
              "--set", "data.train_subset=2000", "--set", "data.eval_subset=0"]
    first = _cli("train", "normal", *common, "--set", "optim.epochs=3")
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / ".lock").exists() and (run / ".lock").read_text().strip()):
        time.sleep(0.05)
    code, out, err = run_cli("train", "normal", *common, "--resume")
    assert code == 2 and "being trained by another process" in err and len(err.strip().splitlines()) == 1
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    from energybench.handles.checkpoint import read_checkpoint

    assert read_checkpoint(run / "last.pt")["progress"]["finished"]


_DECODE_CHILD = """
import sys, numpy as np
from energybench.data import load_split
split = load_split(sys.argv[1], "train")
print(int(split.images.sum()), len(split))
"""


def test_two_processes_fill_one_fresh_data_cache(tmp_path, jpeg_tar):
    home = tmp_path / "home"
    children = [subprocess.Popen([sys.executable, "-c", _DECODE_CHILD, str(jpeg_tar)], cwd=REPO,
                                 env=dict(os.environ, ENERGYBENCH_HOME=str(home), ENERGYBENCH_PROGRESS="0"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    results = [c.communicate(timeout=300) for c in children]
    assert all(c.returncode == 0 for c in children), [r[1] for r in results]
    assert results[0][0] == results[1][0] and results[0][0].split()[1] == "50000"
    entries = [p for p in (home / "cache").iterdir() if p.is_dir()]
    assert len(entries) == 1 and not list(entries[0].glob(".*.tmp"))


def _limited_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_failed_writes_leave_no_temporary_or_partial_files(tmp_path, jpeg_tar, trained_run):
    """Writes that fail midway (the file-size limit stands in for a full disk): one line, exit 2,
    neither the target nor a temporary file left behind."""
    run = tmp_path / "run"
    train = _cli("train", "normal", "--preset", "smoke", "--data", jpeg_tar, "--out", run, "--device", "cpu",
                 "--set", "data.train_subset=1000", "--set", "optim.epochs=1",
                 preexec_fn=_limited_file_size(50_000))
    _, err = train.communicate(timeout=300)
    assert train.returncode == 2 and len(err.strip().splitlines()) == 1 and "too large" in err.lower(), err
    assert not run.exists()
    out = tmp_path / "tables" / "t2.md"
    report = _cli("report", "--table", "all", "--out", out, preexec_fn=_limited_file_size(2_000))
    _, err = report.communicate(timeout=300)
    assert report.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(out.parent.glob(".*"))


def test_stale_temporaries_are_removed_on_resume(tmp_path, run_cli, jpeg_tar):
    run = tmp_path / "run"
    args = ["train", "normal", "--preset", "smoke", "--data", jpeg_tar, "--out", run, "--device", "cpu",
            "--set", "data.train_subset=1000", "--set", "optim.epochs=1", "--set", "data.eval_subset=0"]
    assert run_cli(*args)[0] == 0
    orphan = run / ".last.pt.k1ll3d.tmp"
    orphan.write_bytes(b"half a checkpoint")
    code, out, err = run_cli(*args[:-6], "--resume")
    assert code == 0, err
    assert not orphan.exists()


def test_written_files_have_ordinary_permissions(trained_run, exact_npz, tmp_path):
    from energybench.evaluation.runner import evaluate

    (record,) = evaluate(trained_run / "last.pt", ["clean"], data=str(exact_npz), n=4,
                         out_dir=tmp_path, log=lambda m: None)
    mask = os.umask(0)
    os.umask(mask)
    expected = 0o666 & ~mask
    assert (Path(record["file"]).stat().st_mode & 0o777) == expected
    assert ((trained_run / "last.pt").stat().st_mode & 0o777) == expected


def test_resume_applies_allowed_overrides_and_refuses_the_rest(tmp_path, run_cli, jpeg_tar):
    run = tmp_path / "run"
    base = ["train", "normal", "--data", jpeg_tar, "--out", run, "--device", "cpu"]
    assert run_cli(*base, "--set", "data.train_subset=1000", "--set", "optim.epochs=1",
                   "--set", "data.eval_subset=0")[0] == 0
    code, out, err = run_cli(*base, "--resume", "--set", "model.width=8")
    assert code == 2 and "--resume cannot change model.kwargs" in err and "optim.lr" in err
    code, out, err = run_cli(*base, "--resume", "--set", "optim.epochs=2", "--set", "optim.lr=0.01")
    assert code == 0, err
    from energybench.handles.checkpoint import read_checkpoint

    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["config"]["optim"]["epochs"] == 2 and ckpt["config"]["optim"]["lr"] == 0.01
    assert ckpt["progress"]["epoch"] == 2
    assert ckpt["progress"]["resume_overrides"][0]["changed"] == {"optim.epochs": 2, "optim.lr": 0.01}
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "resumed with overrides"


def test_a_run_that_never_trained_may_start_afresh(tmp_path, run_cli, jpeg_tar):
    """A run killed or failed after its first (step-0) checkpoint neither blocks a fresh start
    nor needs --resume."""
    from dataclasses import replace

    from energybench.training.config import apply_overrides
    from energybench.training.recipes import preset_config
    from energybench.training.run import train

    cfg = preset_config("normal", "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(jpeg_tar)))
    cfg = apply_overrides(cfg, ["data.train_subset=1000", "optim.epochs=1", "data.eval_subset=0"])
    run = tmp_path / "run"
    train(cfg, run, torch.device("cpu"), stop_after_steps=0)  # stops after the step-0 checkpoint
    assert (run / "last.pt").exists()
    code, out, err = run_cli("train", "normal", "--data", jpeg_tar, "--out", run, "--device", "cpu",
                             "--set", "data.train_subset=1000", "--set", "optim.epochs=1")
    assert code == 0 and "never trained a step" in out, err


def test_paths_that_are_not_utf8(tmp_path, run_cli, trained_run, exact_npz):
    """A folder name with bytes that are not UTF-8 is an ordinary path here: eval writes into it;
    a missing one gives one line."""
    out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9-\xff"))
    code, stdout, err = run_cli("eval", "--ckpt", trained_run / "last.pt", "--data", exact_npz, "--n", 8,
                                "--metric", "clean", "--out", out, "--device", "cpu")
    assert code == 0, err
    assert len(list(out.glob("clean-*.json"))) == 1 and (out / "summary.md").exists()
    code, stdout, err = run_cli("data", "info", out / "missing")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err
