"""A run folder: its file names (log, events, last.pt, best.pt, lock) and what a resumed run may
change of the checkpoint's config.
"""

from __future__ import annotations

from pathlib import Path

from energybench.core.errors import UserError, option
from energybench.handles.checkpoint import read_checkpoint
from energybench.training.config import (
    TrainConfig, apply_overrides, describe, to_dict, train_config_from_dict,
)
from energybench.training.recipes import get_recipe

LOG_NAME = "log.jsonl"


EVENTS_NAME = "events.jsonl"


CHECKPOINT_NAME = "last.pt"


BEST_NAME = "best.pt"


LOCK_NAME = ".lock"


# What `--resume` may change (bookkeeping, budget, safety); everything else changes what the run is.
RESUMABLE_KEYS = ("optim.lr", "optim.epochs", "data.eval_subset", "run.checkpoint_every_steps",
                  "run.amp", "run.channels_last", "run.deterministic", "run.guard.")


def resume_config(ckpt: dict, overrides: list[str], path: Path) -> tuple[TrainConfig, dict]:
    """The checkpoint's config with `--set` overrides applied, and what they changed; an override
    of anything outside RESUMABLE_KEYS is refused (it would make the run another run)."""
    cfg = train_config_from_dict(ckpt["config"], get_recipe(ckpt["recipe"]).Params)
    if not overrides:
        return cfg, {}
    new = apply_overrides(cfg, overrides)
    before, after = dict(describe(cfg)), dict(describe(new))
    changed = {k: after[k] for k in after if after[k] != before[k]}
    refused = [k for k in changed if not k.startswith(RESUMABLE_KEYS)]
    if refused:
        raise UserError(
            f"{option('resume')} cannot change {', '.join(refused)} (it would make {path} another run); it "
            f"can change {', '.join(k.rstrip('.') + ('.*' if k.endswith('.') else '') for k in RESUMABLE_KEYS)}"
            f"; start a new run with {option('out_dir')} for the rest")
    return new, {k: to_dict(v) for k, v in changed.items()}


def untrained(ckpt_path: Path) -> bool:
    """Whether the run's checkpoint holds no training step yet (it may then be replaced)."""
    try:
        prog = read_checkpoint(ckpt_path)["progress"]
    except UserError:
        return False
    return prog.get("global_step", 1) == 0 and prog.get("epoch", 1) == 0
