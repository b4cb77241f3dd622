"""Run metrics on one model and write their records (the `energybench eval` command).

Each metric's record is written as soon as it finishes; a record that already exists for the same
model (sha256), data, n, parameters and seed is reused unless force=True.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from energybench import data as datalib
from energybench.checkpoint import LoadedModel, load_model
from energybench.errors import UserError
from energybench.metrics import METRICS, EvalContext
from energybench.results import (
    RECORD_VERSION, read_record, record_path, same_inputs, write_json_atomic,
)
from energybench.runtime import environment_info


def default_out_dir(model_path: Path) -> Path:
    """runs/x/last.pt -> runs/x/eval-last/; model.pt2 -> eval-model/ beside it."""
    return model_path.parent / f"eval-{model_path.stem}"


def metric_params(name: str, overrides: dict) -> object:
    """The metric's protocol with the applicable overrides applied. Override values may be typed
    (eps=0.03) or strings from `--param KEY=VALUE`, parsed by the field's type."""
    from energybench.config import parse_field

    cls = METRICS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    values = {}
    for key, value in overrides.items():
        if key in fields and value is not None:
            values[key] = parse_field(cls.Params, key, value) if isinstance(value, str) and \
                key != "inception_weights" else value
    return cls.Params(**values)


def check_param_keys(metrics: list[str], keys) -> None:
    """Every --param key must belong to at least one selected metric's protocol."""
    known = {f.name for m in metrics for f in dataclasses.fields(METRICS.get(m).Params)}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise UserError(f"--param {', '.join(unknown)}: no selected metric takes it; they take: "
                        f"{', '.join(sorted(known)) or 'nothing'}")


def evaluate(
    model_path: str | Path,
    metrics: list[str],
    data_spec: str | None = None,
    n: int | None = None,
    out_dir: str | Path | None = None,
    device: torch.device = torch.device("cpu"),
    batch_size: int = 256,
    seed: int = 0,
    overrides: dict | None = None,
    force: bool = False,
    log=print,
    refused: dict | None = None,
) -> list[dict]:
    """Evaluate `metrics` on the first n test images; returns the records (new and reused).

    A metric that cannot run here (e.g. IS/FID without Inception weights) raises its UserError,
    or, when a `refused` dict is given, is recorded there by name and the others still run."""
    model_path = Path(model_path)
    loaded: LoadedModel = load_model(model_path, device)
    spec = data_spec if data_spec is not None else loaded.train_source
    test = datalib.load_split(spec, "test")
    if n is not None:
        if n < 1:
            raise UserError(f"--n must be at least 1, got {n}")
        test = test.subset(n)
    num_classes = getattr(loaded.model, "num_classes", None) or _num_outputs(loaded, test, device)
    if num_classes != test.num_classes:
        raise UserError(
            f"{model_path} outputs {num_classes} classes but the data has {test.num_classes}; "
            f"give the matching dataset with --data"
        )
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(model_path)
    ctx = EvalContext(loaded.model, test, device, batch_size, seed, out_dir, loaded)
    model_info = describe_model(loaded, model_path)
    data_info = {"spec": spec, "label": test.source.get("label"), "source": test.source}
    records = []
    for name in metrics:
        metric = METRICS.get(name)(metric_params(name, overrides or {}))
        params = dataclasses.asdict(metric.params)
        identity = {
            "model_sha256": loaded.sha256, "data": test.source, "n": len(test),
            "params": params, "seed": seed,
        }
        path = record_path(out_dir, name)
        old = read_record(path)
        if old is not None and not force and same_inputs(old, identity):
            log(f"{name}: already recorded in {path} (use --force to recompute)")
            records.append(old)
            continue
        start = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = metric.compute(ctx)
        except UserError as exc:
            if refused is None:
                raise
            refused[name] = str(exc)
            log(f"{name}: not computed: {exc}")
            continue
        record = {
            "record_version": RECORD_VERSION,
            "metric": name,
            "summary": metric.summary,
            "value": float(result.value),
            "unit": metric.unit,
            "n": result.n,
            "stderr": None if result.stderr is None else float(result.stderr),
            "params": params,
            "extra": result.extra,
            "seed": seed,
            "device": str(device),
            "dtype": "float32",
            "batch_size": batch_size,
            "model": model_info,
            "data": data_info,
            "identity": identity,
            "versions": environment_info(device),
            "wall_seconds": time.perf_counter() - start,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(record, path)
        log(f"{name}: {record['value']:.4f} (n={record['n']}) -> {path}")
        records.append(record)
    return records


def describe_model(loaded: LoadedModel, model_path: Path) -> dict:
    """What a record says about the evaluated model: identity, recipe and its parameters, and the
    training scale (epochs, training images and their source) that tables report beside a number."""
    ckpt = loaded.checkpoint
    info = {"path": str(model_path.resolve()), "sha256": loaded.sha256, "kind": loaded.kind,
            "recipe": None, "model": None, "recipe_params": None, "training": None,
            "parameters": sum(p.numel() for p in loaded.model.parameters()) if loaded.kind == "checkpoint" else None}
    if ckpt is None:
        return info
    meta, progress = ckpt.get("meta", {}), ckpt.get("progress", {})
    info.update({
        "recipe": ckpt["recipe"], "model": ckpt["model"], "recipe_params": ckpt["config"].get("params"),
        "training": {"epochs": progress.get("epoch"), "planned_epochs": ckpt["config"]["optim"]["epochs"],
                     "train_images": meta.get("num_train_images"),
                     "data": (meta.get("train_source") or {}).get("label"), "seed": meta.get("seed")},
    })
    return info


@torch.no_grad()
def _num_outputs(loaded: LoadedModel, test: datalib.LabeledImages, device) -> int:
    x = test.images[:1].to(device).float().div_(255)
    return int(loaded.model(x).shape[1])
