"""torchrun with the gloo backend on CPU, 2 processes, against the single-process result."""

import os
import subprocess
import sys

import pytest
import torch

from energybench.cli.main import main


def torchrun(args, cwd):
    env = {**os.environ, "ENERGYBENCH_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "energybench", *map(str, args)]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return out.returncode, out.stdout + out.stderr


def common(jpeg_tar, *extra):
    sets = ["data.train_subset=640", "optim.batch_size=64", "optim.epochs=2", "model.width=8",
            "model.batch_norm=false", "data.eval_subset=100", "run.dynamics_probe=0", *extra]
    return ["--data", jpeg_tar, "--device", "cpu", *[a for s in sets for a in ("--set", s)]]


def test_two_processes_match_one(tmp_path, jpeg_tar):
    """Without batch norm, 2 ranks x 32 images per step = 1 process x 64: same weights."""
    code, text = torchrun(["train", "normal", *common(jpeg_tar), "--out", tmp_path / "ddp"], tmp_path)
    assert code == 0, text[-3000:]
    main(["train", "normal", *map(str, common(jpeg_tar)), "--out", str(tmp_path / "single")])
    a = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert b["meta"]["world_size"] == 2
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], atol=1e-6, rtol=1e-5)
    logs = [(tmp_path / d / "log.jsonl").read_text().splitlines() for d in ("single", "ddp")]
    assert len(logs[0]) == len(logs[1]) == 2


def test_per_rank_replay_buffers_and_resume(tmp_path, jpeg_tar):
    args = ["train", "jem", *common(jpeg_tar, "recipe.buffer_size=32", "recipe.sgld_steps=2",
                                    "optim.epochs=1"), "--out", tmp_path / "jem"]
    code, text = torchrun(args, tmp_path)
    assert code == 0, text[-3000:]
    ckpt = torch.load(tmp_path / "jem" / "last.pt", weights_only=True)
    buffers = [s["replay_buffer"]["images"] for s in ckpt["recipe_state"]["per_rank"]]
    assert len(buffers) == 2 and buffers[0].shape == (32, 3, 32, 32)
    assert not torch.equal(buffers[0], buffers[1]), "each rank keeps its own chains"
    # Resuming with another number of processes is refused with a one-line reason.
    from energybench.core.errors import UserError
    from energybench.training.recipes import preset_config
    from energybench.training.run import train

    ckpt["progress"]["finished"] = False
    ckpt["config"]["optim"]["epochs"] = 2
    torch.save(ckpt, tmp_path / "jem" / "last.pt")
    with pytest.raises(UserError, match="trained with 2 process.*same number"):
        train(preset_config("jem", "smoke"), tmp_path / "jem", torch.device("cpu"), resume=True)
    # --set on --resume applies (epochs may grow): two more epochs' worth, one epoch done.
    code, text = torchrun(["train", "jem", "--out", tmp_path / "jem", "--device", "cpu", "--resume",
                           "--set", "optim.epochs=2"], tmp_path)
    assert code == 0, text[-3000:]
    assert torch.load(tmp_path / "jem" / "last.pt", weights_only=True)["progress"]["epoch"] == 2
