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


class TrainProgress:
    """Training progress on stderr: one self-overwriting line on a terminal, a plain line every ``every``
    iterations otherwise. A :class:`medimg.train.loop.Callback` (duck-typed to keep this module light)."""

    def __init__(self, *, every: int = 10, label: str = "train") -> None:
        self.every = every
        self.label = label
        self._tty = sys.stderr.isatty()

    def on_start(self, state) -> None:
        pass

    def on_iteration(self, state, record: dict) -> None:
        if state.iteration % self.every:
            return
        recent = state.history[-self.every:]
        loss = sum(r["loss"] for r in recent) / len(recent)
        rate = len(recent) / max(sum(r["step_s"] for r in recent), 1e-9)
        total = f"/{state.max_iterations}" if state.max_iterations else ""
        budget = getattr(state, "budget_s", None)
        clock = f"{state.elapsed_s / 60:.1f}" + (f"/{budget / 60:g}" if budget else "")
        text = (f"{self.label}: it {state.iteration}{total}  loss {loss:.4f}  "
                f"lr {record['lr']:.2e}  {rate:.2f} it/s  {clock} min")
        print(("\r" + text) if self._tty else text, end="" if self._tty else "\n", file=sys.stderr, flush=True)

    def on_end(self, state) -> None:
        print(("\n" if self._tty else "") + f"{self.label}: stopped: {state.stop_reason}", file=sys.stderr)
