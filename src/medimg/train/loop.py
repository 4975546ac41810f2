"""One small training loop with callbacks (no trainer class to subclass).

The loop draws batches, runs forward/backward under optional bf16 autocast, steps the optimizer and the
learning-rate schedule, and stops at an iteration budget or a wall-clock budget, whichever comes first.
Everything else (checkpoints, progress, curves, validation) is a callback.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from medimg.core.errors import InvalidParameterError

logger = logging.getLogger(__name__)

__all__ = ["TrainState", "Callback", "train_loop", "poly_lr", "cosine_lr", "schedule", "make_optimizer"]


@dataclass
class TrainState:
    """What the loop and its callbacks share."""

    iteration: int = 0
    max_iterations: int | None = 0  # None: only the wall clock stops the run
    budget_s: float | None = None
    started: float = field(default_factory=time.perf_counter)
    elapsed_s: float = 0.0  # time spent in this and earlier (resumed) runs
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    stop: bool = False
    stop_reason: str = ""


class Callback:
    """Hooks called by :func:`train_loop`; override what you need."""

    def on_start(self, state: TrainState) -> None: ...

    def on_iteration(self, state: TrainState, record: dict[str, float]) -> None: ...

    def on_end(self, state: TrainState) -> None: ...


def poly_lr(base_lr: float, progress: float, *, exponent: float = 0.9) -> float:
    """Polynomial decay over training progress in [0, 1] (nnU-Net's schedule)."""
    return base_lr * (1 - min(max(progress, 0.0), 1.0)) ** exponent


def cosine_lr(base_lr: float, progress: float, *, warmup: float = 0.0) -> float:
    """Cosine decay over progress in [0, 1], after a linear warm-up over the first ``warmup`` fraction."""
    if progress < warmup:
        return base_lr * (progress + 1e-3) / warmup
    t = (progress - warmup) / max(1.0 - warmup, 1e-9)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def schedule(name: str, base_lr: float) -> Callable[[float], float]:
    """The learning rate as a function of training progress in [0, 1]: ``"cosine"`` (3 % warm-up) or poly.

    Example:
        >>> round(schedule("poly", 0.01)(0.5), 5)
        0.00536
    """
    if name == "cosine":
        return lambda progress: cosine_lr(base_lr, progress, warmup=0.03)
    return lambda progress: poly_lr(base_lr, progress)


def make_optimizer(params, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum 0.99 (nnU-Net's choice)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=0.99, nesterov=True)
    from medimg.core.errors import InvalidParameterError

    raise InvalidParameterError("unknown optimizer", parameter="optimizer", expected="'adamw' or 'sgd'", found=name)


def train_loop(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    *,
    max_iterations: int | None,
    lr_at: Callable[[float], float],
    minutes: float | None = None,
    autocast_bf16: bool = True,
    state: TrainState | None = None,
    callbacks: Sequence[Callback] = (),
    grad_clip: float = 12.0,
    transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> TrainState:
    """Train until ``max_iterations`` or ``minutes`` (wall clock, including earlier resumed runs).

    ``max_iterations=None`` leaves the stop to the wall clock (``minutes`` is then required).

    Args:
        batches: yields (image (B, C, *patch), label (B, *patch)) tensors.
        loss_fn: (model output, label) -> scalar loss.
        lr_at: learning rate for a training progress in [0, 1] (applied before each step). Progress is the
            larger of iterations done / ``max_iterations`` and time spent / ``minutes``, so that the schedule
            decays to its end whichever budget stops the run.
        transform: applied to each batch before the forward pass (augmentation).
        state: a resumed state (iteration and elapsed time continue from it).
    """
    if max_iterations is None and minutes is None:
        raise InvalidParameterError("training needs a budget", parameter="max_iterations/minutes",
                                    expected="an iteration count, a time in minutes, or both", found="neither",
                                    fix="give max_iterations or minutes")
    state = state or TrainState()
    state.max_iterations = max_iterations
    state.started = time.perf_counter() - state.elapsed_s
    budget_s = None if minutes is None else minutes * 60.0
    state.budget_s = budget_s
    for cb in callbacks:
        cb.on_start(state)
    model.train()
    it = iter(batches)
    while (max_iterations is None or state.iteration < max_iterations) and not state.stop:
        t0 = time.perf_counter()
        image, label = next(it)
        if transform is not None:
            image, label = transform(image, label)
        progress = 0.0 if max_iterations is None else state.iteration / max(max_iterations, 1)
        if budget_s is not None:
            progress = max(progress, (time.perf_counter() - state.started) / budget_s)
        lr = lr_at(progress)
        for g in optimizer.param_groups:
            g["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
            out = model(image)
        loss = loss_fn(out, label)
        if not torch.isfinite(loss):
            state.stop, state.stop_reason = True, f"non-finite loss at iteration {state.iteration}"
            logger.error("%s; stopping", state.stop_reason)
            break
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        state.iteration += 1
        state.elapsed_s = time.perf_counter() - state.started
        record = {"iteration": state.iteration, "loss": float(loss.detach()), "lr": lr,
                  "seconds": state.elapsed_s, "step_s": time.perf_counter() - t0}
        state.history.append(record)
        for cb in callbacks:
            cb.on_iteration(state, record)
        if budget_s is not None and state.elapsed_s >= budget_s:
            state.stop, state.stop_reason = True, f"time budget of {minutes:g} min reached"
    if not state.stop_reason:
        state.stop_reason = f"{state.iteration} iterations done"
    for cb in callbacks:
        cb.on_end(state)
    return state
