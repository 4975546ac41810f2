"""Classification datasets: class folders, CSV files (2D files and DICOM series), MedMNIST archives, verification,
and the error raised for each kind of broken input."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.tasks.classify import (
    ClassificationVerifyReport,
    open_classification_dataset,
    verify_classification_dataset,
)
from medimg.testing import require_data

BUSI_COUNTS = {"benign": 348, "malignant": 172, "normal": 108}  # this copy: 628 images, masks already removed


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)
    return path


def _busi_files(root: Path, cls: str, n: int) -> list[Path]:
    """The first ``n`` images of a BUSI class (this copy lacks some numbers, so never guess names)."""
    return sorted((root / cls).glob("*.png"))[:n]


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def busi_root() -> Path:
    return require_data("breast_ultrasound_busi")


@pytest.fixture(scope="module")
def busi(busi_root):
    return open_classification_dataset(busi_root)


@pytest.fixture(scope="module")
def adrenal_path() -> Path:
    return require_data("adrenalmnist3d", "adrenalmnist3d_64_trainval.npz")


@pytest.fixture(scope="module")
def dicom_study() -> Path:
    return require_data("brain_mri_dicom", "Study1")


# ---- BUSI: class folders -------------------------------------------------------------------------------------------
def test_busi_class_folders(busi, busi_root):
    assert busi.layout == "folder" and busi.task == "multiclass" and busi.dims == 2 and busi.channels == 1
    assert busi.class_names == ("benign", "malignant", "normal")
    assert busi.class_counts == BUSI_COUNTS and len(busi) == sum(BUSI_COUNTS.values()) == 628
    assert busi.labels.dtype == np.int64 and busi.labels.shape == (628,) and not busi.labels.flags.writeable
    on_disk = {p.name for p in busi_root.glob("*/*.png")}
    assert len(on_disk) == 628 and not [n for n in on_disk if "_mask" in n]
    assert not [i for i in busi.ids if "_mask" in i] and busi.excluded == ()
    for i in (0, 400, 627):  # the label is the folder the file lies in
        assert busi.ids[i].split("/")[0] == busi.class_names[busi.labels[i]] == busi.paths[i].parent.name
    assert round(busi.imbalance_ratio, 3) == round(348 / 108, 3)
    x = busi.load("malignant/malignant (1).png")
    raw = np.asarray(PILImage.open(busi_root / "malignant" / "malignant (1).png"))
    assert x.shape == (1, 256, 256) and x.dtype == np.float32 and np.array_equal(x[0], raw)
    assert busi.spacing(0) is None and busi.header(0).shape == (1, 256, 256)


def test_busi_verify(busi):
    report = verify_classification_dataset(busi)
    assert isinstance(report, ClassificationVerifyReport)
    assert report.ok, report.to_text()
    assert report.n_checked == 628 and report.class_counts == BUSI_COUNTS
    assert report.channels == {1: 628} and report.dtypes == {"uint8": 628}
    assert set(report.shapes.values()) == {(1, 256, 256)}
    assert not [w for w in report.warnings if "labelled differently" in w[1]]  # the conflicting pair was removed
    assert "benign 348" in report.to_text()
    report.raise_if_bad()


def test_mask_files_are_skipped(tmp_path, busi_root):
    root = tmp_path / "busi_small"
    for cls in ("benign", "malignant"):
        (root / cls).mkdir(parents=True)
        for src in _busi_files(busi_root, cls, 2):  # "<cls> (1).png", "<cls> (10[0]).png"
            shutil.copy(src, root / cls / src.name)
            _png(root / cls / f"{src.stem}_mask.png", np.zeros((256, 256), np.uint8))
    _png(root / "benign" / "benign (1)_MASK_1.png", np.zeros((256, 256), np.uint8))
    ds = open_classification_dataset(root)
    assert len(ds) == 4 and ds.task == "binary" and not [i for i in ds.ids if "mask" in i.lower()]
    assert len(ds.excluded) == 5 and all("_mask" in p.name.lower() for p in ds.excluded)
    assert verify_classification_dataset(ds).n_excluded == 5
    every = open_classification_dataset(root, exclude=())
    assert len(every) == 9
    other = open_classification_dataset(root, exclude=("(1)",))
    assert len(other) == 4 and not [i for i in other.ids if "(1)" in i]


# ---- MedMNIST --------------------------------------------------------------------------------------------------
def test_adrenalmnist3d(adrenal_path):
    ds = open_classification_dataset(adrenal_path)  # no split: train + val (the test split is held out)
    assert ds.layout == "medmnist" and ds.task == "binary" and ds.dims == 3 and ds.channels == 1
    assert len(ds) == 1188 + 98 and set(ds.splits) == {"train", "val"}
    assert ds.ids[0] == "train_0" and ds.ids[-1] == "val_97" and ds.class_names == ("0", "1")
    train = open_classification_dataset(adrenal_path, split="train", class_names=("normal", "hyperplasia"))
    val = open_classification_dataset(adrenal_path, split="val")
    assert len(train) == 1188 and len(val) == 98
    assert train.class_counts == {"normal": 929, "hyperplasia": 259} and val.class_counts == {"0": 76, "1": 22}
    x = val.load("val_3")
    assert x.shape == (1, 64, 64, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255
    assert np.array_equal(x, ds.load("val_3")) and val.spacing(0) is None
    assert val.header(5).shape == (64, 64, 64)
    report = verify_classification_dataset(val)
    assert report.ok and report.class_counts == {"0": 76, "1": 22} and set(report.shapes.values()) == {(64, 64, 64)}
    fold = ds.subset(np.arange(1180, 1200))
    assert len(fold) == 20 and fold.ids[7] == "train_1187" and fold.ids[8] == "val_0"
    assert np.array_equal(fold.load(10), ds.load(1190))
    with pytest.raises(InvalidParameterError, match="split.*test"):
        open_classification_dataset(adrenal_path, split="test")


def test_medmnist_2d_rgb_and_multilabel(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "toymnist.npz"
    np.savez_compressed(path, train_images=rng.integers(0, 255, (6, 28, 28, 3), dtype=np.uint8),
                        train_labels=np.array([[0], [1], [2], [0], [1], [2]], np.uint8),
                        test_images=rng.integers(0, 255, (2, 28, 28, 3), dtype=np.uint8),
                        test_labels=np.array([[0], [1]], np.uint8))
    ds = open_classification_dataset(path)
    assert ds.task == "multiclass" and ds.dims == 2 and ds.channels == 3 and len(ds) == 6
    x = ds.load(1)
    assert x.shape == (3, 28, 28)
    with np.load(path) as z:
        assert np.array_equal(x, np.moveaxis(z["train_images"][1], -1, 0))
    assert open_classification_dataset(path, split="test").ids == ("test_0", "test_1")
    multi = tmp_path / "chest.npz"
    np.savez_compressed(multi, train_images=np.zeros((3, 28, 28), np.uint8),
                        train_labels=np.array([[0, 1], [1, 1], [0, 0]], np.uint8))
    ml = open_classification_dataset(multi, class_names=("effusion", "nodule"))
    assert ml.task == "multilabel" and ml.labels.shape == (3, 2) and ml.class_counts == {"effusion": 1, "nodule": 2}
    assert ml.load(0).shape == (1, 28, 28)
    bad = tmp_path / "bad.npz"
    np.savez_compressed(bad, train_images=np.zeros((2, 28, 28), np.uint8),
                        train_labels=np.array([[0, 2], [1, 1]], np.uint8))
    with pytest.raises(ImageReadError, match="not 0 or 1.*row 0"):
        open_classification_dataset(bad)


# ---- CSV ------------------------------------------------------------------------------------------------------
def test_csv_of_busi_files(tmp_path, busi_root):
    local = tmp_path / "img"
    local.mkdir()
    shutil.copy(busi_root / "normal" / "normal (1).png", local / "n1.png")
    b1, b2 = _busi_files(busi_root, "benign", 2)
    rows = [f"{b1},benign", f"{busi_root / 'malignant' / 'malignant (1).png'},malignant", "img/n1.png,normal",
            f"{b2},benign"]
    ds = open_classification_dataset(_csv(tmp_path / "busi.csv", "path,label", rows))
    assert ds.layout == "csv" and ds.task == "multiclass" and ds.dims == 2 and len(ds) == 4
    assert ds.class_counts == {"benign": 2, "malignant": 1, "normal": 1}
    assert ds.ids[2] == "img/n1.png" and ds.paths[2] == local / "n1.png"  # relative to the CSV's folder
    raw = np.asarray(PILImage.open(busi_root / "normal" / "normal (1).png"))
    assert np.array_equal(ds.load("img/n1.png")[0], raw)
    # integer labels with names, a split column and a group column
    rows = [f"{f},{k % 2},{'train' if k < 4 else 'test'},p{k // 2}"
            for k, f in enumerate(_busi_files(busi_root, "benign", 5), start=1)]
    csv_path = _csv(tmp_path / "int.csv", "image,label,split,patient", rows)
    ds = open_classification_dataset(csv_path, class_names=("benign", "malignant"))
    assert ds.task == "binary" and len(ds) == 3 and ds.labels.tolist() == [1, 0, 1]
    assert ds.class_counts == {"benign": 1, "malignant": 2} and ds.groups == ("p0", "p1", "p1")
    assert ds.splits == ("train",) * 3
    assert len(open_classification_dataset(csv_path, split=("train", "test"))) == 5
    assert open_classification_dataset(csv_path).class_names == ("0", "1")


def test_csv_multilabel(tmp_path, busi_root):
    files = _busi_files(busi_root, "benign", 3)
    rows = [f"{files[0]},1,0,x", f"{files[1]},0,1,y", f"{files[2]},1,1,z"]
    csv_path = _csv(tmp_path / "ml.csv", "path,calcification,shadow,id", rows)
    ds = open_classification_dataset(csv_path)  # no label column: every other non-reserved column
    assert ds.task == "multilabel" and ds.class_names == ("calcification", "shadow") and ds.ids == ("x", "y", "z")
    assert ds.labels.dtype == np.uint8 and ds.labels.tolist() == [[1, 0], [0, 1], [1, 1]]
    assert ds.class_counts == {"calcification": 2, "shadow": 2}
    one = open_classification_dataset(csv_path, label_columns=["shadow"])
    assert one.task == "binary" and one.class_names == ("0", "1")
    with pytest.raises(InvalidParameterError, match="label_columns.*cyst"):
        open_classification_dataset(csv_path, label_columns=["shadow", "cyst"])


def test_csv_and_folders_of_dicom_series(tmp_path, dicom_study):
    series = sorted(p for p in dicom_study.iterdir() if p.is_dir() and "-" in p.name)  # the 4 full-brain series
    rows = [f"{s},{s.name.split('-')[1]}" for s in series]
    ds = open_classification_dataset(_csv(tmp_path / "series.csv", "path,label", rows))
    assert ds.dims == 3 and ds.task == "multiclass" and len(ds) == 4
    assert ds.class_names == ("FLAIRreg", "T1post", "T1prereg", "T2reg")
    assert ds.header(0).shape == (22, 512, 512)
    x = ds.load(ds.class_names.index("T2reg"))
    assert x.shape == (1, 22, 512, 512) and x.dtype == np.float32
    assert ds.spacing(0) == pytest.approx((0.4297, 0.4297, 6.5), abs=1e-3)
    # class sub-folders holding series folders (one folder = one sample)
    root = tmp_path / "by_class"
    (root / "t1").mkdir(parents=True)
    (root / "hippo").mkdir()
    (root / "t1" / "a").symlink_to(series[1], target_is_directory=True)
    (root / "hippo" / "crop").symlink_to(dicom_study / "13_HCropVolume", target_is_directory=True)
    folders = open_classification_dataset(root)
    assert folders.dims == 3 and folders.ids == ("hippo/crop", "t1/a") and folders.task == "binary"
    assert folders.load("hippo/crop").shape == (1, 32, 51, 35)


def test_16bit_float_and_rgb_files_keep_their_values(tmp_path):
    root = tmp_path / "mixed"
    deep = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500).astype(np.uint16)  # up to 59500
    _png(root / "a" / "deep.png", deep)
    floats = np.linspace(-3.5, 1e5, 12 * 10, dtype=np.float32).reshape(12, 10)
    (root / "b").mkdir()
    PILImage.fromarray(floats).save(root / "b" / "float.tif")
    ds = open_classification_dataset(root)
    assert ds.channels == 1 and np.array_equal(ds.load("a/deep.png")[0], deep.astype(np.float32))
    assert np.array_equal(ds.load("b/float.tif")[0], floats)
    rgb = np.zeros((12, 10, 3), np.uint8)
    rgb[..., 0] = 200
    _png(root / "b" / "colour.png", rgb)
    _png(root / "a" / "grey.png", np.full((12, 10), 7, np.uint8))
    both = open_classification_dataset(root)
    assert both.channels == 3  # grey and RGB mixed: grey repeated
    assert both.load("b/colour.png")[:, 0, 0].tolist() == [200, 0, 0]
    assert both.load("a/grey.png")[:, 0, 0].tolist() == [7, 7, 7]


# ---- broken inputs ------------------------------------------------------------------------------------------------
def test_images_in_root_or_empty_folder(tmp_path):
    root = tmp_path / "flat"
    _png(root / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageReadError, match=r"no class folders \(images lie directly") as exc:
        open_classification_dataset(root)
    assert str(root) in str(exc.value) and "Fix:" in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="no class folders.*no sub-folders and no image files"):
        open_classification_dataset(tmp_path / "empty")
    with pytest.raises(ImageReadError, match="dataset not found"):
        open_classification_dataset(tmp_path / "nowhere")
    with pytest.raises(ImageReadError, match="unknown dataset layout"):
        open_classification_dataset(_csv(tmp_path / "notes.txt", "hello", []))


def test_split_folders(tmp_path):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            _png(tmp_path / "s" / split / cls / "x.png", np.zeros((4, 4), np.uint8))
    ds = open_classification_dataset(tmp_path / "s")
    assert ds.ids == ("train/a/x.png", "train/b/x.png") and set(ds.splits) == {"train"}
    assert len(open_classification_dataset(tmp_path / "s", split=["train", "test"])) == 4
    with pytest.raises(InvalidParameterError, match="no such split folder.*val"):
        open_classification_dataset(tmp_path / "s", split="val")


def test_csv_row_with_missing_file(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    csv_path = _csv(tmp_path / "t.csv", "path,label", ["a.png,x", "missing/b.png,y"])
    with pytest.raises(ImageReadError) as exc:
        open_classification_dataset(csv_path)
    msg = str(exc.value)
    assert "row 2 (line 3) points to a missing file" in msg and str(tmp_path / "missing" / "b.png") in msg
    assert str(csv_path) in msg


def test_mixed_2d_and_3d(tmp_path, busi_root, dicom_study):
    rows = [f"{busi_root / 'benign' / 'benign (1).png'},a", f"{dicom_study / '13_HCropVolume'},b"]
    with pytest.raises(ImageReadError, match="mixed 2D and 3D inputs") as exc:
        open_classification_dataset(_csv(tmp_path / "mix.csv", "path,label", rows))
    assert "benign (1).png" in str(exc.value) and "13_HCropVolume" in str(exc.value)


def test_single_class(tmp_path):
    _png(tmp_path / "one" / "only" / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageReadError, match="only one class"):
        open_classification_dataset(tmp_path / "one")
    # samples to predict may all carry one known label
    assert open_classification_dataset(tmp_path / "one", single_class_ok=True).class_names == ("only",)
    _png(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "c.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageReadError, match="only one class.*'benign' in column 'label'"):
        open_classification_dataset(_csv(tmp_path / "s.csv", "path,label", ["b.png,benign", "c.png,benign"]))


def test_class_folder_without_images(tmp_path):
    _png(tmp_path / "d" / "a" / "x.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "d" / "b").mkdir()
    (tmp_path / "d" / "b" / "notes.txt").write_text("no images here")
    with pytest.raises(ImageReadError, match=r"class folder holds no images.*\.txt") as exc:
        open_classification_dataset(tmp_path / "d")
    assert str(tmp_path / "d" / "b") in str(exc.value)
    _png(tmp_path / "d" / "b" / "only_mask.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageReadError, match=r"1 files excluded by the patterns \[._mask.\]"):
        open_classification_dataset(tmp_path / "d")


def test_unreadable_file(tmp_path):
    _png(tmp_path / "u" / "a" / "x.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "u" / "b").mkdir()
    (tmp_path / "u" / "b" / "broken.png").write_bytes(b"<html>not an image</html>")
    with pytest.raises(ImageReadError, match="not a readable image file") as exc:
        open_classification_dataset(tmp_path / "u")
    assert str(tmp_path / "u" / "b" / "broken.png") in str(exc.value)
    # a file that passes the header probe but is truncated: found by verify, not at open
    good = tmp_path / "u" / "b" / "broken.png"
    _png(good, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    good.write_bytes(good.read_bytes()[:200])
    report = verify_classification_dataset(open_classification_dataset(tmp_path / "u"))
    assert not report.ok and "broken.png" in report.problems[0][1]
    with pytest.raises(InvalidParameterError, match="1 problem"):
        report.raise_if_bad()


def test_multilabel_values_must_be_binary(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    csv_path = _csv(tmp_path / "m.csv", "path,x,y", ["a.png,1,0", "a.png,2,1"])
    with pytest.raises(ImageReadError, match=re.escape("row 2 (line 3): multi-label value is not 0 or 1")) as exc:
        open_classification_dataset(csv_path)
    assert "parameter 'x'" in str(exc.value) and "'2'" in str(exc.value)


@pytest.mark.parametrize("value", ["", "NaN", "nan"])
def test_empty_or_nan_labels(tmp_path, value):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    csv_path = _csv(tmp_path / "n.csv", "path,label", ["a.png,cat", f"a.png,{value}"])
    with pytest.raises(ImageReadError, match=re.escape("row 2 (line 3) has an empty or NaN label")) as exc:
        open_classification_dataset(csv_path)
    assert "parameter 'label'" in str(exc.value)
    ml = _csv(tmp_path / "nm.csv", "path,x,y", ["a.png,1,0", f"a.png,{value},1"])
    with pytest.raises(ImageReadError, match="row 2 .* empty or NaN label"):
        open_classification_dataset(ml)


def test_bad_arguments(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    csv_path = _csv(tmp_path / "c.csv", "path,label", ["a.png,cat", "a.png,dog"])
    with pytest.raises(ImageReadError, match="duplicate sample"):
        open_classification_dataset(csv_path)
    csv_path = _csv(tmp_path / "c.csv", "id,path,label", ["1,a.png,cat", "2,a.png,dog"])
    ds = open_classification_dataset(csv_path)
    with pytest.raises(InvalidParameterError, match="unknown sample id"):
        ds.load("3")
    with pytest.raises(InvalidParameterError, match="out of range"):
        ds.load(2)
    with pytest.raises(InvalidParameterError, match="no 'split' column"):
        open_classification_dataset(csv_path, split="train")
    with pytest.raises(InvalidParameterError, match="not in class_names"):
        open_classification_dataset(csv_path, class_names=("cat", "bird"))
    with pytest.raises(ImageReadError, match="no path column"):
        open_classification_dataset(_csv(tmp_path / "p.csv", "file_name,label", ["a.png,cat"]))
    with pytest.raises(InvalidParameterError, match="CSV files only"):
        open_classification_dataset(tmp_path, label_columns=["x"])


def test_pickle_tsv_and_semicolons(tmp_path, adrenal_path):
    import pickle

    val = open_classification_dataset(adrenal_path, split="val")
    val.preload()
    again = pickle.loads(pickle.dumps(val.subset([0, 5])))  # data-loader workers started with "spawn"
    assert again.ids == ("val_0", "val_5") and np.array_equal(again.load(1), val.load(5))
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "b.png", np.ones((4, 4), np.uint8))
    tsv = tmp_path / "t.tsv"
    tsv.write_text("path\tlabel\tsplit\na.png\tx\tTrain\nb.png\ty\ttrain\n")
    assert open_classification_dataset(tsv, split="train").class_names == ("x", "y")  # split names: any case
    semi = _csv(tmp_path / "s.csv", "path;label", ["a.png;x", "b.png;y"])
    assert open_classification_dataset(semi).labels.tolist() == [0, 1]
    ml = _csv(tmp_path / "ml.csv", "path,x,y", ["a.png,1,1", "b.png,1,0"])
    assert open_classification_dataset(ml).imbalance_ratio == float("inf")  # x is never negative


def test_medmnist_nan_labels(tmp_path):
    path = tmp_path / "nan.npz"
    np.savez_compressed(path, train_images=np.zeros((3, 28, 28), np.uint8),
                        train_labels=np.array([[0.0], [np.nan], [1.0]]))
    with pytest.raises(ImageReadError, match="NaN or non-integer label in 'train_labels'.*row 1") as exc:
        open_classification_dataset(path)
    assert str(path) in str(exc.value)
