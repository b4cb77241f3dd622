"""Adapter for pyautoattack's standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square; L-inf or L2).

pyautoattack==0.2.0 is fra31's attack code behind a keyword-only API. Its own resumable state does
not work (0.2.0 stores its attack set as a string and fails on the first attacked batch of a
resumed run), so resume is ours: the images are attacked in chunks, each chunk by a fresh
`run_standard_evaluation` with the same seed, and every finished chunk's robust flags, per-attack
counts and AutoAttack's own reliability warnings are written atomically to a JSON state file. A
killed run resumes at its first unfinished chunk, and the result equals an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from energybench.attacks import diagnostics
from energybench.attacks.diagnostics import Check
from energybench.attacks.pgd import check_eps, default_step
from energybench.core.atomic import write_json_atomic, write_npz_atomic
from energybench.core.errors import UserError, option
from energybench.core.hashing import json_key, tensors_sha256
from energybench.core.progress import progress, say_progress, set_detail
from energybench.core.runtime import derive_seed, eval_mode
from energybench.energy.energies import logit_margin, refuse_nonfinite

STATE_FORMAT = "energybench-autoattack-state"
STATE_VERSION = 6  # 6: a digest of key and chunks; 5: non-finite logits per image; 4: chunks by id (a rank's share); 3: outcomes
_AFTER_RE = re.compile(r"robust accuracy after (\S+): ([\d.]+)%")


@dataclass
class AutoAttackResult:
    clean_accuracy: float
    robust_accuracy: float
    robust_flags: torch.Tensor  # bool (N,): True where the model is right and no attack succeeded
    per_attack: dict[str, float] = field(default_factory=dict)  # robust accuracy after each attack
    warnings: list[str] = field(default_factory=list)  # AutoAttack's own checks, each once
    chunks: int = 0
    chunks_resumed: int = 0  # chunks read from the state file instead of attacked
    clean_flags: torch.Tensor | None = None  # bool (N,): right on the clean image
    adv_flags: torch.Tensor | None = None  # bool (N,): right on AutoAttack's returned image
    loss: torch.Tensor | None = None  # float (N,): cross-entropy at the returned image
    margin: torch.Tensor | None = None  # float (N,): logit margin at the returned image
    grad_zero: torch.Tensor | None = None  # bool (N,): all-zero CE input gradient at the clean image
    grad_nonfinite: torch.Tensor | None = None  # bool (N,): NaN/inf in that gradient
    probability_rows: int = 0  # clean logit rows that look like probabilities
    randomized: Check | None = None  # two forwards of the first batch compared
    gradient_direction: Check | None = None  # whether the first batch's gradient helps (deterministic models)
    robust_after: dict[str, int] = field(default_factory=dict)  # images still robust after each attack
    nonfinite: torch.Tensor | None = None  # bool (N,): NaN/inf logits on the clean or the returned image
    adversarial: torch.Tensor | None = None  # float32 (N, C, H, W): the returned images (keep_adversarial)


class _LogCollector(logging.Handler):
    """Collects pyautoattack's per-attack robust accuracies and its warnings (logger 'auto-attack')."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.after: dict[str, float] = {}
        self.warnings: list[str] = []
        self.last = "starting"  # AutoAttack's latest message, for the heartbeat

    def emit(self, record):
        message = record.getMessage()
        say_progress(f"autoattack: {message.strip()}")  # per attack and batch, as AutoAttack prints it
        self.last = message.strip().splitlines()[0][:80] if message.strip() else self.last
        match = _AFTER_RE.search(message)
        if match:
            self.after[match[1].lower()] = float(match[2]) / 100.0
        if record.levelno >= logging.WARNING and message not in self.warnings:
            self.warnings.append(message)


@contextlib.contextmanager
def _collect_log():
    logger = logging.getLogger("auto-attack")
    collector = _LogCollector()
    saved = logger.level, logger.propagate
    logger.addHandler(collector)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # its messages go into the record, and as progress lines onto stderr
    try:
        yield collector
    finally:
        logger.removeHandler(collector)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@contextlib.contextmanager
def _parameters_frozen(model: nn.Module):
    """AutoAttack calls .backward() on the loss: with the parameters frozen it leaves no .grad on
    the model (a later user of the model would otherwise see stale gradients)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _state_digest(key: dict, chunks: dict) -> str:
    """sha256 over a state file's key and chunks: an edited or damaged file no longer matches."""
    return json_key({"key": key, "chunks": chunks}, length=64)


_CHUNK_BITS = ("clean", "robust", "adv", "grad_zero", "grad_nonfinite", "nonfinite")


def _chunk_problem(chunk) -> str | None:
    """What is wrong with a saved chunk's structure, or None."""
    if not isinstance(chunk, dict) or not isinstance(chunk.get("n"), int):
        return "a chunk is not a record of n images"
    n = chunk["n"]
    for name in _CHUNK_BITS:
        bits = chunk.get(name)
        if not isinstance(bits, str) or len(bits) != n or set(bits) - {"0", "1"}:
            return f"a chunk's {name} flags are not {n} bits"
    if any(r == "1" and c == "0" for r, c in zip(chunk["robust"], chunk["clean"])):
        return "a chunk counts an image robust that it does not count clean-correct"
    for name in ("loss", "margin"):
        if not isinstance(chunk.get(name), list) or len(chunk[name]) != n:
            return f"a chunk's {name} is not {n} values"
    if not isinstance(chunk.get("robust_after"), dict) or not isinstance(chunk.get("warnings"), list):
        return "a chunk lacks its per-attack counts or warnings"
    return None


def _read_state(path: Path, key: dict) -> dict[int, dict]:
    """The finished chunks {chunk id: result} of a state file written for the same `key`; {} when
    absent. A file that is unreadable, was written for another key, or whose contents no longer
    match the digest written with them is an error (the caller names it by key)."""
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise UserError(f"AutoAttack state {path} is unreadable ({type(exc).__name__}); delete it or rerun "
                        f"with {option('force')} to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("key") != key \
            or not isinstance(state.get("chunks"), dict):
        raise UserError(f"AutoAttack state {path} belongs to another model, data or protocol; "
                        f"delete it or rerun with {option('force')} to start over")
    if state.get("digest") != _state_digest(state["key"], state["chunks"]):
        raise UserError(f"AutoAttack state {path} does not match its digest (it was edited or damaged); "
                        f"delete it or rerun with {option('force')} to start over")
    problem = next((p for p in map(_chunk_problem, state["chunks"].values()) if p), None)
    if problem or not all(c.isdigit() for c in state["chunks"]):
        raise UserError(f"AutoAttack state {path} is damaged ({problem or 'a chunk id is not a number'}); "
                        f"delete it or rerun with {option('force')} to start over")
    return {int(c): chunk for c, chunk in state["chunks"].items()}


def _bits(flags: torch.Tensor) -> str:
    return "".join("01"[int(v)] for v in flags)


def _flags(bits: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in bits], dtype=torch.bool)


def _clean_pass(model, x, y, batch_size, device):
    """Clean predictions, and the cross-entropy input gradient at each clean image: (right (N,),
    grad all zero (N,), grad non-finite (N,), probability-like logit rows, non-finite logits (N,))."""
    right, zero, nonfinite, rows, bad = [], [], [], 0, []
    for start in range(0, len(y), batch_size):
        xb = x[start:start + batch_size].to(device).requires_grad_(True)
        yb = y[start:start + batch_size].to(device)
        with torch.enable_grad():
            logits = model(xb)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, yb, reduction="sum"), xb)
        flat = grad.flatten(1)
        right.append((logits.argmax(1) == yb).cpu())
        zero.append((flat == 0).all(1).cpu())
        nonfinite.append((~torch.isfinite(flat)).any(1).cpu())
        rows += diagnostics.probability_rows(logits.detach())
        bad.append((~torch.isfinite(logits.detach()).all(1)).cpu())
    return torch.cat(right), torch.cat(zero), torch.cat(nonfinite), rows, torch.cat(bad)


@contextlib.contextmanager
def _calls_said(model: nn.Module, log: _LogCollector):
    """Counts the model's forward passes while AutoAttack runs and hands the count (with its
    latest message) to the progress heartbeat: APGD can run for many minutes between messages."""
    calls = [0]

    def count(module, inputs):
        calls[0] += 1
        set_detail(f"{calls[0]} model calls since: {log.last}")

    handle = model.register_forward_pre_hook(count)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def _clean_bits_agree(model, x, y, chunk: dict, batch_size: int, device) -> bool:
    """Whether a saved chunk's per-image clean flags are what the model predicts on its images
    x (n, C, H, W) now: a resumed chunk is re-derived where that is cheap (one forward)."""
    with eval_mode(model):
        logits = torch.cat([model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(y), batch_size)])
    right = (logits.argmax(1) == y) & torch.isfinite(logits).all(1)
    return _bits(right) == chunk["clean"]


def _attack_chunk(model, x, y, eps, seed, batch_size, device, version, first: bool,
                  nonfinite: str | None = "refuse", norm: str = "Linf",
                  custom_attacks: tuple | None = None) -> tuple[dict, torch.Tensor]:
    """One fresh AutoAttack run on x (N, C, H, W) in [0, 1]: the chunk's saved result, and the
    images AutoAttack returned (N, C, H, W) float32 (an image it did not attack: itself). Images
    with NaN/inf clean logits stop it, unless `nonfinite` is 'wrong': then only the others are
    attacked and those count wrong."""
    from pyautoattack import AutoAttack

    start = time.perf_counter()
    with _collect_log() as log, eval_mode(model), _parameters_frozen(model), _calls_said(model, log):
        randomized = None
        if first:
            probe = x[:batch_size].to(device)
            with torch.no_grad():
                randomized = diagnostics.randomized_forward(model, probe, model(probe)).as_record()
        clean, grad_zero, grad_nonfinite, rows, bad = _clean_pass(model, x, y, batch_size, device)
        refuse_nonfinite("autoattack", bad.numpy(), nonfinite)  # no attack on answers that are no answers
        answered = ~bad
        clean = clean & answered
        x_adv, attacks = x.clone(), []
        if bool(answered.any()):
            adversary = AutoAttack(model, norm=norm, eps=eps, version=version, seed=seed, device=device,
                                   attacks=list(custom_attacks) if version == "custom" else None)
            attacked, _ = adversary.run_standard_evaluation(x[answered], y[answered], batch_size=batch_size)
            x_adv[answered] = attacked.to(x_adv.device)
            attacks = list(adversary.attacks_to_run)
        with torch.no_grad():
            adv_logits = torch.cat([model(x_adv[i:i + batch_size].to(device)).cpu()
                                    for i in range(0, len(y), batch_size)])
    adv = (adv_logits.argmax(1) == y) & answered & torch.isfinite(adv_logits).all(1)
    robust = adv & clean
    after, count = {}, int(clean.sum())
    for attack in attacks:  # attacks skipped once nothing was left robust keep the last count
        if attack in log.after:  # a fraction of the images it attacked
            count = round(log.after[attack] * int(answered.sum()))
        after[attack] = count
    chunk = {"n": len(y), "clean": _bits(clean), "robust": _bits(robust), "adv": _bits(adv),
             "robust_after": after, "warnings": log.warnings, "seconds": time.perf_counter() - start,
             "loss": F.cross_entropy(adv_logits, y, reduction="none").tolist(),
             "margin": logit_margin(adv_logits, y).tolist(), "grad_zero": _bits(grad_zero),
             "grad_nonfinite": _bits(grad_nonfinite), "probability_rows": rows,
             "nonfinite": _bits(bad | ~torch.isfinite(adv_logits).all(1))}
    if randomized is not None:
        chunk["randomized"] = randomized
        if not randomized["flag"]:  # after the attack, which seeds itself: its draws stay as they were
            chunk["gradient_direction"] = diagnostics.gradient_direction(
                model, probe, y[:batch_size].to(device), default_step(eps), norm, "ce",
                derive_seed(seed, 0, 2)).as_record()
    return chunk, x_adv.float()


def run_square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int,
               seed: int, batch_size: int, device, norm: str = "Linf") -> torch.Tensor:
    """pyautoattack's Square attack (gradient-free, margin loss, in `norm`): which images of x (N, C,
    H, W) in [0, 1] the model still classifies right, (N,) bool. Square seeds torch's global
    generator itself; it runs inside a forked RNG state."""
    from pyautoattack.square import SquareAttack

    devices = [device] if torch.device(device).type == "cuda" else []
    right = []
    with eval_mode(model), _parameters_frozen(model), torch.random.fork_rng(devices=devices):
        attack = SquareAttack(model, norm=norm, n_queries=queries, eps=eps, seed=seed, device=device)
        attack.return_all = False
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            with torch.no_grad():
                adv = attack.perturb(xb, yb)
                right.append((model(adv).argmax(1) == yb).cpu())
    return torch.cat(right) if right else torch.zeros(0, dtype=torch.bool)


def run_autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = 8 / 255,
    seed: int = 0,
    batch_size: int = 250,
    device: torch.device | str = "cpu",
    state_path: Path | None = None,
    version: str = "standard",
    custom_attacks: tuple | None = None,
    chunk_size: int | None = None,
    key: dict | None = None,
    chunk_ids: list[int] | None = None,
    nonfinite: str | None = "refuse",
    norm: str = "Linf",
    keep_adversarial: bool = False,
) -> AutoAttackResult:
    """Standard AutoAttack in `norm` ('Linf' or 'L2') on x (N, C, H, W) float32 in [0, 1], y (N,) int64,
    on any device (the model runs on `device`; the result's tensors are on the CPU)
    (or `version` plus/rand, or custom with the `custom_attacks` named, in their order).

    Chunks of `chunk_size` images (default `batch_size`) are attacked one after another (only
    `chunk_ids`, when given: a torchrun rank's share); with a `state_path`, each finished chunk is
    saved there under `key` (what the result belongs to: model, data, protocol) and a rerun
    continues with the chunks not yet saved. Each chunk is a fresh AutoAttack run with the same
    seed, so a chunk's result does not depend on which process attacks it or when. The result
    covers the attacked chunks, in chunk order (per-image fields: their images). `nonfinite`:
    'refuse' (default) stops on NaN/inf clean logits, 'wrong' counts those images wrong.
    `keep_adversarial`: the result holds the returned images; with a `state_path` each chunk's are
    saved beside it (`adversarial_chunk_path`, their digest in the state), and a saved chunk whose
    images are missing or changed is attacked again."""
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        raise UserError("AutoAttack needs pyautoattack: pip install pyautoattack==0.2.0") from None
    check_eps(eps, "eps", norm)
    x, y = x.cpu(), y.cpu()  # kept on the host between chunks; `device` runs the model
    chunk_size = chunk_size or batch_size
    key = dict(key or {}, eps=eps, seed=seed, version=version, chunk_size=chunk_size, n=len(y),
               state_version=STATE_VERSION, **({"norm": norm} if norm != "Linf" else {}),
               **({"attacks": list(custom_attacks)} if version == "custom" else {}))
    starts = list(range(0, len(y), chunk_size))
    wanted = list(range(len(starts))) if chunk_ids is None else sorted(chunk_ids)
    saved = _read_state(Path(state_path), key) if state_path is not None else {}
    chunks = {c: saved[c] for c in wanted if c in saved}
    for c in list(chunks):
        start, stop = starts[c], min(starts[c] + chunk_size, len(y))
        if not _clean_bits_agree(model, x[start:stop], y[start:stop], chunks[c], batch_size, device):
            say_progress(f"AutoAttack state {state_path}: chunk {c}'s saved clean predictions are not the "
                         f"model's (edited, or another device's rounding); attacking it again")
            del chunks[c]
    adversarial: dict[int, torch.Tensor] = {}
    if keep_adversarial:
        for c in list(chunks):
            adversarial[c] = _saved_adversarial(state_path, c, chunks[c])
            if adversarial[c] is None:
                say_progress(f"AutoAttack state {state_path}: chunk {c}'s adversarial images are not saved (or "
                             f"not as attacked); attacking it again to keep them")
                del chunks[c], adversarial[c]
    resumed = len(chunks)
    todo = [c for c in wanted if c not in chunks]
    for c in progress(todo, desc="autoattack chunks", total=len(todo)):
        start, stop = starts[c], min(starts[c] + chunk_size, len(y))
        chunks[c], x_adv = _attack_chunk(model, x[start:stop], y[start:stop], eps, seed, batch_size, device,
                                         version, first=c == 0, nonfinite=nonfinite, norm=norm,
                                         custom_attacks=custom_attacks)
        if keep_adversarial:
            adversarial[c] = x_adv
            chunks[c]["adversarial_sha256"] = tensors_sha256({"images": x_adv})
            if state_path is not None:  # the images first: a state naming them finds them
                write_npz_atomic(adversarial_chunk_path(state_path, c), images=x_adv.numpy())
        if state_path is not None:
            saved_chunks = {str(i): chunks[i] for i in sorted(chunks)}
            write_json_atomic({"format": STATE_FORMAT, "key": key, "chunks": saved_chunks,
                               "digest": _state_digest(key, saved_chunks)}, state_path)
    result = combine_chunks([chunks[c] for c in wanted], resumed)
    if keep_adversarial:
        result.adversarial = torch.cat([adversarial[c] for c in wanted]) if wanted else None
    return result


def adversarial_chunk_path(state_path: Path, chunk: int) -> Path:
    """Where a chunk's returned images are saved: <state stem>.chunk-<c>.adversarial.npz."""
    state_path = Path(state_path)
    return state_path.with_name(f"{state_path.stem}.chunk-{chunk}.adversarial.npz")


def _saved_adversarial(state_path: Path | None, c: int, chunk: dict) -> torch.Tensor | None:
    """A resumed chunk's saved images (n, C, H, W) float32 when they are the ones its state names
    (by digest), else None (never saved, deleted, or changed)."""
    if state_path is None or "adversarial_sha256" not in chunk:
        return None
    path = adversarial_chunk_path(state_path, c)
    try:
        with np.load(path, allow_pickle=False) as saved:
            images = torch.from_numpy(saved["images"].copy())
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    if len(images) != chunk["n"] or tensors_sha256({"images": images}) != chunk["adversarial_sha256"]:
        return None
    return images


def chunk_index(chunk_size: int, n: int, chunk_ids: list[int]) -> torch.Tensor:
    """The image indices of the given chunks, in order: (sum of their sizes,) int64."""
    return torch.cat([torch.arange(c * chunk_size, min((c + 1) * chunk_size, n)) for c in sorted(chunk_ids)]) \
        if chunk_ids else torch.zeros(0, dtype=torch.long)


def combine_chunks(chunks: list[dict], resumed: int = 0) -> AutoAttackResult:
    """The result over `chunks` (in order): per-image flags concatenated, counts summed."""
    flags = _flags("".join(chunk["robust"] for chunk in chunks))
    n = max(1, len(flags))
    clean = sum(chunk["clean"].count("1") for chunk in chunks)
    per_attack: dict[str, float] = {}
    for chunk in chunks:
        for attack, count in chunk["robust_after"].items():
            per_attack[attack] = per_attack.get(attack, 0) + count
    warnings = list(dict.fromkeys(w for chunk in chunks for w in chunk["warnings"]))
    randomized = next((c["randomized"] for c in chunks if "randomized" in c), None)
    direction = next((c["gradient_direction"] for c in chunks if "gradient_direction" in c), None)
    return AutoAttackResult(
        clean / n, int(flags.sum()) / n, flags, {a: c / n for a, c in per_attack.items()}, warnings,
        len(chunks), resumed, clean_flags=_flags("".join(c["clean"] for c in chunks)),
        adv_flags=_flags("".join(c["adv"] for c in chunks)),
        loss=torch.tensor([v for c in chunks for v in c["loss"]]),
        margin=torch.tensor([v for c in chunks for v in c["margin"]]),
        grad_zero=_flags("".join(c["grad_zero"] for c in chunks)),
        grad_nonfinite=_flags("".join(c["grad_nonfinite"] for c in chunks)),
        probability_rows=sum(c["probability_rows"] for c in chunks),
        randomized=None if randomized is None else diagnostics.from_record("randomized_forward", randomized),
        gradient_direction=None if direction is None else diagnostics.from_record("gradient_direction", direction),
        robust_after=per_attack, nonfinite=_flags("".join(c["nonfinite"] for c in chunks)))
