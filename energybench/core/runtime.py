"""Devices, seeding, precision and environment facts. Nothing here touches global state
unless asked to (`seed_everything`, `set_deterministic`)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from energybench.core.errors import UserError, option
from energybench.core.version import __version__


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu', 'cuda', 'cuda:1' as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device {name!r} is not supported; energybench runs on cpu and cuda "
                        f"(use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but CUDA is not available here; use {option('device', 'cpu')}")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} "
                        f"CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch global RNGs (for code we do not control)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on `device` seeded with `seed`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) % 2**63)
    return gen


def derive_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (e.g. run seed, epoch, step)."""
    seq = np.random.SeedSequence([int(p) for p in parts])
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def set_deterministic(enabled: bool) -> None:
    """Ask torch for deterministic kernels (needed for bit-exact resume on GPU)."""
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = not enabled
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when enabled; a no-op otherwise (CPU trains in float32)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


INNER_PRECISIONS = ("float32", "bfloat16")
_inner_precision = contextvars.ContextVar("energybench_inner_precision", default="float32")


@contextlib.contextmanager
def inner_loop_precision(precision: str):
    """Set the precision of attack and SGLD inner loops for the code inside (the trainer wraps each
    step in it, with run.inner_precision). 'float32' runs them with autocast off even when the
    step runs under bfloat16 autocast; 'bfloat16' lets them inherit the step's autocast."""
    if precision not in INNER_PRECISIONS:
        raise UserError(f"unknown inner precision {precision!r}; use one of {', '.join(INNER_PRECISIONS)}")
    token = _inner_precision.set(precision)
    try:
        yield
    finally:
        _inner_precision.reset(token)


def inner_loop(device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast state an attack or SGLD loop on `device` runs in: autocast off (float32) unless
    the enclosing inner_loop_precision is 'bfloat16' (then whatever autocast is active)."""
    if _inner_precision.get() == "float32":
        return torch.autocast(device_type=torch.device(device).type, enabled=False)
    return contextlib.nullcontext()


_TF32_SWITCHES = (("cuda", "matmul"), ("cudnn", "conv"), ("cudnn", "rnn"))


@contextlib.contextmanager
def exact_float32():
    """Inside: CUDA matmuls and cuDNN convolutions run in IEEE float32, not TF32 (which cuDNN
    convolutions use by default). Attacks, SGLD, Fisher scores and energy evaluation run in it,
    so a record that says float32 means float32. Restores the previous settings."""
    switches = [getattr(getattr(torch.backends, a), b) for a, b in _TF32_SWITCHES]
    if not all(hasattr(s, "fp32_precision") for s in switches):  # torch < 2.9: the legacy flags
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
        return
    saved = [s.fp32_precision for s in switches]
    for s in switches:
        s.fp32_precision = "ieee"
    try:
        yield
    finally:
        for s, value in zip(switches, saved):
            s.fp32_precision = value


def float32_precision_now() -> dict:
    """The current TF32 settings, as records state them."""
    return {f"{a}.{b}": getattr(getattr(getattr(torch.backends, a), b), "fp32_precision", "unknown")
            for a, b in _TF32_SWITCHES}


def git_sha() -> str | None:
    """The git commit of the energybench source tree, if it is a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(device: torch.device | None = None) -> dict:
    """Versions and hardware facts recorded with every checkpoint and result."""
    info = {
        "energybench": __version__,
        "git_sha": git_sha(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Temporarily put `model` in eval mode; restores the previous mode on exit."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
