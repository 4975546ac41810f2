"""`medimg train classify` and `medimg predict` with a classification model, end to end on real data (a small
AdrenalMNIST3D subset resized to 16^3, BUSI images), and every bad input ending in one line and exit code 2 with
nothing written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medimg.cli.main import main
from medimg.core.image import Image
from medimg.io import write
from medimg.testing import one_line_error, require_data

TINY = ["--set", "input_size=[16,16,16]", "--set", "model_width=8", "--set", "batch_size=4"]


@pytest.fixture(scope="module")
def adrenal_npz(tmp_path_factory) -> Path:
    """24 train (16 + 8) and 8 val (4 + 4) samples of AdrenalMNIST3D 64^3, as a MedMNIST file."""
    src = require_data("adrenalmnist3d", "adrenalmnist3d_64_trainval.npz")
    with np.load(src) as z:
        pick = {s: np.concatenate([np.flatnonzero(z[f"{s}_labels"][:, 0] == c)[:n] for c, n in enumerate(sizes)])
                for s, sizes in (("train", (16, 8)), ("val", (4, 4)))}
        arrays = {f"{s}_{k}": z[f"{s}_{k}"][idx] for s, idx in pick.items() for k in ("images", "labels")}
    path = tmp_path_factory.mktemp("adrenal") / "adrenal_small.npz"
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(scope="module")
def model_dir(adrenal_npz, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "adrenal"
    assert main(["train", "classify", str(adrenal_npz), "-o", str(out), "--split", "train", "--folds", "2",
                 "--iterations", "2", "--seed", "3", "--quiet", *TINY]) == 0
    return out


def _one_line_error(capsys, *words: str) -> str:
    return one_line_error(capsys.readouterr().err, *words)

def test_train_classify_prints_validation_and_writes_the_folder(adrenal_npz, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", "classify", str(adrenal_npz), "-o", str(out), "--split", "train", "--folds", "2",
                 "--fold", "1", "--iterations", "2", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "trained fold_1: 2 iterations" in printed and "temperature" in printed and "optimistic" in printed
    calib = json.loads((out / "fold_1" / "calibration.json").read_text())
    assert calib["fitted"] and calib["temperature"] > 0
    assert json.loads((out / "plan.json").read_text())["seed"] == 0


def test_predict_npz_split_and_single_file(model_dir, adrenal_npz, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", str(model_dir), str(adrenal_npz), str(out), "--uncertainty", "tta", "--samples", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len([line for line in printed if line.startswith("val_")]) == 8 and printed[-1].startswith("wrote")
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and list(rows[0])[:6] == ["id", "prob_0", "prob_1", "pred", "entropy", "mutual_information"]
    assert all(abs(float(r["prob_0"]) + float(r["prob_1"]) - 1) < 1e-5 for r in rows)
    assert len(list((out / "explain").glob("*.png"))) == 8 and len(list((out / "explain").glob("*.nii.gz"))) == 8
    # one volume as NIfTI: OUT is a folder with the same files, the map on the volume's grid
    with np.load(adrenal_npz) as z:
        volume = z["val_images"][0]
    nifti = tmp_path / "case 1.nii.gz"
    write(Image.from_array(volume.astype(np.int16), spacing=(0.8, 0.8, 1.5)), nifti)
    single = tmp_path / "single"
    assert main(["predict", str(model_dir), str(nifti), str(single), "--explain", "gradcam++", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    with open(single / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["case 1.nii.gz"] and "label" not in rows[0]
    saliency = nib.load(single / "explain" / "case_1.nii.gz")
    assert saliency.shape == (64, 64, 64) and np.allclose(saliency.header.get_zooms(), (0.8, 0.8, 1.5))
    assert (single / "explain" / "case_1.png").stat().st_size > 0


def test_resume_from_the_command_line(model_dir, adrenal_npz, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(model_dir, out)
    assert main(["train", "classify", str(adrenal_npz), "-o", str(out), "--split", "train", "--iterations", "4",
                 "--resume", "--quiet"]) == 0
    assert json.loads((out / "fold_0" / "metrics.json").read_text())["iterations"] == 4


def _busi_png(path: Path) -> Path:
    src = require_data("breast_ultrasound_busi", "benign", "benign (1).png")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, path)
    return path


@pytest.mark.parametrize("case", ["unknown_layout", "missing_csv_row", "mixed_2d_3d", "wrong_dims", "channels",
                                  "ensemble_one_fold", "mc_dropout_no_dropout", "segmentation_option",
                                  "output_exists"])
def test_predict_bad_inputs_one_line_exit_2_nothing_written(case, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    extra: list[str] = []
    if case == "unknown_layout":
        src = tmp_path / "notes.txt"
        src.write_text("not an image")
        words = ("unknown input layout",)
    elif case == "missing_csv_row":
        src = tmp_path / "list.csv"
        src.write_text("path\nmissing.nii.gz\n")
        words = ("row 1", "missing file")
    elif case == "mixed_2d_3d":
        src = tmp_path / "mixed"
        _busi_png(src / "a.png")
        write(Image.from_array(np.zeros((4, 8, 8), np.int16)), src / "b.nii.gz")
        words = ("mixed 2D and 3D",)
    elif case == "wrong_dims":
        src = _busi_png(tmp_path / "us.png")
        words = ("3D", "dimensionality")
    elif case == "channels":
        src = tmp_path / "five.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 5), np.float32), np.eye(4)), src)
        words = ("channel",)
    elif case == "ensemble_one_fold":
        src, extra, words = tmp_path / "v.nii.gz", ["--uncertainty", "ensemble"], ("several folds",)
    elif case == "mc_dropout_no_dropout":
        src, extra, words = tmp_path / "v.nii.gz", ["--uncertainty", "mc_dropout"], ("no dropout",)
    elif case == "segmentation_option":
        src, extra, words = tmp_path / "v.nii.gz", ["--probabilities", str(tmp_path / "p.nii.gz")], ("segmentation",)
    else:
        src, words = tmp_path / "v.nii.gz", ("not empty",)
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    if src.name == "v.nii.gz":
        write(Image.from_array(np.zeros((16, 16, 16), np.int16)), src)
    assert main(["predict", str(model_dir), str(src), str(out), *extra]) == 2
    _one_line_error(capsys, *words)
    if case == "output_exists":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()
    assert not list(tmp_path.glob(".out*"))


def test_train_bad_inputs_one_line_exit_2_nothing_written(tmp_path, capsys):
    one = tmp_path / "one_class"
    _busi_png(one / "benign" / "a.png")
    _busi_png(one / "benign" / "b.png")
    assert main(["train", "classify", str(one), "-o", str(tmp_path / "m1"), "--iterations", "1"]) == 2
    _one_line_error(capsys, "one class")
    table = tmp_path / "t.csv"
    table.write_text(f"path,label\n{_busi_png(tmp_path / 'x.png')},a\nnope.png,b\n")
    assert main(["train", "classify", str(table), "-o", str(tmp_path / "m2"), "--iterations", "1"]) == 2
    _one_line_error(capsys, "row 2", "missing file")
    seg = tmp_path / "seg_model"
    seg.mkdir()
    (seg / "plan.json").write_text(json.dumps({"schema_version": 1, "task": "segment", "patch_size": [8, 8]}))
    two = tmp_path / "two"
    for cls in ("a", "b"):
        for n in range(2):
            _busi_png(two / cls / f"{n}.png")
    assert main(["train", "classify", str(two), "-o", str(seg), "--iterations", "1"]) == 2
    _one_line_error(capsys, "segmentation")
    assert sorted(p.name for p in seg.iterdir()) == ["plan.json"]
    assert main(["train", "classify", str(two), "-o", str(tmp_path / "m3"), "--cascade", "fcm"]) == 2
    _one_line_error(capsys, "--cascade", "segment")
    assert main(["train", "segment", str(two), "-o", str(tmp_path / "m4"), "--val", str(two)]) == 2
    _one_line_error(capsys, "--val", "classify")
    for name in ("m1", "m2", "m3", "m4"):
        assert not (tmp_path / name).exists(), name


def test_flat_folder_of_2d_images_with_a_2d_model(tmp_path, capsys):
    root = require_data("breast_ultrasound_busi")
    data = tmp_path / "busi"
    for cls in ("benign", "malignant", "normal"):
        (data / cls).mkdir(parents=True)
        for p in sorted((root / cls).glob("*.png"))[:4]:
            shutil.copy(p, data / cls / p.name)
    model = tmp_path / "busi_model"
    assert main(["train", "classify", str(data), "-o", str(model), "--folds", "2", "--iterations", "1", "--quiet",
                 "--set", "input_size=[32,32]", "--set", "model_width=4", "--set", "batch_size=4"]) == 0
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("benign (1).png", "benign (1)_mask.png"):
        PILImage.open(root / "benign" / "benign (1).png").save(flat / name)
    out = tmp_path / "pred"
    assert main(["predict", str(model), str(flat), str(out), "--quiet"]) == 0
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["benign (1).png"]  # the mask file is not a sample
    assert [r for r in rows[0] if r.startswith("prob_")] == ["prob_benign", "prob_malignant", "prob_normal"]
    assert sorted(p.name for p in (out / "explain").iterdir()) == ["benign_1.nii.gz", "benign_1.png"]


def test_verify_classification_datasets(adrenal_npz, tmp_path, capsys):
    # A MedMNIST file and a folder of class folders are recognised without --task; a truncated PNG is named.
    assert main(["verify", str(adrenal_npz), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "24 of 24 samples checked, 0 problems" in out and "class counts 0 16, 1 8" in out
    busi = require_data("breast_ultrasound_busi")
    root = tmp_path / "us"
    for cls in ("benign", "malignant"):
        (root / cls).mkdir(parents=True)
        for src in sorted((busi / cls).glob("*.png"))[:3]:
            shutil.copy(src, root / cls / src.name)
    bad = root / "malignant" / "broken.png"
    bad.write_bytes((busi / "benign" / "benign (1).png").read_bytes()[:200])
    assert main(["verify", str(root)]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 problem" in err


def test_dicom_series_as_3d_inputs_train_and_predict(tmp_path, capsys):
    # The MRI sequence-type set: each DICOM series folder of brain_mri_dicom/Study1 is one 3D sample (a CSV may
    # name series folders); a tiny model trains from the command and predicts a series folder directly.
    study = require_data("brain_mri_dicom", "Study1")
    names = {"12-T1post-05670": "t1", "34909-T1prereg-84610": "t1", "36459-FLAIRreg-76244": "other",
             "37916-T2reg-88910": "other"}
    table = tmp_path / "series.csv"
    table.write_text("path,label\n" + "".join(f"{study / k},{v}\n" for k, v in names.items()))
    out = tmp_path / "model"
    assert main(["train", "classify", str(table), "-o", str(out), "--folds", "2", "--iterations", "1",
                 "--deterministic", "--quiet", "--set", "input_size=[8,32,32]", "--set", "model_width=4",
                 "--set", "batch_size=2"]) == 0
    pred = tmp_path / "pred"
    assert main(["predict", str(out), str(study / "36459-FLAIRreg-76244"), str(pred), "--uncertainty", "tta",
                 "--samples", "2"]) == 0
    with open(pred / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["pred"] in ("t1", "other")
    assert abs(float(rows[0]["prob_t1"]) + float(rows[0]["prob_other"]) - 1) < 1e-5
    assert len(list((pred / "explain").glob("*.nii.gz"))) == 1
