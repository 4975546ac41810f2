"""Registration training learns (issue 13, item 5): with the optimiser step removed from the shared loop
(src/medimg/train/loop.py) this test fails.

A registration model is trained for 150 iterations on three real hippocampus cases (on a 2 mm grid, so that it
takes seconds) and its validation label Dice, measured by the trainer on the model folder's validation pairs, must
rise clearly above the Dice before registration (identity: the network starts as a near-zero field). The
validation cases are the training cases here (a splits file saying so): so few iterations fit the pairs they see,
not yet unseen ones, and the question asked is "does training change the network in the right direction", not
"does it generalise" (the zoo model's card answers that one). Registration learns more slowly than segmentation
or classification (the field starts at zero and must grow past half a voxel before a nearest-neighbour label warp
changes), hence more iterations than the ~30 of tests/tasks/test_learning_happens.py.

Measured on the development machine: mean Dice 0.602 -> 0.714.
"""

from __future__ import annotations

import json

import pytest

from medimg.tasks.register.trainer import train
from medimg.testing import hippocampus_subset
from medimg.train.run import TrainOptions

pytestmark = pytest.mark.realdata

CASES = ["hippocampus_001", "hippocampus_006", "hippocampus_011"]


def test_registration_training_raises_the_validation_dice(tmp_path):
    data = hippocampus_subset(tmp_path / "data", CASES)
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"folds": [{"train": CASES, "val": CASES}]}))
    overrides = (("features", [8, 16, 16]), ("grid", [24, 32, 24]), ("spacing", [2.0, 2.0, 2.0]),
                 ("val_pairs", 6), ("batch_size", 2), ("lr", 0.003), ("reg_weight", 0.05), ("dice_weight", 1.0))
    metrics = train(data, tmp_path / "model", TrainOptions(iterations=150, seed=0, precision="fp32",
                                                           splits=str(splits), overrides=overrides))
    v = metrics["validation"]
    assert metrics["iterations"] == 150 and v["n_pairs"] == 6
    before, after = v["mean_dice_before"], v["mean_dice_after"]
    assert after > before + 0.02, f"validation Dice did not rise: {before:.4f} -> {after:.4f}"
