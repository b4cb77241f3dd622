"""Progress on long work, on stderr: a tqdm bar on a terminal; elsewhere (nohup, slurm, CI logs)
one plain line every ENERGYBENCH_PROGRESS_SECONDS (default 30) and one at the end.
ENERGYBENCH_PROGRESS=0 silences both."""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("ENERGYBENCH_PROGRESS", "1") != "0"


class LogLines:
    """An iterable wrapper that logs `desc: i/total (p%), elapsed, eta, postfix` periodically."""

    def __init__(self, iterable: Iterable[T], desc: str, total: int | None, every: float, stream=None):
        self.iterable, self.desc, self.every = iterable, desc, every
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.stream = stream or sys.stderr
        self.postfix = ""

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self, done: int, start: float) -> None:
        elapsed = time.monotonic() - start
        parts = [f"{self.desc}: {done}" + (f"/{self.total} ({100 * done / self.total:.0f}%)" if self.total else "")]
        parts.append(f"{elapsed:.0f}s")
        if self.total and 0 < done < self.total:
            parts.append(f"eta {elapsed / done * (self.total - done):.0f}s")
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(parts), file=self.stream, flush=True)

    def __iter__(self) -> Iterator[T]:
        start = last = time.monotonic()
        done = shown = 0
        for item in self.iterable:
            yield item
            done += 1
            if time.monotonic() - last >= self.every:
                self._line(done, start)
                last, shown = time.monotonic(), done
        if done and shown != done:  # the final line once
            self._line(done, start)


def usable_terminal() -> bool:
    """stderr is a terminal that reports a width (some report 0 columns: no bar fits there)."""
    if not sys.stderr.isatty():
        return False
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (OSError, ValueError):
        return False


def say_progress(line: str) -> None:
    """One progress line on stderr (messages of libraries that report their own progress)."""
    if progress_enabled():
        print(line, file=sys.stderr, flush=True)


def progress(iterable: Iterable[T], desc: str, total: int | None = None, **kwargs) -> Iterable[T]:
    """Wrap an iterable in a progress display (or return it unchanged when progress is off)."""
    if not progress_enabled():
        return iterable
    if not usable_terminal():
        return LogLines(iterable, desc, total, float(os.environ.get("ENERGYBENCH_PROGRESS_SECONDS", "30")))
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, **kwargs)
