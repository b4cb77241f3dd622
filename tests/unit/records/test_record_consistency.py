"""A record and the per-image outcomes beside it must agree before either is used: the outcomes'
digest stored in the record, their count against n, their mean against the value. An edit of
either file is refused by the readers (report, plot) and recomputed by eval, never shown or
reused; a forger who rewrites both consistently, digest included, is out of scope."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from testkit import seeded_model, synthetic_npz

import energybench
from energybench.core.errors import UserError
from energybench.records.outcomes import outcomes_path
from energybench.records.store import load_record

pytestmark = pytest.mark.synthetic


@pytest.fixture
def evaluated(tmp_path):
    data = str(synthetic_npz(tmp_path / "data.npz", n_test=40))
    records = energybench.evaluate(seeded_model(), data, metrics=["clean", "pgd20"], out_dir=tmp_path / "out",
                                   device="cpu", eps=2 / 255)
    return data, {r["metric"]: r for r in records}


def test_records_carry_their_outcomes_digest_and_load(evaluated):
    _, records = evaluated
    for record in records.values():
        assert len(record["extra"]["outcomes_sha256"]) == 64
        assert load_record(record["file"])["value"] == record["value"]


def test_an_edited_value_is_refused_by_readers_and_recomputed_by_eval(evaluated, tmp_path):
    data, records = evaluated
    path = Path(records["clean"]["file"])
    stored = json.loads(path.read_text())
    true_value = stored["value"]
    path.write_text(json.dumps({**stored, "value": min(1.0, true_value + 0.25)}))
    with pytest.raises(UserError, match="changed after it was written"):
        load_record(path)
    unsealed = {k: v for k, v in stored.items() if k != "sha256"}  # and without the seal: the outcomes
    path.write_text(json.dumps({**unsealed, "value": min(1.0, true_value + 0.25)}))
    with pytest.raises(UserError, match="is not the mean of"):
        load_record(path)
    (again,) = energybench.evaluate(seeded_model(), data, metrics=["clean"], out_dir=tmp_path / "out", device="cpu")
    assert again["value"] == true_value and load_record(path)["value"] == true_value


def test_outcomes_shuffled_with_the_same_mean_are_refused(evaluated, tmp_path):
    """Moving which images are robust keeps the accuracy but changes every paired test: the digest
    catches it."""
    data, records = evaluated
    outcomes = outcomes_path(records["pgd20"]["file"])
    with np.load(outcomes) as npz:
        columns = {k: npz[k] for k in npz.files}
    columns["robust"] = np.roll(columns["robust"], 1)
    assert columns["robust"].mean() == records["pgd20"]["value"]
    np.savez(outcomes, **columns)
    with pytest.raises(UserError, match="not the file the record was written with"):
        load_record(records["pgd20"]["file"])


def test_outcomes_of_another_size_are_refused_even_without_a_digest(evaluated):
    """Records written before the digest existed are still checked against n and value."""
    _, records = evaluated
    path = Path(records["clean"]["file"])
    stored = json.loads(path.read_text())
    stored["extra"].pop("outcomes_sha256")
    stored.pop("sha256")
    path.write_text(json.dumps(stored))
    outcomes = outcomes_path(path)
    with np.load(outcomes) as npz:
        columns = {k: np.concatenate([npz[k], npz[k]]) for k in npz.files}
    np.savez(outcomes, **columns)
    with pytest.raises(UserError, match=f"holds 80 images but the record says n = {stored['n']}"):
        load_record(path)


@pytest.mark.parametrize("edit, problem", [
    (lambda r: r["model"].update(recipe="jeat"), "changed after it was written"),
    (lambda r: r["data"].update(label="CIFAR-10"), "changed after it was written"),
    (lambda r: r["data"]["source"].update(label="CIFAR-10"), "changed after it was written"),
])
def test_an_edited_description_is_refused(evaluated, edit, problem):
    _, records = evaluated
    path = Path(records["clean"]["file"])
    stored = json.loads(path.read_text())
    edit(stored)
    path.write_text(json.dumps(stored))
    with pytest.raises(UserError, match=problem):
        load_record(path)


def test_unsealed_records_are_still_checked_against_their_identity_and_file_name(evaluated, tmp_path):
    """A record without a seal (written before it existed, or with it removed): the identity
    fields re-derived from the model and data descriptions, and the key in its file name."""
    _, records = evaluated
    path = Path(records["clean"]["file"])
    stored = json.loads(path.read_text())
    stored.pop("sha256")
    path.write_text(json.dumps(stored))
    assert load_record(path)["value"] == stored["value"]
    for field, change, problem in (("data", {"label": "CIFAR-10"}, "test data description"),
                                   ("model", {"sha256": "0" * 64}, "model's sha256")):
        edited = json.loads(json.dumps(stored))
        edited[field]["source" if field == "data" else "sha256"] = (
            {**edited["data"]["source"], **change} if field == "data" else change["sha256"])
        path.write_text(json.dumps(edited))
        with pytest.raises(UserError, match=problem):
            load_record(path)
    moved = path.with_name("clean-000000000000.json")
    moved.write_text(json.dumps(stored))
    with pytest.raises(UserError, match="file name is keyed by"):
        load_record(moved)
