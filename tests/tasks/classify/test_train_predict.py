"""Classification training and prediction on real data, a few iterations at tiny width: the model folder, the
stored temperature, resume, repeatability, the fold ensemble, and prediction files with calibrated probabilities,
uncertainty and explanation maps (AdrenalMNIST3D resized to 16^3; 30 BUSI images at 64 x 64)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.io import read
from medimg.tasks.classify.data import make_classification_splits
from medimg.tasks.classify.evaluate import validation_metrics
from medimg.tasks.classify.inputs import open_prediction_inputs
from medimg.tasks.classify.predictor import load, predict_samples
from medimg.tasks.classify.trainer import train
from medimg.tasks.classify.writer import write_predictions
from medimg.testing import require_data
from medimg.train.run import TrainOptions

TINY_3D = (("input_size", [16, 16, 16]), ("model_width", 8), ("batch_size", 4))


def adrenal_subset(dest: Path) -> Path:
    """A MedMNIST file with 24 train (16 normal, 8 hyperplasia) and 8 val (4 + 4) samples of AdrenalMNIST3D 64^3."""
    src = require_data("adrenalmnist3d", "adrenalmnist3d_64_trainval.npz")
    with np.load(src) as z:
        pick = {s: np.concatenate([np.flatnonzero(z[f"{s}_labels"][:, 0] == c)[:n] for c, n in enumerate(sizes)])
                for s, sizes in (("train", (16, 8)), ("val", (4, 4)))}
        arrays = {f"{s}_{k}": z[f"{s}_{k}"][idx] for s, idx in pick.items() for k in ("images", "labels")}
    path = dest / "adrenal_small.npz"
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(scope="module")
def adrenal_npz(tmp_path_factory) -> Path:
    return adrenal_subset(tmp_path_factory.mktemp("adrenal"))


def _options(**changes) -> TrainOptions:
    base = dict(fold=0, n_folds=2, iterations=3, seed=0, split="train", overrides=TINY_3D, deterministic=True)
    base.update(changes)
    return TrainOptions(**base)


@pytest.fixture(scope="module")
def adrenal_model(adrenal_npz, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "adrenal"
    train(adrenal_npz, out, _options())
    return out


def test_model_folder_describes_itself(adrenal_model, adrenal_npz):
    fold = adrenal_model / "fold_0"
    for name in ("model.pt", "metrics.json", "calibration.json", "reliability.png", "training_curve.png",
                 "checkpoint.pt", "validation_predictions.csv"):
        assert (fold / name).is_file(), name
    plan = json.loads((adrenal_model / "plan.json").read_text())
    assert plan["task"] == "binary" and plan["input_size"] == [16, 16, 16] and plan["n_folds"] == 2
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["iterations"] == 3 and metrics["n_train"] == 12 and metrics["n_val"] == 12
    val = metrics["validation"]
    for key in ("auc_macro", "accuracy", "balanced_accuracy", "ece_before", "ece_after", "confusion_matrix",
                "per_class"):
        assert key in val, key
    assert np.sum(val["confusion_matrix"]) == 12 and set(val["per_class"]) == {"0", "1"}
    assert "optimistic" in metrics["calibration_note"] and "fold_0" in metrics["calibration_set"]
    assert metrics["autocast_bf16"] is False  # 2^3 feature maps under 3x3x3 kernels: float32 (PyTorch bf16 bug)
    calib = json.loads((fold / "calibration.json").read_text())
    assert calib["fitted"] and calib["temperature"] > 0 and calib["temperature"] == metrics["temperature"]
    # stratified: every sample validated once, each validation fold holds 4 + 8 / 2 of each class
    splits = json.loads((adrenal_model / "splits.json").read_text())
    val_ids = [s for f in splits["folds"] for s in f["val"]]
    assert sorted(val_ids) == sorted(set(val_ids)) and len(val_ids) == 24
    train_inputs = open_prediction_inputs(adrenal_npz, split="train")
    labels = dict(zip(train_inputs.ids, train_inputs.labels))
    for f in splits["folds"]:
        assert sorted(labels[s] for s in f["val"]).count("1") == 4
    # the weights are stored as float16 and the loaded model uses the stored temperature
    state = torch.load(fold / "model.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    model = load(adrenal_model)
    assert model.folds == ["fold_0"] and model.temperatures == [calib["temperature"]]
    assert next(model.networks[0].parameters()).dtype == torch.float32


def test_predict_the_val_split_writes_csv_json_and_maps(adrenal_model, adrenal_npz, tmp_path):
    model = load(adrenal_model)
    inputs = open_prediction_inputs(adrenal_npz)  # no test split in the file: the val split
    assert inputs.ids == tuple(f"val_{i}" for i in range(8))
    preds = predict_samples(model, inputs, uncertainty="auto", n_samples=4, explain="gradcam")
    assert [p.uncertainty_method for p in preds] == ["tta"] * 8  # one fold, no dropout: TTA
    for p in preds:
        assert p.probabilities.sum() == pytest.approx(1.0, abs=1e-6) and p.pred in ("0", "1")
        assert p.entropy >= 0 and p.mutual_information >= 0 and p.n_samples == 4
        assert p.saliency.shape == (16, 16, 16) and 0 <= p.saliency.min() and p.saliency.max() <= 1
        assert p.saliency_on_input().shape == (64, 64, 64)
    out = write_predictions(preds, tmp_path / "out", images=inputs, inputs=[adrenal_npz])
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "prob_0", "prob_1", "pred", "entropy", "mutual_information", "label"]
    assert [r["id"] for r in rows] == list(inputs.ids)
    assert all(abs(float(r["prob_0"]) + float(r["prob_1"]) - 1) < 1e-5 for r in rows)
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["n"] == 8 and summary["uncertainty"] == {"method": "tta", "n_samples": 4}
    for i in range(8):
        assert (out / "explain" / f"val_{i}.png").stat().st_size > 0
    saliency = read(out / "explain" / "val_0.nii.gz")
    assert saliency.spatial_shape == (64, 64, 64)  # mapped back onto the sample's own grid
    assert not list(tmp_path.glob(".out*"))  # no temporary folder left behind


def test_predict_writes_nothing_and_result_write_writes_the_cli_files(adrenal_model, adrenal_npz, tmp_path,
                                                                      monkeypatch):
    """predict() computes in memory (no file anywhere); result.write(out) writes exactly what `medimg predict`
    writes."""
    from medimg.cli.main import main
    from medimg.tasks.classify.predictor import predict

    def files() -> set[Path]:
        return {p for root in (tmp_path, adrenal_model, adrenal_npz.parent) for p in root.rglob("*")}

    monkeypatch.chdir(tmp_path)
    model = load(adrenal_model)
    before = files()
    result = predict(model, str(adrenal_npz), split="val", uncertainty="tta", samples=2)
    assert files() == before
    data = result.to_dict()
    json.dumps(data, allow_nan=False)  # JSON-ready, no arrays
    assert data["n"] == 8 and data["input"] == str(adrenal_npz) and data["metrics"]["n"] == 8
    written = result.write(tmp_path / "lib")
    expected = ["metrics.json", "predictions.csv", "predictions.json",
                *[f"explain/val_{i}.{ext}" for i in range(8) for ext in ("nii.gz", "png")]]
    assert sorted(p.relative_to(tmp_path / "lib").as_posix() for p in written) == sorted(expected)
    assert all(p.is_file() for p in written)
    assert main(["predict", str(adrenal_model), str(adrenal_npz), str(tmp_path / "cli"), "--split", "val",
                 "--uncertainty", "tta", "--samples", "2", "--quiet"]) == 0
    cli = sorted(p.relative_to(tmp_path / "cli").as_posix() for p in (tmp_path / "cli").rglob("*") if p.is_file())
    assert cli == sorted(expected)
    for name in ("predictions.csv", "predictions.json", "metrics.json"):
        assert (tmp_path / "lib" / name).read_text() == (tmp_path / "cli" / name).read_text(), name


def test_resume_continues_the_iteration_count(adrenal_model, adrenal_npz, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(adrenal_model, out)
    metrics = train(adrenal_npz, out, _options(iterations=5, resume=True))
    assert metrics["iterations"] == 5
    assert json.loads((out / "fold_0" / "metrics.json").read_text())["iterations"] == 5


def test_same_seed_same_weights(adrenal_model, adrenal_npz, tmp_path):
    train(adrenal_npz, tmp_path / "again", _options())
    a = torch.load(adrenal_model / "fold_0" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "again" / "fold_0" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_folds_give_an_ensemble(adrenal_model, adrenal_npz, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(adrenal_model, out)
    train(adrenal_npz, out, _options(fold=1))
    model = load(out)
    assert model.folds == ["fold_0", "fold_1"] and len(model.temperatures) == 2
    inputs = open_prediction_inputs(adrenal_npz, split="val")
    preds = predict_samples(model, inputs, explain="none")
    assert all(p.uncertainty_method == "ensemble" and p.n_samples == 2 for p in preds)
    assert all(p.saliency is None for p in preds)
    for p in preds:  # reported probabilities = mean of the folds' calibrated probabilities
        folds = np.array(list(p.details["fold_probabilities"].values()))
        np.testing.assert_allclose(folds.mean(axis=0), p.probabilities, atol=1e-9)
    assert max(p.mutual_information for p in preds) > 0
    with pytest.raises(InvalidParameterError, match="ensemble needs several folds"):
        predict_samples(load(out, folds=[1]), inputs, uncertainty="ensemble", explain="none")
    with pytest.raises(InvalidParameterError, match="no dropout"):
        predict_samples(model, inputs, uncertainty="mc_dropout", explain="none")


def test_changing_the_network_of_trained_folds_is_refused(adrenal_model, adrenal_npz, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(adrenal_model, out)
    with pytest.raises(InvalidParameterError, match="already trained folds"):
        train(adrenal_npz, out, _options(fold=1, overrides=(("model_width", 16),)))
    with pytest.raises(InvalidParameterError, match="in-memory limit"):
        train(adrenal_npz, tmp_path / "big", _options(max_data_gb=1e-6))
    assert not (tmp_path / "big").exists()  # refused before anything was written


def test_busi_csv_2d_mc_dropout_and_occlusion(tmp_path):
    root = require_data("breast_ultrasound_busi")
    rows, patient = ["path,label,patient"], {}  # two images per "patient": a patient's images stay in one fold
    for cls in ("benign", "malignant", "normal"):
        for i, p in enumerate(sorted((root / cls).glob("*.png"))[:10]):
            rows.append(f'"{p}",{cls},{cls}{i // 2}')
            patient[str(p)] = f"{cls}{i // 2}"
    table = tmp_path / "busi30.csv"
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "busi"
    metrics = train(table, out, TrainOptions(
        fold=0, n_folds=2, iterations=2, seed=1, deterministic=True,
        overrides=(("input_size", [64, 64]), ("model_width", 8), ("batch_size", 8), ("dropout", 0.2))))
    assert metrics["task"] == "multiclass" and metrics["n_train"] + metrics["n_val"] == 30
    assert len(metrics["validation"]["confusion_matrix"]) == 3 and metrics["autocast_bf16"] is True
    splits = json.loads((out / "splits.json").read_text())
    assert splits["grouped_by"] == "the CSV group column"
    val_patients = [{patient[s] for s in f["val"]} for f in splits["folds"]]
    assert not val_patients[0] & val_patients[1]
    model = load(out)
    images = [read(root / "benign" / "benign (1).png"), read(root / "normal" / "normal (1).png")]
    preds = predict_samples(model, images, uncertainty="auto", n_samples=5, explain="occlusion")
    for p in preds:
        assert p.uncertainty_method == "mc_dropout" and p.n_samples == 5
        assert p.probabilities.shape == (3,) and p.probabilities.sum() == pytest.approx(1.0, abs=1e-6)
        assert p.saliency.shape == (64, 64) and p.saliency_on_input().shape == images[0].spatial_shape[1:]
    written = write_predictions(preds, tmp_path / "pred", images=images)
    assert sorted(f.name for f in (written / "explain").iterdir()) == ["0.nii.gz", "0.png", "1.nii.gz", "1.png"]
    assert read(written / "explain" / "0.nii.gz").spatial_shape == images[0].spatial_shape


def test_load_classifier_refuses_other_folders(tmp_path):
    (tmp_path / "seg").mkdir()
    (tmp_path / "seg" / "plan.json").write_text(json.dumps({"schema_version": 1, "task": "segment",
                                                            "patch_size": [32, 32]}))
    with pytest.raises(ImageReadError, match="not a classification model"):
        load(tmp_path / "seg")
    with pytest.raises(ImageReadError, match="not a model folder"):
        load(tmp_path)


def test_grouped_stratified_splits_and_multilabel_metrics():
    ids = [f"p{i // 2}_{i % 2}" for i in range(20)]  # 10 patients, 2 images each
    labels = np.array([0] * 12 + [1] * 8)
    groups = {s: s.split("_")[0] for s in ids}
    folds = make_classification_splits(ids, labels, 2, 0, groups=groups)
    for f in folds:
        assert not {groups[s] for s in f["val"]} & {groups[s] for s in f["train"]}
        assert 0 < sum(labels[ids.index(s)] for s in f["val"]) < len(f["val"])
    assert folds == make_classification_splits(ids, labels, 2, 0, groups=groups)
    with pytest.raises(InvalidParameterError, match="bad number of folds"):
        make_classification_splits(ids, labels, 11, 0, groups=groups)
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    m = validation_metrics(y, np.array([[3.0, -3.0], [-3.0, 3.0], [3.0, 3.0], [-3.0, -3.0]]), task="multilabel",
                           class_names=("a", "b"), temperature=2.0)
    assert m["accuracy"] == 1.0 and m["auc_macro"] == 1.0 and m["confusion_matrix"]["a"] == [[2, 0], [0, 2]]
    assert m["ece_after"] > m["ece_before"]  # softening right answers hurts calibration here


def test_fold_all_with_separate_validation_data(adrenal_npz, tmp_path):
    metrics = train(adrenal_npz, tmp_path / "m", _options(fold="all", iterations=2,
                                                                         val_data=adrenal_npz))
    assert metrics["fold"] == "fold_all" and metrics["n_train"] == 24 and metrics["n_val"] == 8
    assert "separate validation data" in metrics["calibration_set"]
    assert json.loads((tmp_path / "m" / "fold_all" / "calibration.json").read_text())["fitted"]
    assert not (tmp_path / "m" / "splits.json").exists()
    bare = train(adrenal_npz, tmp_path / "bare", _options(fold="all", iterations=1))
    assert "validation" not in bare and bare["temperature"] == 1.0
    assert load(tmp_path / "bare").temperatures == [1.0]


def test_wall_clock_decides_when_no_iteration_count_is_given(adrenal_npz, tmp_path):
    # The plan's iteration count is an estimate from an assumed speed; without --iterations the clock stops the run.
    opts = _options(iterations=None, minutes=0.03, deterministic=False)
    metrics = train(adrenal_npz, tmp_path / "clock", opts)
    assert metrics["budget"].startswith("wall clock (0.03 min")
    assert metrics["stop_reason"] == "time budget of 0.03 min reached"
    # An explicit count is a budget of its own (and a deterministic run ignores the clock).
    counted = train(adrenal_npz, tmp_path / "count", _options(iterations=2))
    assert counted["budget"] == "2 iterations" and counted["iterations"] == 2


@pytest.mark.parametrize("name", ["resnet18_25d", "resnet18_acs", "slice_lstm", "densenet121", "mobilenetv3_small"])
def test_3d_model_family_trains_and_predicts_on_real_volumes(name, adrenal_npz, tmp_path):
    # 2.5D (slices as channels), ACS convolutions, the per-slice CNN + bidirectional LSTM, DenseNet and MobileNet
    # through the same command path: planned, trained, calibrated, then every prediction carries a map.
    out = tmp_path / name
    metrics = train(adrenal_npz, out, _options(iterations=2, overrides=TINY_3D + (("model", name),)))
    assert metrics["iterations"] == 2 and 0.0 <= metrics["validation"]["accuracy"] <= 1.0
    model = load(out)
    preds = predict_samples(model, open_prediction_inputs(adrenal_npz, split="val"), uncertainty="tta", n_samples=2)
    assert len(preds) == 8 and all(abs(p.probabilities.sum() - 1) < 1e-5 for p in preds)
    assert all(p.saliency is not None and p.saliency.shape == (16, 16, 16) for p in preds)


def test_transfer_from_our_own_shipped_model(adrenal_npz, tmp_path):
    from medimg.zoo import ZOO

    if not ZOO["adrenalmnist3d"].available:
        pytest.skip("shipped AdrenalMNIST3D model missing")
    opts = _options(iterations=1, overrides=(("input_size", [16, 16, 16]), ("batch_size", 4)),
                    init_from="adrenalmnist3d")
    metrics = train(adrenal_npz, tmp_path / "tl", opts)
    assert metrics["init_from"] == {"model": "adrenalmnist3d/fold_0", "fraction_loaded": 1.0, "kept_fresh": []}
    plan = json.loads((tmp_path / "tl" / "plan.json").read_text())
    assert (plan["model"], plan["model_width"], plan["stem"]) == ("resnet18", 16, "small")  # taken from it
    # a segmentation model, or a 3D model for 2D data, is refused before anything is written
    with pytest.raises(InvalidParameterError, match="not a classification model"):
        train(adrenal_npz, tmp_path / "bad", _options(init_from="hippocampus"))
    with pytest.raises(InvalidParameterError, match="the network does not match|does not match the plan"):
        train(adrenal_npz, tmp_path / "bad", _options(init_from="adrenalmnist3d",
                                                                     overrides=TINY_3D + (("model", "vgg16"),)))
    assert not (tmp_path / "bad").exists()
