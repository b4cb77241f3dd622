"""Advisory locks on folders, so two writers never interleave (POSIX `flock`).

A run folder is locked for as long as `train` writes it (a second `train` into it fails at once);
a data-cache entry is locked while one process decodes it (the others wait, then read it). The lock
is released when the holder exits, also when it is killed, so a stale lock never blocks anyone.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from energybench.core.errors import UserError


class FolderLock:
    """`with FolderLock(folder, ".lock"):` holds an exclusive lock on folder/name.

    wait=False: if another process holds it, raise a UserError naming that process.
    wait=True: block until it is free, printing `waiting` once to stderr if it has to wait."""

    def __init__(self, folder: str | os.PathLike, name: str = ".lock", wait: bool = False,
                 waiting: str = "waiting for another process", busy: str | None = None):
        self.path = Path(folder) / name
        self.wait, self.waiting, self.busy = wait, waiting, busy
        self._fh = None

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def __enter__(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self.wait:
                fh.close()
                message = self.busy or f"{self.path.parent} is in use by another process"
                raise UserError(f"{message} (pid {self._holder()}); wait for it to finish") from None
            print(f"energybench: {self.waiting} (pid {self._holder()})", file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
