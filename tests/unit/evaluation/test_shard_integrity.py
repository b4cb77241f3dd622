"""Shards a torchrun evaluation leaves behind are used only when they are exactly what their rank
wrote for this record: an edited, duplicated or foreign shard is computed again, and rank 0
merges nothing that does not add up. (The full torchrun path: tests/integration/test_scale_out.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from energybench.core.distributed import World
from energybench.core.errors import UserError
from energybench.evaluation.sharding import _digest, _load_shard, merged_shards, save_shard
from energybench.metrics.base import Shard

pytestmark = pytest.mark.synthetic

IDENTITY = {"metric": "clean", "n": 6, "model_sha256": "ab" * 32}


def _ctx(tmp_path, rank):
    return SimpleNamespace(out_dir=tmp_path, stem="clean-0123456789ab", world=World(rank, 2, 0))


def _write_both(tmp_path):
    for rank, index in ((0, [0, 1, 4, 5]), (1, [2, 3])):
        columns = {"index": np.array(index), "clean_correct": np.array([True, False] * (len(index) // 2))}
        save_shard(_ctx(tmp_path, rank), IDENTITY, Shard(columns, [{"rank": rank}]))


def _rewrite(path, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(path, **{**arrays, **changes})


def test_intact_shards_merge_in_image_order(tmp_path):
    _write_both(tmp_path)
    merged = merged_shards(_ctx(tmp_path, 0), IDENTITY)
    assert merged.columns["index"].tolist() == [0, 1, 2, 3, 4, 5]


def test_an_edited_value_is_not_used(tmp_path):
    _write_both(tmp_path)
    path = tmp_path / "clean-0123456789ab.shard-1-of-2.npz"
    _rewrite(path, clean_correct=np.array([True, True]))
    assert _load_shard(_ctx(tmp_path, 1), IDENTITY, 1) is None  # the rank computes it again
    with pytest.raises(UserError, match="rank 1 .* was changed after it was written"):
        merged_shards(_ctx(tmp_path, 0), IDENTITY)


def test_duplicated_rows_are_not_used_even_with_a_recomputed_digest(tmp_path):
    _write_both(tmp_path)
    path = tmp_path / "clean-0123456789ab.shard-1-of-2.npz"
    with np.load(path) as z:
        key, meta = str(z["__key__"]), str(z["__meta__"])
    columns = {"index": np.array([2, 3, 2, 3]), "clean_correct": np.array([True, False, True, False])}
    _rewrite(path, **columns, __sha256__=np.array(_digest(columns, meta, key)))
    assert _load_shard(_ctx(tmp_path, 1), IDENTITY, 1) is None


def test_overlapping_shards_are_one_line(tmp_path):
    _write_both(tmp_path)
    path = tmp_path / "clean-0123456789ab.shard-1-of-2.npz"  # rank 1 claims rank 0's images
    with np.load(path) as z:
        key, meta = str(z["__key__"]), str(z["__meta__"])
    columns = {"index": np.array([0, 1]), "clean_correct": np.array([True, True])}
    _rewrite(path, **columns, __sha256__=np.array(_digest(columns, meta, key)))
    with pytest.raises(UserError, match="overlap"):
        merged_shards(_ctx(tmp_path, 0), IDENTITY)


def test_a_shard_of_another_record_or_world_size_is_not_used(tmp_path):
    _write_both(tmp_path)
    assert _load_shard(_ctx(tmp_path, 1), {**IDENTITY, "n": 7}, 1) is None
