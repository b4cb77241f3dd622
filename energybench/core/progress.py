"""Progress on long work, on stderr: a tqdm bar on a terminal; elsewhere (nohup, slurm, CI logs)
one plain line every ENERGYBENCH_PROGRESS_SECONDS (default 30) and one at the end.
ENERGYBENCH_PROGRESS=0 silences both.

A heartbeat keeps the promise inside long items too (a batch of PGD on a slow model, an
AutoAttack chunk, a training epoch's first step): while a progress display is running, a daemon
thread says where it is whenever it has been silent for that long, with the innermost work's
`detail` (e.g. "step 7/20", set by the attack loop through `set_detail`)."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("ENERGYBENCH_PROGRESS", "1") != "0"


def heartbeat_seconds() -> float:
    return float(os.environ.get("ENERGYBENCH_PROGRESS_SECONDS", "30"))


_RUNNING: list = []  # the progress displays now iterating, outermost first
_HEARTBEAT: list[threading.Thread] = []
_NEW_DISPLAY = threading.Event()  # wakes the heartbeat so it takes a new display's period at once


def set_detail(text: str) -> None:
    """Where the innermost running progress display is inside its current item (e.g. an attack's
    step): said by the next line or heartbeat. Costs one attribute write when nothing runs."""
    if _RUNNING:
        _RUNNING[-1].detail = text


def _beat() -> None:
    """The heartbeat thread: looks at the innermost display four times per period of the
    displays now running (at most once a second), and at once when a display starts."""
    while True:
        periods = [display.every for display in list(_RUNNING) if display.every > 0]
        _NEW_DISPLAY.wait(max(0.05, min(1.0, min(periods, default=heartbeat_seconds()) / 4)))
        _NEW_DISPLAY.clear()
        running = list(_RUNNING)
        if running:
            running[-1].heartbeat()


def _start_heartbeat() -> None:
    """Start the one heartbeat thread if it is not running; tell it a display has started."""
    if not _HEARTBEAT:
        thread = threading.Thread(target=_beat, name="energybench-heartbeat", daemon=True)
        _HEARTBEAT.append(thread)
        thread.start()
    _NEW_DISPLAY.set()


class LogLines:
    """An iterable wrapper that logs `desc: i/total (p%), elapsed, eta, postfix` periodically, and
    a heartbeat line with its `detail` when an item keeps it silent for `every` seconds."""

    def __init__(self, iterable: Iterable[T], desc: str, total: int | None, every: float, stream=None):
        self.iterable, self.desc, self.every = iterable, desc, every
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.stream = stream or sys.stderr
        self.postfix = self.detail = ""
        self.done, self.start = 0, time.monotonic()
        self.last = self.start

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self, done: int, start: float, working: bool = False) -> None:
        elapsed = time.monotonic() - start
        parts = [f"{self.desc}: {done}" + (f"/{self.total} ({100 * done / self.total:.0f}%)" if self.total else "")]
        parts.append(f"{elapsed:.0f}s")
        if self.total and 0 < done < self.total:
            parts.append(f"eta {elapsed / done * (self.total - done):.0f}s")
        if working:
            parts.append(f"working on item {done + 1}" + (f": {self.detail}" if self.detail else ""))
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(parts), file=self.stream, flush=True)
        self.last = time.monotonic()

    def heartbeat(self) -> None:
        """Called by the heartbeat thread: a line if this display has been silent for `every`
        (a period of 0, a line after every item, has no heartbeat)."""
        if self.every > 0 and time.monotonic() - self.last >= self.every:
            self._line(self.done, self.start, working=True)

    def __iter__(self) -> Iterator[T]:
        self.start = self.last = time.monotonic()
        self.done, shown = 0, 0
        _RUNNING.append(self)
        _start_heartbeat()
        try:
            for item in self.iterable:
                yield item
                self.done += 1
                self.detail = ""
                if time.monotonic() - self.last >= self.every:
                    self._line(self.done, self.start)
                    shown = self.done
            if self.done and shown != self.done:  # the final line once
                self._line(self.done, self.start)
        finally:
            _RUNNING.remove(self)


class _Bar:
    """A tqdm bar that takes part in the heartbeat: it refreshes (elapsed time, `detail`) when an
    item keeps it still for the heartbeat's period."""

    def __init__(self, bar, every: float):
        self.bar, self.every, self.detail, self.last = bar, every, "", time.monotonic()
        self.desc = bar.desc

    def set_postfix(self, **values) -> None:
        self.bar.set_postfix(**values)

    def heartbeat(self) -> None:
        if self.every > 0 and time.monotonic() - self.last >= self.every:
            self.bar.set_description_str(f"{self.desc} [{self.detail}]" if self.detail else self.desc,
                                         refresh=True)
            self.last = time.monotonic()

    def __iter__(self):
        _RUNNING.append(self)
        _start_heartbeat()
        try:
            for item in self.bar:
                yield item
                self.detail, self.last = "", time.monotonic()
        finally:
            _RUNNING.remove(self)


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
        return LogLines(iterable, desc, total, heartbeat_seconds())
    from tqdm.auto import tqdm

    return _Bar(tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, **kwargs),
                heartbeat_seconds())
