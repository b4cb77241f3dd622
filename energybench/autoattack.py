"""Adapter for pyautoattack's standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square; L-inf).

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
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from energybench.attacks import check_eps, eval_mode, predict
from energybench.errors import UserError
from energybench.progress import progress
from energybench.results import write_json_atomic

STATE_FORMAT = "energybench-autoattack-state"
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


class _LogCollector(logging.Handler):
    """Collects pyautoattack's per-attack robust accuracies and its warnings (logger 'auto-attack')."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.after: dict[str, float] = {}
        self.warnings: list[str] = []

    def emit(self, record):
        message = record.getMessage()
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
    logger.propagate = False  # its messages go into the record, not onto the terminal
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


def _read_state(path: Path, key: dict) -> list[dict]:
    """The finished chunks of a state file written for the same `key`; [] when absent. A file
    that is unreadable or was written for another key is an error (the caller names it by key)."""
    if not path.exists():
        return []
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"AutoAttack state {path} is unreadable ({exc}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("key") != key:
        raise UserError(f"AutoAttack state {path} belongs to another model, data or protocol; "
                        f"delete it to start over")
    return state["chunks"]


def _attack_chunk(model, x, y, eps, seed, batch_size, device, version) -> dict:
    from pyautoattack import AutoAttack

    start = time.perf_counter()
    with _collect_log() as log, eval_mode(model), _parameters_frozen(model):
        clean = predict(model, x.to(device)).cpu() == y
        adversary = AutoAttack(model, norm="Linf", eps=eps, version=version, seed=seed, device=device)
        _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
        attacks = list(adversary.attacks_to_run)
    robust = (y_adv.cpu() == y) & clean
    after, count = {}, int(clean.sum())
    for attack in attacks:  # attacks skipped once nothing was left robust keep the last count
        if attack in log.after:
            count = round(log.after[attack] * len(y))
        after[attack] = count
    return {"n": len(y), "clean": "".join("01"[int(v)] for v in clean),
            "robust": "".join("01"[int(v)] for v in robust), "robust_after": after,
            "warnings": log.warnings, "seconds": time.perf_counter() - start}


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
    chunk_size: int | None = None,
    key: dict | None = None,
) -> AutoAttackResult:
    """Standard AutoAttack on x (N, C, H, W) float32 in [0, 1], y (N,) int64.

    Chunks of `chunk_size` images (default `batch_size`) are attacked one after another; with a
    `state_path`, each finished chunk is saved there under `key` (what the result belongs to:
    model, data, protocol) and a rerun continues from the first unfinished chunk."""
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        raise UserError("AutoAttack needs pyautoattack: pip install pyautoattack==0.2.0") from None
    check_eps(eps)
    chunk_size = chunk_size or batch_size
    key = dict(key or {}, eps=eps, seed=seed, version=version, chunk_size=chunk_size, n=len(y))
    chunks = _read_state(Path(state_path), key) if state_path is not None else []
    resumed = len(chunks)
    starts = list(range(0, len(y), chunk_size))
    for start in progress(starts[resumed:], desc="autoattack chunks", total=len(starts) - resumed):
        stop = min(start + chunk_size, len(y))
        chunks.append(_attack_chunk(model, x[start:stop], y[start:stop], eps, seed, batch_size,
                                    device, version))
        if state_path is not None:
            write_json_atomic({"format": STATE_FORMAT, "key": key, "chunks": chunks}, state_path)
    flags = torch.tensor([c == "1" for chunk in chunks for c in chunk["robust"]], dtype=torch.bool)
    clean = sum(chunk["clean"].count("1") for chunk in chunks)
    per_attack: dict[str, float] = {}
    for chunk in chunks:
        for attack, count in chunk["robust_after"].items():
            per_attack[attack] = per_attack.get(attack, 0) + count
    warnings = list(dict.fromkeys(w for chunk in chunks for w in chunk["warnings"]))
    n = len(y)
    return AutoAttackResult(clean / n, int(flags.sum()) / n, flags,
                            {a: c / n for a, c in per_attack.items()}, warnings, len(chunks), resumed)
