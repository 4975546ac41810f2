"""The shipped AdrenalMNIST3D classifier on the official val split, which it never saw (trained on fold 0 of the
train split, calibrated on that fold's validation volumes), and the BUSI entry that is listed but not shipped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medimg.cli.main import main
from medimg.metrics.classification import roc_auc
from medimg.tasks.classify.inputs import open_prediction_inputs
from medimg.tasks.classify.predictor import load, predict_samples
from medimg.testing import require_data
from medimg.zoo import ZOO, resolve_model

pytestmark = pytest.mark.skipif(not ZOO["adrenalmnist3d"].available, reason="shipped AdrenalMNIST3D model missing")


@pytest.fixture(scope="module")
def val_inputs():
    return open_prediction_inputs(require_data("adrenalmnist3d", "adrenalmnist3d_64_trainval.npz"), split="val")


def test_shipped_model_on_the_held_out_val_split(val_inputs):
    model = load(resolve_model("adrenalmnist3d"))
    assert model.class_names == ("0", "1") and model.plan.input_size == (28, 28, 28) and len(model.folds) == 3
    splits = json.loads((model.path / "splits.json").read_text())
    assert not any(s.startswith("val") for fold in splits["folds"] for s in fold["train"] + fold["val"])
    preds = predict_samples(model, val_inputs, uncertainty="tta", n_samples=2, explain="none")
    probs = np.stack([p.probabilities for p in preds])
    labels = np.array([int(p.label) for p in preds])
    assert len(preds) == 98 and np.allclose(probs.sum(axis=1), 1.0)
    assert all(p.entropy >= 0 and p.mutual_information >= 0 for p in preds)
    # The benchmark (BENCHMARKS.md) measured AUC 0.856 and accuracy 0.837 on these 98 volumes; chance AUC is 0.5.
    assert roc_auc(labels, probs[:, 1]) >= 0.8
    assert ((probs.argmax(1) == labels).mean()) >= 0.75


def test_predict_by_zoo_name_writes_map_and_montage(val_inputs, tmp_path, capsys):
    npz = require_data("adrenalmnist3d", "adrenalmnist3d_64_trainval.npz")
    single = tmp_path / "one.npz"
    with np.load(npz) as z:
        np.savez(single, val_images=z["val_images"][:2], val_labels=z["val_labels"][:2])
    out = tmp_path / "pred"
    assert main(["predict", "adrenalmnist3d", str(single), str(out), "--split", "val", "--uncertainty", "tta",
                 "--samples", "2"]) == 0
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("id,prob_0,prob_1,pred,entropy,mutual_information") and len(rows) == 3
    assert len(list((out / "explain").glob("*.png"))) == 2 and len(list((out / "explain").glob("*.nii.gz"))) == 2
    metrics = json.loads((out / "metrics.json").read_text())  # the labels are known: scored like a validation
    assert metrics["n"] == 2 and 0 <= metrics["accuracy"] <= 1 and "ece" in metrics
    assert "known labels of all 2 samples" in capsys.readouterr().out


def test_models_lists_the_unshipped_busi_model_with_its_recipe(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "adrenalmnist3d" in out and "make zoo-busi" in out
    if not ZOO["busi"].available:
        assert "not shipped" in out
        assert main(["predict", "busi", str(require_data("breast_ultrasound_busi") / "benign"), "x"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "not shipped" in err and "make zoo-busi" in err
