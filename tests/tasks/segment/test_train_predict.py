"""Train a few iterations on real data (nnU-Net layout and 2D layout), then predict: the whole path works."""

import json
import shutil

import numpy as np
import pytest

from medimg.cli.main import main
from medimg.io import read
from medimg.testing import hippocampus_subset, require_data


@pytest.fixture(scope="module")
def hippo_dataset(tmp_path_factory):
    return hippocampus_subset(tmp_path_factory.mktemp("hippo"), [
        "hippocampus_001", "hippocampus_006", "hippocampus_011", "hippocampus_014", "hippocampus_015",
        "hippocampus_017"])


@pytest.fixture(scope="module")
def hippo_model(hippo_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "hippo"
    cache = tmp_path_factory.mktemp("cache")
    assert main(["train", "segment", str(hippo_dataset), "-o", str(out), "--fold", "0", "--folds", "3",
                 "--iterations", "3", "--cache", str(cache), "--quiet", "--seed", "1"]) == 0
    return out


def test_training_writes_a_self_describing_model_folder(hippo_model):
    for name in ("plan.json", "fingerprint.json", "splits.json", "fold_0/model.pt", "fold_0/metrics.json",
                 "fold_0/training_curve.png", "fold_0/checkpoint.pt"):
        assert (hippo_model / name).exists(), name
    metrics = json.loads((hippo_model / "fold_0" / "metrics.json").read_text())
    assert metrics["iterations"] == 3 and metrics["n_val"] == 2 and metrics["n_train"] == 4
    assert len(metrics["validation"]["dice_per_class"]) == 2
    splits = json.loads((hippo_model / "splits.json").read_text())
    val = [c for f in splits["folds"] for c in f["val"]]
    assert sorted(val) == sorted(set(val)) and len(val) == 6  # every case validated exactly once


def test_resume_continues_the_iteration_count(hippo_dataset, hippo_model, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(hippo_model, out)
    assert main(["train", "segment", str(hippo_dataset), "-o", str(out), "--fold", "0", "--iterations", "5",
                 "--resume", "--quiet", "--cache", str(tmp_path / "c")]) == 0
    assert json.loads((out / "fold_0" / "metrics.json").read_text())["iterations"] == 5


def test_predict_file_and_folder_keep_the_input_grid(hippo_dataset, hippo_model, tmp_path, capsys):
    case = hippo_dataset / "imagesTr" / "hippocampus_001_0000.nii.gz"
    out = tmp_path / "pred.nii.gz"
    assert main(["predict", str(hippo_model), str(case), str(out), "--quiet", "--probabilities",
                 str(tmp_path / "prob.nii.gz"), "--uncertainty", str(tmp_path / "ent.nii.gz")]) == 0
    img, lab = read(case), read(out, kind="label")
    img.check_same_grid(lab)
    assert set(np.unique(lab.voxels)) <= {0, 1, 2}
    prob = read(tmp_path / "prob.nii.gz")
    assert prob.n_channels == 3
    np.testing.assert_allclose(np.asarray(prob.voxels).sum(axis=0), 1.0, atol=1e-3)
    folder_out = tmp_path / "preds"
    assert main(["predict", str(hippo_model), str(hippo_dataset / "imagesTr"), str(folder_out), "--quiet"]) == 0
    assert sorted(p.name for p in folder_out.iterdir()) == sorted(
        f.name.replace("_0000", "") for f in (hippo_dataset / "imagesTr").iterdir())


def test_predict_bad_inputs(hippo_model, tmp_path, capsys):
    rgb = tmp_path / "x.png"
    from PIL import Image as P

    P.fromarray(np.zeros((20, 20, 3), np.uint8)).save(rgb)
    assert main(["predict", str(hippo_model), str(rgb), str(tmp_path / "o.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "channel" in err and "Traceback" not in err
    assert main(["predict", str(tmp_path / "nomodel"), str(rgb), str(tmp_path / "o.nii.gz")]) == 2
    assert "medimg models" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()


def test_train_refuses_a_bad_dataset(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "segment", str(tmp_path / "empty"), "-o", str(tmp_path / "m"), "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "empty" in err


def test_2d_layout_trains_and_predicts(tmp_path):
    src = require_data("fetal_head_hc18")
    root = tmp_path / "fh"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in ["000_HC", "002_HC", "005_HC", "006_HC"]:
        shutil.copy(src / "images" / f"{name}.png", root / "images")
        shutil.copy(src / "masks" / f"{name}_Mask.png", root / "masks")
    out = tmp_path / "model"
    assert main(["train", "segment", str(root), "-o", str(out), "--fold", "0", "--folds", "2", "--iterations", "2",
                 "--set", "batch_size=2", "--set", "patch_size=[128,128]", "--cache", str(tmp_path / "c"),
                 "--quiet"]) == 0
    pred = tmp_path / "p.png"
    assert main(["predict", str(out), str(root / "images" / "000_HC.png"), str(pred), "--quiet"]) == 0
    assert read(pred, kind="label").spatial_shape == read(root / "images" / "000_HC.png").spatial_shape
