"""What torchrun's environment says about this process. Free of torch, so the command line can
ask before it imports torch (energybench.core.distributed builds the process group from it)."""

from __future__ import annotations

import os


def world_size() -> int:
    """The number of processes in this torchrun job (WORLD_SIZE); 1 for a process on its own."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started as one of several."""
    return world_size() > 1
