"""Run metrics on one model and write their records (the `energybench eval` command).

Each metric's record is written as soon as it finishes, to OUT/<metric>-<key>.json with `key` a
digest of its identity (`record_identity`: model sha256, data content, n, every protocol value,
seed, batch size, device type, metric version); a record with the same identity is reused unless
force=True. Metrics run with TF32 off (`runtime.exact_float32`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from energybench import data as datalib
from energybench.core.atomic import check_writable_dir, write_json_atomic
from energybench.core.distributed import World, agree
from energybench.core.errors import UserError, option
from energybench.core.runtime import environment_info, exact_float32, float32_precision_now
from energybench.data import to_float
from energybench.energy.energies import NONFINITE_POLICIES
from energybench.energy.purification import PurificationConfig, PurifiedClassifier
from energybench.evaluation import costs
from energybench.evaluation.identity import check_classes, describe_model, record_identity
from energybench.evaluation.protocol import attack_norms, check_call_arguments, metric_params
from energybench.evaluation.sharding import (
    _finish_on_main, _load_shard, merged_shards, remove_saved_state, remove_shards, save_shard,
)
from energybench.handles.checkpoint import LoadedModel
from energybench.handles.model_handle import default_out_dir, open_model
from energybench.handles.reference import check_model_reference
from energybench.metrics import METRICS, EvalContext, figure_drawer
from energybench.records.figures import draw_record
from energybench.records.outcomes import outcomes_sha256
from energybench.records.store import (
    RECORD_VERSION, read_record, record_inconsistency, record_path, same_inputs, sealed,
)
from energybench.records.text import check_lines, protocol_text


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
    confirm_long: Callable[[str], bool] | None = None,
    purification: PurificationConfig | None = None,
    save_adversarial: bool = False,
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
    'refuse' (stop with one line) or 'wrong' (count them wrong; the record says how many).
    `purification` (energybench.energy.purification): evaluate the model behind test-time Langevin
    purification, part of every record's identity. `save_adversarial`: the attack metrics (PGD,
    autoattack, bpda-eot) write their adversarial examples beside their records (<stem>.adversarial.npz)."""
    check_call_arguments(n, batch_size, seed, data, train_data)
    _check_counts(n, batch_size, seed, nonfinite)
    check_model_reference(model)  # a missing file is told before any metric's own checks
    per_metric = attack_norms(metrics, overrides or {}, model, threat_model)
    chosen = _inputs_checked([METRICS.get(name)(metric_params(name, per_metric[name])) for name in metrics],
                             refused, log)
    loaded: LoadedModel = open_model(model, device, threat_model=threat_model, model_dir=model_dir)
    if purification is not None and purification.active:
        loaded = dataclasses.replace(loaded, model=PurifiedClassifier(loaded.model, purification))
    test = datalib.as_split(data if data is not None else loaded.train_source, "test")
    if test is None:
        raise UserError(f"{loaded.name} does not say what data it was trained on; pass {option('data')}")
    if n is not None:
        if n > len(test):
            raise UserError(f"{option('n', n)} is more than the {len(test):,} test images of {test.source.get('label')}; "
                            f"give at most {len(test):,} (or leave {option('n')} out for all)")
        test = test.subset(n)
    check_classes(loaded, test, device, needs_gradient=any(m.needs_input_gradient for m in chosen))
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(loaded)
    check_writable_dir(out_dir)
    ctx = EvalContext(loaded.model, test, device, batch_size, seed, out_dir, loaded,
                      train_data=datalib.as_split(train_data, "train", "training images given in memory"), world=world,
                      nonfinite=nonfinite, save_adversarial=save_adversarial)
    model_info = describe_model(loaded)
    spec = data if isinstance(data, (str, Path)) else (loaded.train_source if data is None else "in memory")
    data_info = {"spec": str(spec), "label": test.source.get("label"), "source": test.source}
    created = not out_dir.exists()
    if world.is_main:
        confirm_unusual_budget(chosen, confirm_long, world)
        announce_costs(chosen, loaded, test, seed, batch_size, device, out_dir, force, log, nonfinite,
                       confirm_long, world)
    try:
        return _run_metrics(chosen, ctx, loaded, test, seed, batch_size, device, out_dir, force,
                            model_info, data_info, log, refused)
    finally:
        if world.is_main and created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # every metric refused: leave no empty folder behind


def _check_counts(n, batch_size: int, seed: int, nonfinite: str) -> None:
    if nonfinite not in NONFINITE_POLICIES:
        raise UserError(f"nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, got {nonfinite!r}")
    if n is not None and n < 1:
        raise UserError(f"{option('n')} must be at least 1, got {n}")
    if batch_size < 1:
        raise UserError(f"{option('batch_size')} must be at least 1, got {batch_size}")
    if seed < 0:
        raise UserError(f"{option('seed')} must be >= 0, got {seed}")


def _inputs_checked(chosen: list, refused: dict | None, log) -> list:
    """The metrics whose inputs pass `Metric.check_inputs`, checked before any model runs. A metric
    that fails raises its UserError, or, with a `refused` dict, is recorded there and left out."""
    kept = []
    for metric in chosen:
        try:
            metric.check_inputs()
        except UserError as exc:
            if refused is None:
                raise
            refused[metric.name] = exc.template
            log(f"{metric.name}: not computed: {exc.template}")
            continue
        kept.append(metric)
    return kept


LARGEST_PUBLISHED_LINF = 16 / 255  # the largest L-inf budget CIFAR-10 papers report robustness at


def confirm_unusual_budget(chosen, confirm: Callable[[str], bool] | None, world: World = World()) -> None:
    """An L-inf budget beyond any published one (eps 0.5 meant as an L2 length is the usual slip)
    starts only when `confirm(question)` says yes; refused in one line otherwise (None: refuse)."""
    for metric in chosen:
        eps, norm = getattr(metric.params, "eps", None), getattr(metric.params, "norm", "Linf")
        if norm != "Linf" or not isinstance(eps, float) or eps <= LARGEST_PUBLISHED_LINF + 1e-12:
            continue
        line = (f"{metric.name}: L-inf eps {eps:g} ({eps * 255:g}/255) is beyond any published CIFAR-10 budget "
                f"(at most 16/255); a length like 0.5 is an L2 budget")
        if world.enabled or (confirm and confirm(f"{line}.\nIs the L-inf budget meant?")):
            return
        raise UserError(f"{line}: for L2 add {option('norm', 'L2')}; for this L-inf budget confirm with "
                        f"{option('yes')}")


ANNOUNCE_PASSES = 20_000  # below this many image gradient passes nothing is timed or said
ANNOUNCE_SECONDS = 60.0  # the plan is said when the estimate is longer than this
LONG_RUN_HOURS = 24  # a single-process evaluation estimated beyond this starts only when confirmed


def announce_costs(chosen, loaded: LoadedModel, test, seed, batch_size, device, out_dir: Path, force: bool,
                   log, nonfinite: str = "refuse", confirm_long: Callable[[str], bool] | None = None,
                   world: World = World()) -> None:
    """Before a long evaluation, one line saying what will run (the metrics not already recorded,
    images, gradient passes) and a time estimate from a short timed warm-up (energybench.evaluation.costs).
    Beyond LONG_RUN_HOURS a single process asks `confirm_long(question)` and refuses in one line unless
    it says yes (None: refuse); a torchrun job, launched as the large job it is, is only told."""
    pending = [m for m in chosen if force or not _reusable(m, loaded, test, seed, batch_size, device, out_dir,
                                                           nonfinite)]
    n, classes = len(test), len(test.classes)
    if not pending or sum(m.gradient_passes(n, classes) for m in pending) < ANNOUNCE_PASSES:
        return
    x = to_float(test.images[:min(32, n)].to(device))
    per_pass = costs.seconds_per_pass(loaded.model, x, min(batch_size, n))
    line, seconds = costs.plan_line(pending, n, classes, per_pass)
    quick = costs.smaller_n(pending, n, classes, per_pass) if seconds > costs.QUICK_LOOK_SECONDS else None
    if quick is not None:
        line += f"; a first look with {option('n', quick[0])} takes about {costs.duration_text(quick[1])}"
    if seconds > LONG_RUN_HOURS * 3600 and not world.enabled and not (
            confirm_long and confirm_long(f"{line}\nThat is over {LONG_RUN_HOURS} hours. Start it?")):
        raise UserError(f"{line}: beyond the {LONG_RUN_HOURS} hours an evaluation starts without asking; "
                        f"lower {option('n')} or the protocol's steps, or confirm with {option('yes')}")
    if seconds > ANNOUNCE_SECONDS:
        log(line)


def _reusable(metric, loaded, test, seed, batch_size, device, out_dir: Path, nonfinite: str = "refuse") -> bool:
    identity = record_identity(metric, loaded, test, seed, batch_size, device)
    path = record_path(out_dir, metric.name, identity)
    return reusable_record(read_record(path), identity, nonfinite, path) is not None


def reusable_record(old: dict | None, identity: dict, nonfinite: str, path: Path | None = None) -> dict | None:
    """The stored record when it may stand for a new run of `identity`: computed from the same
    inputs, not one that counted NaN/inf answers as wrong when the run refuses them, and (given
    its `path`) consistent with the per-image outcomes beside it (`outcomes_mismatch`)."""
    if old is None or not same_inputs(old, identity):
        return None
    if path is not None and record_inconsistency(old, path) is not None:
        return None
    counted_wrong = (old.get("extra") or {}).get("nonfinite_counted_wrong")
    return None if counted_wrong and nonfinite == "refuse" else old


def _outcomes_digest(record_file: Path) -> dict:
    """{'outcomes_sha256': ...} of the outcomes a metric just wrote beside `record_file`, or {}."""
    digest = outcomes_sha256(record_file)
    return {} if digest is None else {"outcomes_sha256": digest}


def _run_metrics(chosen, ctx, loaded, test, seed, batch_size, device, out_dir: Path, force: bool,
                 model_info: dict, data_info: dict, log, refused) -> list[dict]:
    records = []
    for metric in chosen:
        name = metric.name
        identity = record_identity(metric, loaded, test, seed, batch_size, device)
        path = record_path(out_dir, name, identity)
        stored = read_record(path)
        old = reusable_record(stored, identity, ctx.nonfinite, path)
        if stored is not None and old is None and same_inputs(stored, identity) and record_inconsistency(stored, path):
            log(f"{name}: the stored record {path.name} is not what was written "
                f"({record_inconsistency(stored, path)}); computing it again")
        wanted = ctx.save_adversarial and metric.saves_adversarial
        if old is not None and wanted and not path.with_suffix(".adversarial.npz").exists():
            log(f"{name}: recorded in {path.name} without its adversarial examples; computing it again to keep them")
            old = None
        if old is not None and not force:
            log(f"{name}: already recorded in {path} (use {option('force')} to recompute)")
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
            refused[name] = exc.template
            log(f"{name}: not computed: {exc.template}")
            continue
        if result is None:
            records.append({**read_record(path), "file": str(path)})
            continue
        params = identity["params"]
        defaults = type(metric)(type(metric).Params()).protocol()
        changed = {k: v for k, v in params.items() if v != defaults.get(k)}
        record = {
            "record_version": RECORD_VERSION,
            "metric": name,
            "summary": metric.describe(changed),
            "value": float(result.value),
            "unit": metric.unit,
            "n": result.n,
            "stderr": None if result.stderr is None else float(result.stderr),
            "params": params,
            "changed_params": changed,
            "extra": {**result.extra, **_outcomes_digest(path)},
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
        record = sealed(record)
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
        error = exc.template
    agree(world, error)
    if metric.shardable:
        error = None
        try:
            save_shard(ctx, identity, _load_shard(ctx, identity, world.rank) or metric.shard(ctx))
        except UserError as exc:
            error = exc.template
        agree(world, error)
        if not world.is_main:
            return None
        return _finish_on_main(lambda: metric.finish(ctx.whole(), merged_shards(ctx, identity)), world)
    if not world.is_main:
        return None
    return _finish_on_main(lambda: metric.compute(ctx.whole()), world)
