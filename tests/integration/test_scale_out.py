"""Scale-out with torchrun (gloo, 2 processes on CPU): sharded evaluation and sampling give the
one-process records and samples, a killed rank resumes to the uninterrupted result, the
reproduction runs as a plan of independent jobs, and two torchrun agents rendezvous as two nodes.

Both sides run with one thread per process, so their floating-point order is the same."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "ENERGYBENCH_PROGRESS": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run(args, cwd, nproc: int | None = 2, timeout=900, **popen):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
                if nproc else [sys.executable])
    cmd = [*launcher, "-m", "energybench", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, **popen)


def _records(folder: Path) -> dict[str, dict]:
    out = {}
    for f in sorted(folder.glob("*.json")):
        r = json.loads(f.read_text())
        if "record_version" in r:
            out[r["metric"]] = r | {"file": str(f)}
    return out


def _same_record(a: dict, b: dict) -> None:
    assert Path(a["file"]).name == Path(b["file"]).name  # the same identity, so the same key
    assert a["value"] == b["value"] and a["stderr"] == b["stderr"] and a["n"] == b["n"], a["metric"]
    bookkeeping = ("state_file", "chunks_resumed")  # where and how the work was done, not its result
    extra_a = {k: v for k, v in a["extra"].items() if k not in bookkeeping}
    extra_b = {k: v for k, v in b["extra"].items() if k not in bookkeeping}
    assert extra_a == extra_b, a["metric"]
    assert a.get("diagnostics") == b.get("diagnostics"), a["metric"]
    for suffix in ("outcomes.npz", "npz"):
        fa, fb = Path(a["file"]).with_suffix("." + suffix), Path(b["file"]).with_suffix("." + suffix)
        fa, fb = fa.with_name(Path(a["file"]).stem + "." + suffix), fb.with_name(Path(b["file"]).stem + "." + suffix)
        if fa.exists():
            with np.load(fa) as za, np.load(fb) as zb:
                assert za.files == zb.files
                for k in za.files:
                    assert np.array_equal(za[k], zb[k]), (a["metric"], suffix, k)


EVAL = ["eval", "--model", REPO / "checkpoints" / "jeat-smoke.pt", "--images", 48, "--batch-size", 16,
        "--device", "cpu", "--metric", "clean", "--metric", "pgd20", "--metric", "jfs", "--metric", "autoattack",
        "--metric", "memorization", "--metric", "energy-hist", "--param", "max_images=48",
        "--param", "chunk_size=16", "--param", "n_per_class=2", "--param", "probes=2"]


def test_sharded_evaluation_equals_one_process(tmp_path, exact_npz, jpeg_tar):
    args = [*EVAL, "--data", exact_npz, "--train-data", jpeg_tar]
    one = _run([*args, "--out", tmp_path / "one"], tmp_path, nproc=None)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run([*args, "--out", tmp_path / "two"], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert set(a) == set(b) == {"clean", "pgd20", "jfs", "autoattack", "memorization", "energy-hist"}
    for metric in a:
        _same_record(a[metric], b[metric])
        assert a[metric]["world_size"] == 1 and b[metric]["world_size"] == 2
        assert a[metric]["identity"] == b[metric]["identity"]
    assert not list((tmp_path / "two").glob("*.shard-*"))  # merged shards are removed
    assert sorted(p.name for p in (tmp_path / "two").glob("autoattack-*.state*")) == [
        Path(b["autoattack"]["file"]).stem + f".state-{r}-of-2.json" for r in (0, 1)]
    assert two.stdout.count("| pgd20 |") == 1  # one summary, from rank 0


def test_sharded_bpda_on_a_purified_model_equals_one_process(tmp_path, exact_npz):
    """A randomized (purified) model: its noise is seeded per batch, so 2 ranks give 1 process's records."""
    args = ["eval", "--model", REPO / "checkpoints" / "jem-smoke.pt", "--images", 32, "--batch-size", 8,
            "--device", "cpu", "--data", exact_npz, "--purify", 2, "--param", "purify_chains=3",
            "--metric", "clean", "--metric", "bpda-eot", "--param", "steps=3", "--param", "eot=2"]
    one = _run([*args, "--out", tmp_path / "one"], tmp_path, nproc=None)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run([*args, "--out", tmp_path / "two"], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert set(a) == set(b) == {"clean", "bpda-eot"}
    for metric in a:
        _same_record(a[metric], b[metric])
        assert b[metric]["world_size"] == 2 and b[metric]["identity"]["purification"]["steps"] == 2


def _pid_of_rank(rank: int, launcher: int) -> int | None:
    """The worker process of `rank` that the torchrun process `launcher` started."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


def test_a_killed_rank_resumes_to_the_uninterrupted_result(tmp_path, exact_npz):
    args = ["eval", "--model", REPO / "checkpoints" / "pgd-at-smoke.pt", "--data", exact_npz, "--images", 64,
            "--batch-size", 16, "--device", "cpu", "--metric", "autoattack", "--metric", "pgd20",
            "--param", "max_images=64", "--param", "chunk_size=16"]
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "energybench", *map(str, args), "--out", str(out)]
    job = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    deadline = time.time() + 600
    killed = False
    while time.time() < deadline and job.poll() is None:
        states = list(out.glob("autoattack-*.state-1-of-2.json"))
        if states and len(json.loads(states[0].read_text()).get("chunks", {})) >= 1:
            pid = _pid_of_rank(1, job.pid)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
        time.sleep(0.1)
    _, err = job.communicate(timeout=600)
    assert killed and job.returncode != 0
    stopped = [line for line in err.splitlines() if line.startswith("energybench: rank 0 stopped")]
    assert len(stopped) == 1 and "run the same command again to resume" in stopped[0], err[-2000:]
    assert not list(out.glob("autoattack-*.json")) or not _records(out).get("autoattack")
    again = _run([*args, "--out", out], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    fresh = _run([*args, "--out", tmp_path / "fresh"], tmp_path)
    resumed, uninterrupted = _records(out), _records(tmp_path / "fresh")
    for metric in ("autoattack", "pgd20"):
        _same_record(resumed[metric], uninterrupted[metric])
    assert resumed["autoattack"]["extra"]["chunks_resumed"] >= 1 == 1 + uninterrupted["autoattack"]["extra"]["chunks_resumed"]
    assert not list(out.glob("*.shard-*")) and not list(out.glob(".*.tmp"))


def test_sharded_sampling_equals_one_process(tmp_path, jpeg_tar):
    args = ["sample", "--model", REPO / "checkpoints" / "jem-smoke.pt", "--n-per-class", 3, "--steps", 5,
            "--device", "cpu", "--train-data", jpeg_tar]
    one = _run([*args, "--out", tmp_path / "one"], tmp_path, nproc=None)
    two = _run([*args, "--out", tmp_path / "two"], tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    with np.load(tmp_path / "one" / "samples.npz") as a, np.load(tmp_path / "two" / "samples.npz") as b:
        for key in ("images", "images_float", "labels", "index"):
            assert np.array_equal(a[key], b[key]), key
    assert (tmp_path / "two" / "grid.png").exists() and not list((tmp_path / "two").glob("*.shard-*"))


def test_the_reproduction_plan_runs_in_any_order(tmp_path, jpeg_tar, monkeypatch):
    from energybench.workflows import jobs as job_plans
    from energybench.workflows import plan as planning
    from energybench.workflows import reproduce as rp

    tiny = planning.ReproductionPreset("tiny", "smoke", ("data.train_subset=300", "optim.epochs=1", "data.eval_subset=0",
                                                   "run.deterministic=true", "run.dynamics_probe=0"),
                                 {"default": 40}, {"attack-sanity": {"max_images": 16, "square_queries": 20}},
                                 summary="test")
    monkeypatch.setitem(planning.PRESETS, "tiny", tiny)
    data = {"cifar10": str(jpeg_tar)}
    cpu = torch.device("cpu")
    straight = rp.reproduce("tiny", tmp_path / "straight", tmp_path / "runs-a", data, cpu, only="normal",
                            log=lambda m: None)
    command = ["energybench", "reproduce", "--preset", "tiny"]
    path = job_plans.write_plan("tiny", tmp_path / "planned",
                                lambda job: command + ([] if job is None else ["--job", job]), only="normal")
    plan = json.loads(path.read_text())
    jobs = [j["id"] for j in plan["jobs"]]
    assert jobs[-1] == "tables" and {"train/normal", "eval/normal/clean", "eval/normal/pgd20"} <= set(jobs)
    assert all("--job" in j["command"] for j in plan["jobs"][:-1])
    assert "submit --job-name=eb-train --array=" in (path.parent / "slurm.sh").read_text()
    order = jobs[:-1]
    random.Random(3).shuffle(order)
    assert order.index("train/normal") > 0  # some evaluation runs before its training job
    for job in order + ["tables"]:
        job_plans.run_job(job, "tiny", tmp_path / "planned", tmp_path / "runs-b", data, cpu, only="normal",
                   log=lambda m: None)
    for table in ("jeat-t1", "jeat-t2", "jeat-t3"):
        assert (tmp_path / "planned" / "tables" / f"{table}.md").read_text() == \
            (tmp_path / "straight" / "tables" / f"{table}.md").read_text(), table
    assert straight.exists() and (tmp_path / "planned" / "README.md").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(args, cwd):
    port = _free_port()
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                                "--node_rank", str(rank), "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
                                "--master_port", str(port), "-m", "energybench", *map(str, args)],
                               cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for rank in (0, 1)]
    results = [a.communicate(timeout=900) for a in agents]
    return [a.returncode for a in agents], results


def test_two_nodes_rendezvous_for_training_and_evaluation(tmp_path, jpeg_tar, exact_npz):
    sets = ["data.train_subset=640", "optim.batch_size=64", "optim.epochs=1", "model.width=8",
            "model.batch_norm=false", "data.eval_subset=0", "run.dynamics_probe=0"]
    train = ["train", "normal", "--data", jpeg_tar, "--device", "cpu", "--out", tmp_path / "run",
             *[a for s in sets for a in ("--set", s)]]
    codes, results = _two_nodes(train, tmp_path)
    assert codes == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    assert (tmp_path / "run" / "last.pt").exists()
    evaluation = ["eval", "--model", tmp_path / "run" / "last.pt", "--data", exact_npz, "--images", 64,
                  "--batch-size", 16, "--device", "cpu", "--metric", "clean", "--metric", "pgd20"]
    codes, results = _two_nodes([*evaluation, "--out", tmp_path / "nodes"], tmp_path)
    assert codes == [0, 0], results[0][1][-2000:]
    one = _run([*evaluation, "--out", tmp_path / "one"], tmp_path, nproc=None)
    assert one.returncode == 0
    a, b = _records(tmp_path / "one"), _records(tmp_path / "nodes")
    for metric in ("clean", "pgd20"):
        _same_record(a[metric], b[metric])
        assert b[metric]["world_size"] == 2
