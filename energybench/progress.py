"""Progress bars for long work (tqdm on stderr; silent when ENERGYBENCH_PROGRESS=0)."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("ENERGYBENCH_PROGRESS", "1") != "0"


def progress(iterable: Iterable[T], desc: str, total: int | None = None, **kwargs) -> Iterable[T]:
    """Wrap an iterable in a tqdm bar (or return it unchanged when progress is off)."""
    if not progress_enabled():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=None,
                **kwargs)
