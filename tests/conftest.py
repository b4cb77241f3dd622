"""Shared fixtures: the real CIFAR-10 copies in ../shared/data, a private ENERGYBENCH_HOME, and a
small model trained once per session on the JPEG copy."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # testkit.py: synthetic material shared by tests
SHARED_DATA = Path(os.environ.get("ENERGYBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
JPEG_TAR = SHARED_DATA / "cifar10-jpeg75.tar.gz"
EXACT_NPZ = SHARED_DATA / "cifar10-test-exact-1017.npz"

# One private data home per test session (decoded data cache included), set before any import
# of energybench reads it.
os.environ.setdefault("ENERGYBENCH_HOME", tempfile.mkdtemp(prefix="energybench-test-home-"))
os.environ["ENERGYBENCH_PROGRESS"] = "0"
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the tests use the CIFAR-10 copies in ../shared/data "
            f"(or set ENERGYBENCH_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def jpeg_tar() -> Path:
    return _require(JPEG_TAR)


@pytest.fixture(scope="session")
def exact_npz() -> Path:
    return _require(EXACT_NPZ)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, jpeg_tar) -> Path:
    """A tiny-cnn trained with `normal` for 4 epochs on 5,000 JPEG-copy images (~10 s)."""
    from dataclasses import replace

    from energybench.training.config import apply_overrides
    from energybench.training.recipes import preset_config
    from energybench.training.run import train

    cfg = preset_config("normal", "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(jpeg_tar)))
    cfg = apply_overrides(cfg, ["data.train_subset=5000", "optim.epochs=4", "data.eval_subset=500"])
    out = tmp_path_factory.mktemp("trained") / "run"
    train(cfg, out, torch.device("cpu"))
    return out


@pytest.fixture(scope="session")
def trained_model(trained_run):
    from energybench.handles.checkpoint import load_model

    return load_model(trained_run / "last.pt").model


@pytest.fixture(scope="session")
def exact_test(exact_npz):
    from energybench.data import load_split

    return load_split(exact_npz, "test")


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: run_cli(*args) -> (exit code, stdout, stderr)."""
    from energybench.cli.main import main

    def run(*args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


REAL_DATA_FIXTURES = {"jpeg_tar", "exact_npz", "trained_run", "trained_model", "exact_test"}


def pytest_collection_modifyitems(config, items):
    """Two tiers: tests that use the CIFAR-10 copies in ../shared/data (directly or through a
    fixture) are marked real_data; every other test needs no real data and is marked synthetic,
    so `pytest -m synthetic` runs on a fresh clone alone.

    Then the files run fast to slow, whole files together (their module fixtures are built once):
    files of synthetic tests only, then unit and security files that use real data, then
    integration files, files with a test marked slow last; the order of the rest is kept."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ())) & REAL_DATA_FIXTURES
        if uses or item.get_closest_marker("real_data"):
            item.add_marker(pytest.mark.real_data)
        else:
            item.add_marker(pytest.mark.synthetic)
    rank: dict = {}
    for item in items:
        path = str(item.path)
        real = item.get_closest_marker("real_data") is not None
        slow = item.get_closest_marker("slow") is not None
        tier = 0 if not real else (2 if "/integration/" in path else 1)
        old_tier, old_slow = rank.get(path, (0, False))
        rank[path] = (max(tier, old_tier), slow or old_slow)
    items.sort(key=lambda item: (rank[str(item.path)][1], rank[str(item.path)][0]))
