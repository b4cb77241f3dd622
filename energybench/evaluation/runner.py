"""Run metrics on one model and write their records (the `energybench eval` command).

Each metric's record is written as soon as it finishes, to OUT/<metric>-<key>.json with `key` a
digest of its identity (`record_identity`: model sha256, data content, n, every protocol value,
seed, batch size, device type, metric version); a record with the same identity is reused unless
force=True. Metrics run with TF32 off (`runtime.exact_float32`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import types
import typing
import zipfile
from pathlib import Path

import numpy as np
import torch

from energybench.evaluation import costs

from energybench.data import sources as datalib
from energybench.attacks.pgd import NORMS, parse_eps
from energybench.handles.checkpoint import LoadedModel
from energybench.handles.model_handle import default_out_dir, open_model
from energybench.handles.zoo import is_zoo_name
from energybench.core.errors import UserError
from energybench.core.validation import RangeError
from energybench.core.distributed import World, agree
from energybench.metrics import METRICS, EvalContext, figure_drawer
from energybench.metrics.base import NONFINITE_POLICIES, Shard
from energybench.records.store import RECORD_VERSION, read_record, record_path, same_inputs
from energybench.records.text import check_lines, protocol_text
from energybench.core.atomic import check_writable_dir, write_json_atomic, write_npz_atomic
from energybench.records.figures import draw_record
from energybench.core.runtime import environment_info, exact_float32, float32_precision_now


def metric_params(name: str, overrides: dict) -> object:
    """The metric's protocol with the applicable overrides applied. Override values may be typed
    (eps=0.03) or strings from `--param KEY=VALUE`, parsed by the field's type; an eps string is
    read for the metric's norm (an L2 budget written as x/255 is refused)."""
    from energybench.training.config import parse_field

    cls = METRICS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    hints = typing.get_type_hints(cls.Params)
    norm = overrides.get("norm") if "norm" in fields and overrides.get("norm") is not None else "Linf"
    values = {}
    for key, value in overrides.items():
        if key in fields and value is not None:
            if key == "eps" and isinstance(value, str):
                value = parse_eps(value, norm)
            elif isinstance(value, str) and key != "inception_weights":
                value = parse_field(cls.Params, key, value)
            elif not _fits(value, hints[key]):
                raise UserError(f"{key} must be {_type_text(hints[key])}, got {value!r}")
            values[key] = value
    try:
        return cls.Params(**values)
    except RangeError as exc:
        raise exc.renamed(f"{name}: {exc.field}") from None


def _fits(value, hint) -> bool:
    """Whether a protocol value given from Python has its field's type (an int for a float field
    too; a tuple or list of them for a tuple field)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is tuple:
        inner = typing.get_args(hint)[0]
        return isinstance(value, (tuple, list)) and all(_fits(v, inner) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_text(hint) -> str:
    names = {float: "a number", int: "an integer", bool: "true or false", str: "text"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_text(h) for h in typing.get_args(hint) if h is not type(None))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_text(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _check_call(n, batch_size, seed, data, train_data) -> None:
    """What `evaluate` is given from Python, checked before any work: one line naming the argument."""
    for name, value in (("n", n), ("batch_size", batch_size), ("seed", seed)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise UserError(f"{name} must be an integer, got {value!r}")
    for name, value in (("data", data), ("train_data", train_data)):
        if value is None or isinstance(value, (str, os.PathLike, datalib.LabeledImages)):
            continue
        if isinstance(value, tuple) and len(value) == 2:
            continue
        what = f"a tuple of {len(value)}" if isinstance(value, tuple) else f"a {type(value).__name__}"
        raise UserError(f"{name} must be a data spec, LabeledImages or (images, labels); got {what}")


def attack_norms(metrics: list[str], overrides: dict, model, threat_model: str) -> dict[str, dict]:
    """Each metric's overrides with the threat model settled. A norm the user asked for (--norm,
    norm=) goes to every attack metric, and one that cannot attack in it is an error; without one,
    a RobustBench model is attacked in its own threat model (Linf or L2) by the metrics that can,
    and the others keep their L-inf protocol (the summary names the mismatch)."""
    asked = overrides.get("norm")
    if asked is not None and asked not in NORMS:
        raise UserError(f"--norm {asked!r} is not a threat model energybench attacks in; use {' or '.join(NORMS)}")
    implied = threat_model if asked is None and is_zoo_name(model) and threat_model in NORMS else None
    per_metric = {}
    for name in metrics:
        cls = METRICS.get(name)
        norm = asked or implied
        if asked is not None and cls.norms and asked not in cls.norms:
            raise UserError(f"{name} attacks in {' and '.join(cls.norms)} only, not {asked}; evaluate it in "
                            f"a separate run without --norm {asked}")
        takes_norm = norm is not None and norm in cls.norms and len(cls.norms) > 1
        per_metric[name] = {**overrides, "norm": norm if takes_norm else None}
    return per_metric


# Protocol names that were renamed so that one concept has one name everywhere.
RENAMED_PARAMS = {"noise_scale": "noise"}


def check_param_keys(metrics: list[str], keys) -> None:
    """Every --param key must belong to at least one selected metric's protocol."""
    known = {f.name for m in metrics for f in dataclasses.fields(METRICS.get(m).Params)}
    renamed = sorted(k for k in keys if k in RENAMED_PARAMS)
    if renamed:
        raise UserError(f"--param {renamed[0]} is now called {RENAMED_PARAMS[renamed[0]]}; "
                        f"write {RENAMED_PARAMS[renamed[0]]}=...")
    unknown = sorted(set(keys) - known)
    if unknown:
        raise UserError(f"--param {', '.join(unknown)}: no selected metric takes it; they take: "
                        f"{', '.join(sorted(known)) or 'nothing'}")


def check_classes(loaded: LoadedModel, test: datalib.LabeledImages, device: torch.device) -> None:
    """The data must have the model's classes: their number, and for a checkpoint (which stores
    its class names) the same names in the same order."""
    num_classes = getattr(loaded.model, "num_classes", None) or _num_outputs(loaded, test, device)
    if num_classes != test.num_classes:
        raise UserError(
            f"{loaded.name} outputs {num_classes} classes but the data has {test.num_classes}; "
            f"give the matching dataset with --data"
        )
    trained = loaded.checkpoint["meta"].get("classes") if loaded.checkpoint is not None else None
    if trained is not None and list(trained) != list(test.classes):
        first = next(i for i, (a, b) in enumerate(zip(trained, test.classes)) if a != b)
        raise UserError(
            f"{loaded.name} was trained with classes in another order or with other names than the "
            f"data's (class {first}: {trained[first]!r} vs {test.classes[first]!r}); give data with "
            f"the classes {', '.join(trained[:3])}, ... in the model's order"
        )


def record_identity(metric, loaded: LoadedModel, test: datalib.LabeledImages, seed: int,
                    batch_size: int, device: torch.device) -> dict:
    """Everything a record's number depends on; equal identities share one record file."""
    return {"metric": metric.name, "metric_version": metric.version, "model_sha256": loaded.sha256,
            "data": datalib.data_identity(test.source), "n": len(test), "params": metric.protocol(),
            "seed": seed, "batch_size": batch_size, "device": device.type}


def evaluate(
    model,
    metrics: list[str],
    data=None,
    n: int | None = None,
    out_dir: str | Path | None = None,
    device: torch.device = torch.device("cpu"),
    batch_size: int = 256,
    seed: int = 0,
    overrides: dict | None = None,
    force: bool = False,
    log=print,
    refused: dict | None = None,
    train_data=None,
    threat_model: str = "Linf",
    model_dir: str | Path | None = None,
    world: World = World(),
    nonfinite: str = "refuse",
) -> list[dict]:
    """Evaluate `metrics` on the first n test images; returns the records (new and reused), each
    with `file`, the path it is stored at.

    model: any model handle (`energybench.handles.model_handle.open_model`: .pt, .pt2, robustbench:NAME, an
    nn.Module); data: a data spec or `LabeledImages` (default: the data a checkpoint was trained
    on); train_data: the training split (spec or `LabeledImages`) for metrics that need one when
    the model does not name its own. A metric that cannot run here (e.g. IS/FID without Inception
    weights) raises its UserError, or, when a `refused` dict is given, is recorded there by name
    and the others still run. Everything is checked (model, data, classes, every protocol) before
    anything is written. Under torchrun (`world` from energybench.core.distributed.init_world) every
    rank runs this with the same arguments: per-image metrics are split over the ranks and rank 0
    writes one record equal to a single process's (see `compute_metric`). `nonfinite`: what the
    accuracy metrics (clean, PGD, AutoAttack) do with images whose logits are NaN or infinite:
    'refuse' (stop with one line) or 'wrong' (count them wrong; the record says how many)."""
    _check_call(n, batch_size, seed, data, train_data)
    if nonfinite not in NONFINITE_POLICIES:
        raise UserError(f"nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, got {nonfinite!r}")
    if n is not None and n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    per_metric = attack_norms(metrics, overrides or {}, model, threat_model)
    chosen = [METRICS.get(name)(metric_params(name, per_metric[name])) for name in metrics]
    loaded: LoadedModel = open_model(model, device, threat_model=threat_model, model_dir=model_dir)
    test = _test_split(data if data is not None else loaded.train_source, loaded)
    if n is not None:
        if n > len(test):
            raise UserError(f"--n {n} is more than the {len(test):,} test images of {test.source.get('label')}; "
                            f"give at most {len(test):,} (or leave --n out for all)")
        test = test.subset(n)
    check_classes(loaded, test, device)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(loaded)
    check_writable_dir(out_dir)
    ctx = EvalContext(loaded.model, test, device, batch_size, seed, out_dir, loaded,
                      train_data=_train_split(train_data), world=world, nonfinite=nonfinite)
    model_info = describe_model(loaded)
    spec = data if isinstance(data, (str, Path)) else (loaded.train_source if data is None else "in memory")
    data_info = {"spec": str(spec), "label": test.source.get("label"), "source": test.source}
    created = not out_dir.exists()
    if world.is_main:
        announce_costs(chosen, loaded, test, seed, batch_size, device, out_dir, force, log, nonfinite)
    try:
        return _run_metrics(chosen, ctx, loaded, test, seed, batch_size, device, out_dir, force,
                            model_info, data_info, log, refused)
    finally:
        if world.is_main and created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # every metric refused: leave no empty folder behind


ANNOUNCE_PASSES = 20_000  # below this many image gradient passes nothing is timed or said
ANNOUNCE_SECONDS = 60.0  # the plan is said when the estimate is longer than this


def announce_costs(chosen, loaded: LoadedModel, test, seed, batch_size, device, out_dir: Path, force: bool,
                   log, nonfinite: str = "refuse") -> None:
    """Before a long evaluation, one line saying what will run (the metrics not already recorded,
    images, gradient passes) and a time estimate from a short timed warm-up (energybench.evaluation.costs)."""
    pending = [m for m in chosen if force or not _reusable(m, loaded, test, seed, batch_size, device, out_dir,
                                                           nonfinite)]
    n, classes = len(test), len(test.classes)
    if not pending or sum(costs.gradient_passes(m.params, n, classes) for m in pending) < ANNOUNCE_PASSES:
        return
    x = test.images[:min(32, n)].to(device).float().div_(255)
    line, seconds = costs.plan_line(pending, n, classes, costs.seconds_per_pass(loaded.model, x))
    if seconds > ANNOUNCE_SECONDS:
        log(line)


def _reusable(metric, loaded, test, seed, batch_size, device, out_dir: Path, nonfinite: str = "refuse") -> bool:
    identity = record_identity(metric, loaded, test, seed, batch_size, device)
    return reusable_record(read_record(record_path(out_dir, metric.name, identity)), identity, nonfinite) is not None


def reusable_record(old: dict | None, identity: dict, nonfinite: str) -> dict | None:
    """The stored record when it may stand for a new run of `identity`: computed from the same
    inputs, and not one that counted NaN/inf answers as wrong when the run refuses them."""
    if old is None or not same_inputs(old, identity):
        return None
    counted_wrong = (old.get("extra") or {}).get("nonfinite_counted_wrong")
    return None if counted_wrong and nonfinite == "refuse" else old


def _train_split(train_data):
    """The training split a caller named, loaded before any metric runs (so a wrong spec fails
    first, not after the metrics before the one that needs it): (images, labels) in memory or a
    data spec become LabeledImages; None stays (the model's own, loaded when needed)."""
    if isinstance(train_data, tuple) and len(train_data) == 2:
        return datalib.in_memory(*train_data, label="training images given in memory")
    if isinstance(train_data, (str, Path)):
        return datalib.load_split(train_data, "train")
    return train_data


def _test_split(data, loaded: LoadedModel) -> datalib.LabeledImages:
    """The test split from a spec, a LabeledImages, or an (images, labels) pair held in memory."""
    if isinstance(data, datalib.LabeledImages):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        return datalib.in_memory(*data)
    if data is None:
        raise UserError(f"{loaded.name} does not say what data it was trained on; pass --data")
    return datalib.load_split(data, "test")


def _run_metrics(chosen, ctx, loaded, test, seed, batch_size, device, out_dir: Path, force: bool,
                 model_info: dict, data_info: dict, log, refused) -> list[dict]:
    records = []
    for metric in chosen:
        name = metric.name
        identity = record_identity(metric, loaded, test, seed, batch_size, device)
        path = record_path(out_dir, name, identity)
        old = reusable_record(read_record(path), identity, ctx.nonfinite)
        if old is not None and not force:
            log(f"{name}: already recorded in {path} (use --force to recompute)")
            if figure_drawer(name) and not path.with_suffix(".png").exists():
                draw_record(path, figure_drawer(name))  # a figure deleted or never drawn: redrawn from raw data
            records.append({**old, "file": str(path)})
            continue
        start = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)
        if force and ctx.world.is_main:
            remove_saved_state(out_dir, path.stem)
        try:
            with exact_float32():
                result = compute_metric(metric, dataclasses.replace(ctx, stem=path.stem), identity)
            if result is None:  # rank 0 finishes this metric: wait for its record (or its error)
                agree(ctx.world)
        except UserError as exc:
            if refused is None:
                raise
            refused[name] = str(exc)
            log(f"{name}: not computed: {exc}")
            continue
        if result is None:
            records.append({**read_record(path), "file": str(path)})
            continue
        params = identity["params"]
        defaults = type(metric)(type(metric).Params()).protocol()
        record = {
            "record_version": RECORD_VERSION,
            "metric": name,
            "summary": metric.summary,
            "value": float(result.value),
            "unit": metric.unit,
            "n": result.n,
            "stderr": None if result.stderr is None else float(result.stderr),
            "params": params,
            "changed_params": {k: v for k, v in params.items() if v != defaults.get(k)},
            "extra": result.extra,
            **({"diagnostics": result.diagnostics} if result.diagnostics is not None else {}),
            "seed": seed,
            "device": str(device),
            "dtype": "float32",
            "float32_precision": float32_precision_now() if device.type == "cuda" else "ieee (CPU)",
            "batch_size": batch_size,
            "model": model_info,
            "data": data_info,
            "identity": identity,
            "world_size": ctx.world.size,  # processes that computed it (torchrun); not part of its identity
            "versions": environment_info(device),
            "wall_seconds": time.perf_counter() - start,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(record, path)
        if figure_drawer(name):  # the figure, drawn from the raw data just written beside the record
            draw_record(path, figure_drawer(name))
        remove_shards(out_dir, path.stem)
        agree(ctx.world)  # the record is written: the other ranks may read it
        log(f"{name}: {record['value']:.4f} (n={record['n']}, {protocol_text(record)}) -> {path}")
        for line in check_lines(record):
            log(f"  attack check raised: {line}")
        records.append({**record, "file": str(path)})
    return records


def compute_metric(metric, ctx: EvalContext, identity: dict):
    """The metric's result, in one process or over torchrun's ranks. Under torchrun every rank
    runs `prepare`; a shardable metric computes each rank's shard (saved as
    <stem>.shard-<rank>-of-<size>.npz, so a rerun after a failure computes only missing shards)
    and rank 0 merges them and finishes; any other metric runs on rank 0 alone. Returns None on
    the ranks that do not finish (they read the record rank 0 writes)."""
    world = ctx.world
    if not world.enabled:
        return metric.compute(ctx)
    try:
        metric.prepare(ctx)
        error = None
    except UserError as exc:
        error = str(exc)
    agree(world, error)
    if metric.shardable:
        error = None
        try:
            save_shard(ctx, identity, _load_shard(ctx, identity, world.rank) or metric.shard(ctx))
        except UserError as exc:
            error = str(exc)
        agree(world, error)
        if not world.is_main:
            return None
        shards = [_load_shard(ctx, identity, rank) for rank in range(world.size)]
        return _finish_on_main(lambda: metric.finish(ctx.whole(), Shard.merge(shards)), world)
    if not world.is_main:
        return None
    return _finish_on_main(lambda: metric.compute(ctx.whole()), world)


def _finish_on_main(fn, world):
    """Rank 0's last step: on failure the other ranks are told before the error propagates."""
    try:
        return fn()
    except UserError as exc:
        agree(world, str(exc))
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


def describe_model(loaded: LoadedModel) -> dict:
    """What a record says about the evaluated model: identity, recipe and its parameters, the
    training scale (epochs, training images and their source) that tables report beside a number,
    which checkpoint of the run it is (`last`, or `best` with how it was selected), and whether
    the divergence guard rolled the run back (how often, the final learning-rate scale)."""
    ckpt = loaded.checkpoint
    info = {"path": str(loaded.path.resolve()) if loaded.path is not None else None, "name": loaded.name,
            "sha256": loaded.sha256, "kind": loaded.kind, "recipe": None, "model": None,
            "recipe_params": None, "training": None, "parameters": _parameters(loaded), **loaded.info}
    if ckpt is None:
        return info
    meta, progress = ckpt.get("meta", {}), ckpt.get("progress", {})
    info.update({
        "recipe": ckpt["recipe"], "model": ckpt["model"], "recipe_params": ckpt["config"].get("params"),
        "training": {"epochs": progress.get("epoch"), "planned_epochs": ckpt["config"]["optim"]["epochs"],
                     "train_images": meta.get("num_train_images"),
                     "holdout_images": meta.get("num_holdout_images", 0),
                     "data": (meta.get("train_source") or {}).get("label"), "seed": meta.get("seed"),
                     "rollbacks": progress.get("rollbacks", 0), "lr_scale": progress.get("lr_scale", 1.0),
                     "resume_overrides": progress.get("resume_overrides", [])},
        "checkpoint": {"which": "best", **ckpt["selection"]} if "selection" in ckpt else {"which": "last"},
    })
    return info


def _parameters(loaded: LoadedModel) -> int | None:
    """Trainable parameter count, where the model has ordinary parameters (not a .pt2 graph)."""
    return None if loaded.kind == "export" else sum(p.numel() for p in loaded.model.parameters())


@torch.no_grad()
def _num_outputs(loaded: LoadedModel, test: datalib.LabeledImages, device) -> int:
    x = test.images[:1].to(device).float().div_(255)
    out = loaded.model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        what = f"a {type(out).__name__}" if not isinstance(out, torch.Tensor) else f"shape {tuple(out.shape)}"
        raise UserError(f"{loaded.name} must return (N, num_classes) logits for (N, C, H, W) images; it "
                        f"returned {what}")
    return int(out.shape[1])
