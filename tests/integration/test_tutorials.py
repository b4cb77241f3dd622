"""The tutorials' and how-to guides' commands run as written (so they cannot rot): every ```bash and
```python block of docs/tutorials/*.md and docs/howto/*.md, in order, in a folder laid out like the repository root (its checkpoints,
data/exact.npz for the exact-pixel test images and data/cifar10-jpeg75.tar.gz for the JPEG copy). The Python blocks of a page share one
namespace, as in a notebook; shell blocks run in bash with the environment's energybench."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_data

REPO = Path(__file__).resolve().parents[2]
TUTORIALS = sorted((REPO / "docs" / "tutorials").glob("*.md")) + sorted((REPO / "docs" / "howto").glob("*.md"))
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.M | re.S)


@pytest.mark.parametrize("page", TUTORIALS, ids=lambda p: p.stem)
def test_every_block_of_the_tutorial_runs(page, tmp_path, exact_npz, jpeg_tar, monkeypatch):
    (tmp_path / "checkpoints").symlink_to(REPO / "checkpoints")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "exact.npz").symlink_to(exact_npz)
    (tmp_path / "data" / "cifar10-jpeg75.tar.gz").symlink_to(jpeg_tar)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "ENERGYBENCH_PROGRESS": "0"}
    blocks = BLOCK.findall(page.read_text())
    assert blocks, f"{page.name} has no runnable block"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__tutorial__"}
    for kind, code in blocks:
        if kind == "python":
            exec(compile(code, f"{page.name} block", "exec"), namespace)  # noqa: S102  (the page's own code)
            continue
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{page.name}: {code}\n{run.stderr[-3000:]}"
