"""Sharded evaluation under torchrun: each rank's share of a per-image metric is saved as
`<stem>.shard-R-of-W.npz` and merged by the main process into the one record a single process writes.
"""

from __future__ import annotations

import hashlib
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


def _digest(columns: dict[str, np.ndarray], meta: str, key: str) -> str:
    """sha256 over a shard's key, meta and every column (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256(key.encode() + b"\0" + meta.encode())
    for name in sorted(columns):
        array = np.ascontiguousarray(columns[name])
        h.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        h.update(array.view(np.uint8).reshape(-1).data if array.size else b"")
    return h.hexdigest()


def save_shard(ctx: EvalContext, identity: dict, shard: Shard) -> None:
    key = json.dumps({"identity": identity, "rank": ctx.world.rank, "world_size": ctx.world.size},
                     sort_keys=True)
    meta = json.dumps(shard.meta)
    write_npz_atomic(_shard_path(ctx, ctx.world.rank), **shard.columns, __meta__=np.array(meta),
                     __key__=np.array(key), __sha256__=np.array(_digest(shard.columns, meta, key)))


def _load_shard(ctx: EvalContext, identity: dict, rank: int) -> Shard | None:
    """A rank's saved shard for exactly this record, size and rank, intact (its digest over key,
    meta and columns) and with each image once; None if absent, not its, or edited (then it is
    computed again)."""
    key = json.dumps({"identity": json.loads(json.dumps(identity)), "rank": rank,
                      "world_size": ctx.world.size}, sort_keys=True)
    try:
        with np.load(_shard_path(ctx, rank), allow_pickle=False) as z:
            if str(z["__key__"]) != key:
                return None
            columns = {k: z[k] for k in z.files if not k.startswith("__")}
            meta = str(z["__meta__"])
            if str(z["__sha256__"]) != _digest(columns, meta, key):
                return None
            index = columns.get("index")
            if index is not None and len(np.unique(index)) != len(index):
                return None
            return Shard(columns, json.loads(meta))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def merged_shards(ctx: EvalContext, identity: dict) -> Shard:
    """Every rank's shard (rank 0, after all saved theirs) merged in image order. A shard that
    is missing or was edited since it was saved, or images that appear in two shards, are one
    line: nothing is merged from state that does not add up."""
    shards = [_load_shard(ctx, identity, rank) for rank in range(ctx.world.size)]
    bad = [rank for rank, shard in enumerate(shards) if shard is None]
    if bad:
        raise UserError(f"the saved share of rank {bad[0]} ({_shard_path(ctx, bad[0]).name}) is missing or was "
                        f"changed after it was written; run the same command again to compute it anew")
    merged = Shard.merge(shards)
    index = merged.columns.get("index")
    if index is not None and len(np.unique(index)) != len(index):
        raise UserError(f"the saved shares of {ctx.stem} overlap (an image in two of them); delete "
                        f"{ctx.stem}.shard-*.npz and run the same command again")
    return merged


def remove_shards(out_dir: Path, stem: str) -> None:
    for f in Path(out_dir).glob(f"{stem}.shard-*-of-*.npz"):
        f.unlink(missing_ok=True)


def remove_saved_state(out_dir: Path, stem: str) -> None:
    """--force: a metric's saved progress (AutoAttack's state and its chunks' images, shards) is
    discarded first."""
    remove_shards(out_dir, stem)
    for pattern in (f"{stem}.state*.json", f"{stem}.state*.adversarial.npz"):
        for f in Path(out_dir).glob(pattern):
            f.unlink(missing_ok=True)
