"""The shared training loop: it learns (fails with the optimiser step removed), its budgets (an iteration count, a
wall-clock budget, or both), and its checkpoints (atomic, restored exactly)."""

from __future__ import annotations

import itertools

import pytest
import torch

from medimg.core.errors import InvalidParameterError
from medimg.train.callbacks import load_checkpoint, save_checkpoint
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


def test_the_loop_learns_two_separable_blobs():
    """Starting from weights that call every point the wrong class (accuracy 0), 60 steps reach accuracy 1 and the
    loss falls twenty-fold; without ``optimizer.step()`` the weights, the accuracy and the loss stay where they were."""
    torch.manual_seed(0)
    x = torch.cat([torch.randn(64, 2) + 3.0, torch.randn(64, 2) - 3.0])
    y = torch.cat([torch.zeros(64), torch.ones(64)]).long()
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
        model.bias.zero_()
        assert float((model(x).argmax(1) == y).float().mean()) == 0.0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = train_loop(model, optimizer, itertools.repeat((x, y)), torch.nn.functional.cross_entropy,
                       max_iterations=60, lr_at=schedule("cosine", 0.1), autocast_bf16=False)
    losses = [r["loss"] for r in state.history]
    with torch.no_grad():
        assert float((model(x).argmax(1) == y).float().mean()) == 1.0
    assert sum(losses[-5:]) < 0.05 * sum(losses[:5]), losses


def test_checkpoint_is_written_atomically_and_restores_the_run(tmp_path):
    model, opt, batches, loss = _setup()
    state = train_loop(model, opt, batches, loss, max_iterations=3, lr_at=schedule("cosine", 0.1),
                       autocast_bf16=False)
    path = tmp_path / "fold_0" / "checkpoint.pt"
    save_checkpoint(path, model, opt, state, extra={"fold": 0})
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no temporary file left behind
    other, other_opt, _, _ = _setup()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    restored = load_checkpoint(path, other, other_opt)
    assert restored.iteration == 3 and restored.history == state.history
    assert restored.elapsed_s == pytest.approx(state.elapsed_s)
    for name, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[name], value), name
    assert other_opt.state_dict()["param_groups"][0]["lr"] == opt.state_dict()["param_groups"][0]["lr"]
