"""The record format as published (docs/_static/record.schema.json, a JSON Schema): every
committed record (CI reference, shipped checkpoints, reports) and every record a fresh evaluation
writes validate against it, and the schema requires what the readers rely on (RECORD_SCHEMA)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from energybench.records.store import RECORD_SCHEMA, RECORD_VERSION

pytestmark = pytest.mark.synthetic

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "_static" / "record.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _committed() -> list[Path]:
    found = []
    for root in ("reports", "tests/reference", "checkpoints"):
        for path in sorted((REPO / root).rglob("*.json")):
            doc = json.loads(path.read_text())
            if isinstance(doc, dict) and "record_version" in doc:
                found.append(path)
    return found


def test_the_schema_is_a_schema_and_requires_what_readers_rely_on():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert set(RECORD_SCHEMA) <= set(SCHEMA["required"])
    assert SCHEMA["properties"]["record_version"]["const"] == RECORD_VERSION


def test_every_committed_record_validates():
    paths = _committed()
    assert len(paths) > 200
    problems = {str(p.relative_to(REPO)): next(VALIDATOR.iter_errors(json.loads(p.read_text()))).message
                for p in paths if not VALIDATOR.is_valid(json.loads(p.read_text()))}
    assert not problems, problems


def test_records_written_now_validate(tmp_path):
    from energybench.evaluation.runner import evaluate

    rng = np.random.default_rng(0)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    np.savez(tmp_path / "synth.npz", images=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
             labels=np.arange(12) % 10, label_names=np.array(classes))
    records = evaluate(REPO / "checkpoints" / "jem-smoke.pt", ["clean", "pgd20", "jfs"], data=str(tmp_path / "synth.npz"),
                       out_dir=tmp_path / "eval", overrides={"steps": 2, "probes": 2}, log=lambda m: None)
    for record in records:
        written = json.loads(Path(record["file"]).read_text())
        assert VALIDATOR.is_valid(written), next(VALIDATOR.iter_errors(written)).message
