"""`train`: a recipe's run in its folder, locked against a second process, started or resumed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import torch

from energybench.core.atomic import check_writable_dir, remove_stale_temporaries, write_text_atomic
from energybench.core.distributed import World, barrier
from energybench.core.errors import UserError, option
from energybench.core.locking import FolderLock
from energybench.handles.checkpoint import read_checkpoint
from energybench.training.config import TrainConfig, to_dict
from energybench.training.run_folder import CHECKPOINT_NAME, LOCK_NAME, resume_config, untrained
from energybench.training.trainer import Trainer


def train(cfg: TrainConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
          stop_after_steps: int | None = None, world: World = World(),
          resume_overrides: list[str] | None = None, wait_for_lock: bool = False) -> Path:
    """Train `cfg` into `out_dir` (checkpoint `last.pt`, log `log.jsonl`); returns the checkpoint.

    With resume=True the run continues from `out_dir/last.pt` using the checkpoint's own config,
    with `resume_overrides` (`--set` strings) applied where RESUMABLE_KEYS allows. A run folder is
    locked while it is trained; a second process gets a one-line error. A folder whose checkpoint
    holds no training step yet (a run that failed before its first update) may be started afresh.
    wait_for_lock=True waits for another process training the folder instead (reproduction jobs
    that need the same run), then resumes it, which finds it finished.
    """
    out_dir = Path(out_dir)
    check_writable_dir(out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    created = not out_dir.exists()
    barrier(world)  # every rank has looked at out_dir before rank 0 creates files in it
    lock = FolderLock(out_dir, LOCK_NAME, busy=f"{out_dir} is being trained by another process",
                      wait=wait_for_lock, waiting=f"waiting for another process training {out_dir}") \
        if world.is_main else contextlib.nullcontext()
    try:
        with lock:
            if wait_for_lock:  # whatever another process left is decided on now, under the lock
                barrier(world)
                resume = ckpt_path.exists() and not untrained(ckpt_path)
            if world.is_main:
                remove_stale_temporaries(out_dir)  # left by a writer that was killed
            return _train_locked(cfg, out_dir, ckpt_path, device, resume, stop_after_steps, world,
                                 list(resume_overrides or []))
    except BaseException:
        if created and world.is_main and not ckpt_path.exists():  # leave nothing half-made
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _train_locked(cfg, out_dir: Path, ckpt_path: Path, device, resume: bool, stop_after_steps,
                  world: World, overrides: list[str]) -> Path:
    ckpt, changed = None, {}
    if resume:
        if not ckpt_path.exists():
            raise UserError(f"nothing to resume: {ckpt_path} does not exist; train without {option('resume')}")
        ckpt = read_checkpoint(ckpt_path)
        if ckpt["recipe"] != cfg.recipe:
            raise UserError(f"{ckpt_path} is a {ckpt['recipe']} run, not {cfg.recipe}; "
                            f"resume it with `energybench train {ckpt['recipe']} --resume`")
        cfg, changed = resume_config(ckpt, overrides, ckpt_path)
        if ckpt["progress"].get("finished") and not changed:
            print(f"{ckpt_path} already finished {cfg.optim.epochs} epochs; nothing to do")
            return ckpt_path
    elif ckpt_path.exists():
        if not untrained(ckpt_path):
            raise UserError(
                f"{out_dir} already holds a run ({CHECKPOINT_NAME}); use {option('resume')} to continue it "
                f"or choose another {option('out_dir')}"
            )
        print(f"{out_dir} holds a run that never trained a step; starting it afresh", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, out_dir, device, world)
    if ckpt is not None:
        trainer.restore(ckpt)
        if changed:
            trainer.note_resume_overrides(changed)
    elif world.is_main:
        write_text_atomic(json.dumps(to_dict(trainer.cfg), indent=1), out_dir / "config.json")
    return trainer.run(stop_after_steps=stop_after_steps)
