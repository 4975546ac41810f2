"""A minimal progress reporter for long CLI work (stderr, switched off by --quiet or when not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class Progress:
    """Report steps on stderr: ``[2/5] resampling ... 0.4 s``."""

    def __init__(self, total: int, *, quiet: bool = False) -> None:
        self.total = total
        self.quiet = quiet
        self.done = 0
        self._t0 = time.perf_counter()

    def step(self, what: str) -> None:
        self.done += 1
        if not self.quiet:
            elapsed = time.perf_counter() - self._t0
            print(f"[{self.done}/{self.total}] {what} ({elapsed:.1f} s)", file=sys.stderr, flush=True)

    def iterate(self, items: Iterable[T], what: str) -> Iterator[T]:
        for item in items:
            yield item
            self.step(what)
