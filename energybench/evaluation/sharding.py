"""Sharded evaluation under torchrun: each rank's share of a per-image metric is saved as
`<stem>.shard-R-of-W.npz` and merged by the main process into the one record a single process writes.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from energybench.core.atomic import write_npz_atomic
from energybench.core.distributed import agree
from energybench.core.errors import UserError
from energybench.metrics import EvalContext
from energybench.metrics.base import Shard


def _finish_on_main(fn, world):
    """Rank 0's last step: on failure the other ranks are told before the error propagates."""
    try:
        return fn()
    except UserError as exc:
        agree(world, exc.template)
        raise


def _shard_path(ctx: EvalContext, rank: int) -> Path:
    return Path(ctx.out_dir) / f"{ctx.stem}.shard-{rank}-of-{ctx.world.size}.npz"


def save_shard(ctx: EvalContext, identity: dict, shard: Shard) -> None:
    key = json.dumps({"identity": identity, "rank": ctx.world.rank, "world_size": ctx.world.size},
                     sort_keys=True)
    write_npz_atomic(_shard_path(ctx, ctx.world.rank), **shard.columns,
                     __meta__=np.array(json.dumps(shard.meta)), __key__=np.array(key))


def _load_shard(ctx: EvalContext, identity: dict, rank: int) -> Shard | None:
    """A rank's saved shard for exactly this record, size and rank; None if absent or not its."""
    key = json.dumps({"identity": json.loads(json.dumps(identity)), "rank": rank,
                      "world_size": ctx.world.size}, sort_keys=True)
    try:
        with np.load(_shard_path(ctx, rank), allow_pickle=False) as z:
            if str(z["__key__"]) != key:
                return None
            columns = {k: z[k] for k in z.files if not k.startswith("__")}
            return Shard(columns, json.loads(str(z["__meta__"])))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def remove_shards(out_dir: Path, stem: str) -> None:
    for f in Path(out_dir).glob(f"{stem}.shard-*-of-*.npz"):
        f.unlink(missing_ok=True)


def remove_saved_state(out_dir: Path, stem: str) -> None:
    """--force: a metric's saved progress (AutoAttack's state, shards) is discarded first."""
    remove_shards(out_dir, stem)
    for f in Path(out_dir).glob(f"{stem}.state*.json"):
        f.unlink(missing_ok=True)
