"""The shared training loop's budgets: an iteration count, a wall-clock budget, or both."""

from __future__ import annotations

import itertools

import pytest
import torch

from medimg.core.errors import InvalidParameterError
from medimg.train.loop import schedule, train_loop


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    return model, optimizer, itertools.repeat((x, y)), torch.nn.functional.cross_entropy


def test_iteration_budget_stops_and_schedule_reaches_its_end():
    model, opt, batches, loss = _setup()
    state = train_loop(model, opt, batches, loss, max_iterations=5, lr_at=schedule("cosine", 0.1),
                       autocast_bf16=False)
    assert state.iteration == 5 and state.stop_reason == "5 iterations done"
    assert state.history[-1]["lr"] < max(r["lr"] for r in state.history)  # past the warm-up peak


def test_clock_only_budget_stops_on_time():
    model, opt, batches, loss = _setup()
    state = train_loop(model, opt, batches, loss, max_iterations=None, minutes=0.005, lr_at=schedule("cosine", 0.1),
                       autocast_bf16=False)
    assert state.stop_reason == "time budget of 0.005 min reached"
    assert state.elapsed_s >= 0.3 and state.iteration > 1 and state.max_iterations is None
    assert state.budget_s == pytest.approx(0.3)


def test_no_budget_is_refused():
    model, opt, batches, loss = _setup()
    with pytest.raises(InvalidParameterError, match="budget"):
        train_loop(model, opt, batches, loss, max_iterations=None, lr_at=schedule("cosine", 0.1))
