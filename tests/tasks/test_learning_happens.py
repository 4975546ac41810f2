"""Training learns, through the commands users run (issue 13, item 5; issue 12's honest-results rule).

Each test trains a task for a few dozen iterations on real data (segmentation on hippocampus crops,
classification on BreastMNIST) and reads the per-iteration loss the trainer
wrote (fold_k/training_log.json): the loss of the last iterations must be well below that of the first ones.
With the optimiser step removed from the shared loop (src/medimg/train/loop.py) every test here fails, which the
other training tests (3-5 iterations, file checks) could not show. Registration's check is its validation Dice
(tests/tasks/test_register_learns.py): its loss (similarity plus a regulariser that grows as the field leaves zero)
is not a fair measure of learning over a few dozen iterations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medimg.cli.main import main
from medimg.testing import hippocampus_subset, require_data

pytestmark = pytest.mark.realdata


def _losses(model_dir: Path, fold: str = "fold_0") -> np.ndarray:
    log = json.loads((model_dir / fold / "training_log.json").read_text())
    return np.array([float(r["loss"]) for r in log["history"]])


def _assert_learned(losses: np.ndarray, *, ratio: float, window: int = 8) -> None:
    first, last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    assert len(losses) >= 3 * window, losses
    assert last < ratio * first, f"loss did not fall: first {first:.4f}, last {last:.4f} ({losses.round(3)})"


def test_loop_steps_the_optimizer():
    """The shared loop itself: a linear classifier on two separable blobs reaches > 95 % accuracy."""
    import torch

    from medimg.train.loop import make_optimizer, train_loop

    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(64, 2, generator=gen) + 2.0, torch.randn(64, 2, generator=gen) - 2.0])
    y = torch.cat([torch.ones(64), torch.zeros(64)]).long()
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)

    def batches():
        while True:
            yield x, y

    optimizer = make_optimizer(model.parameters(), "adamw", 0.05, 0.0)
    state = train_loop(model, optimizer, batches(), torch.nn.functional.cross_entropy, max_iterations=60,
                       lr_at=lambda p: 0.05, autocast_bf16=False)
    losses = np.array([r["loss"] for r in state.history])
    _assert_learned(losses, ratio=0.3, window=5)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.95


def test_segmentation_training_lowers_the_loss(tmp_path):
    data = hippocampus_subset(tmp_path / "data", ["hippocampus_001", "hippocampus_006", "hippocampus_011",
                                                  "hippocampus_014", "hippocampus_015"])
    out = tmp_path / "model"
    assert main(["train", "segment", str(data), "-o", str(out), "--fold", "0", "--folds", "5", "--iterations",
                 "40", "--seed", "0", "--set", "batch_size=2", "--precision", "fp32", "--quiet"]) == 0
    _assert_learned(_losses(out), ratio=0.8)


def test_classification_training_lowers_the_loss(tmp_path):
    npz = require_data("medmnist_more", "breastmnist_trainval.npz")
    out = tmp_path / "model"
    assert main(["train", "classify", str(npz), "--split", "train", "-o", str(out), "--fold", "0",
                 "--iterations", "60", "--seed", "0", "--precision", "fp32", "--quiet"]) == 0
    _assert_learned(_losses(out), ratio=0.9, window=10)

