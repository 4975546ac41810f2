"""SegDataset over both layouts, and verify_dataset on real and deliberately broken datasets."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.tasks.segment.data import SegDataset, verify_dataset
from medimg.testing import require_data


# ---- real data --------------------------------------------------------------------------------------------------
def test_hippocampus_opens_and_verifies():
    ds = SegDataset.open(require_data("hippocampus"))
    assert ds.layout == "nnunet" and ds.dims == 3 and len(ds.cases) == 208
    assert ds.channel_names == ["MRI"]
    assert ds.label_values == [0, 1, 2] and ds.class_names == ["background", "anterior", "posterior"]
    report = verify_dataset(ds)
    assert report.ok, report.to_text()
    assert report.n_checked == 208
    report.raise_if_bad()
    image, label = ds.load(ds.cases[0])
    assert image.spatial_shape == label.spatial_shape and label.kind == "label"


def test_nuclei_instance_maps_binarised_on_request():
    root = require_data("nuclei_dsb2018")
    ds = SegDataset.open(root, foreground_only=True)
    assert ds.layout == "2d" and ds.dims == 2 and len(ds.cases) == 534
    assert ds.channel_names == ["R", "G", "B"]  # a mix of grey and RGB files: grey ones are repeated
    assert ds.label_values == [0, 1]
    image, label = ds.load(ds.cases[0])
    assert image.n_channels == 3 and image.is_2d
    assert set(np.unique(label.voxels).tolist()) == {0, 1}
    raw = SegDataset.open(root)
    _, inst = raw.load(ds.cases[0])
    assert inst.voxels.max() > 1  # without the option the instance ids are kept
    report = verify_dataset(raw, max_cases=30)
    assert report.ok
    assert any("instance" in what for _, what, _ in report.warnings)


def test_fetal_head_masks_with_suffix_and_csv_spacing():
    root = require_data("fetal_head_hc18")
    ds = SegDataset.open(root)
    assert len(ds.cases) == 387 and not ds.unmatched_images and not ds.unmatched_masks
    assert "026_2HC" in ds.cases  # "<stem>_Mask.png" partners, including the "_2HC" repeats
    images, mask = ds.files("026_2HC")
    assert mask.name == "026_2HC_Mask.png"
    image, label = ds.load(ds.cases[0])
    assert ds.channel_names == ["grey"] and image.n_channels == 1
    assert set(np.unique(label.voxels).tolist()) == {0, 1}  # 0/255 RGB mask -> 0/1
    assert image.spacing[0] == pytest.approx(0.0691358041432)  # from pixel_size_and_HC.csv
    assert verify_dataset(ds, max_cases=5).ok


# ---- broken datasets --------------------------------------------------------------------------------------------
def _nnunet(root: Path, n: int = 3, *, labels=None) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    info = {"name": "toy", "channel_names": {"0": "CT", "1": "T2"},
            "labels": labels or {"background": 0, "organ": 1}, "file_ending": ".nii.gz", "numTraining": n}
    (root / "dataset.json").write_text(json.dumps(info))
    rng = np.random.default_rng(0)
    aff = np.diag([0.8, 0.8, 2.5, 1.0])
    for i in range(n):
        for c in range(2):
            arr = rng.normal(100, 20, (12, 10, 6)).astype(np.float32)
            nib.save(nib.Nifti1Image(arr, aff), root / "imagesTr" / f"case{i}_{c:04d}.nii.gz")
        lab = np.zeros((12, 10, 6), np.uint8)
        lab[3:8, 3:7, 2:4] = 1
        nib.save(nib.Nifti1Image(lab, aff), root / "labelsTr" / f"case{i}.nii.gz")
    return root


def test_clean_toy_dataset_is_ok(tmp_path):
    ds = SegDataset.open(_nnunet(tmp_path / "ds"))
    assert ds.channel_names == ["CT", "T2"]
    report = verify_dataset(ds)
    assert report.ok and report.shapes["case0"] == (6, 10, 12)


def test_label_value_not_in_dataset_json(tmp_path):
    root = _nnunet(tmp_path / "ds")
    lab = np.zeros((12, 10, 6), np.uint8)
    lab[1, 1, 1] = 7
    nib.save(nib.Nifti1Image(lab, np.diag([0.8, 0.8, 2.5, 1.0])), root / "labelsTr" / "case1.nii.gz")
    report = verify_dataset(SegDataset.open(root))
    assert not report.ok
    case, what, fix = report.problems[0]
    assert case == "case1" and "[7]" in what and "dataset.json" in fix
    with pytest.raises(InvalidParameterError, match=r"1 problem.*case1"):
        report.raise_if_bad()


def test_grid_mismatch_names_the_label_file(tmp_path):
    root = _nnunet(tmp_path / "ds")
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 5), np.uint8), np.diag([0.8, 0.8, 2.5, 1.0])),
             root / "labelsTr" / "case2.nii.gz")
    report = verify_dataset(SegDataset.open(root))
    assert [p[0] for p in report.problems] == ["case2"]
    assert "GeometryMismatchError" in report.problems[0][1] and "case2.nii.gz" in report.problems[0][1]


def test_missing_channel_file(tmp_path):
    root = _nnunet(tmp_path / "ds")
    (root / "imagesTr" / "case0_0001.nii.gz").unlink()
    report = verify_dataset(SegDataset.open(root))
    assert report.problems[0][0] == "case0" and "case0_0001.nii.gz" in report.problems[0][1]
    assert "missing" in report.problems[0][1]
    assert "case0" in report.to_text() and "PROBLEM" in report.to_text()


def test_nan_image_reported(tmp_path):
    root = _nnunet(tmp_path / "ds")
    arr = np.ones((12, 10, 6), np.float32)
    arr[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(arr, np.diag([0.8, 0.8, 2.5, 1.0])), root / "imagesTr" / "case1_0000.nii.gz")
    report = verify_dataset(SegDataset.open(root))
    assert report.problems[0][0] == "case1" and "non-finite" in report.problems[0][1]


def test_empty_label_is_a_warning(tmp_path):
    root = _nnunet(tmp_path / "ds")
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 6), np.uint8), np.diag([0.8, 0.8, 2.5, 1.0])),
             root / "labelsTr" / "case0.nii.gz")
    report = verify_dataset(SegDataset.open(root))
    assert report.ok and report.warnings[0][0] == "case0" and "empty" in report.warnings[0][1]


def test_empty_folders_are_refused_clearly(tmp_path):
    with pytest.raises(ImageReadError, match="not a segmentation dataset"):
        SegDataset.open(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ImageReadError, match="no image/mask pairs"):
        SegDataset.open(tmp_path)
    with pytest.raises(ImageReadError, match="not found"):
        SegDataset.open(tmp_path / "nope")


def test_2d_layout_pairs_reports_and_maps_255(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in ("a", "b", "c"):
        PILImage.fromarray(np.full((8, 9), 50, np.uint8)).save(tmp_path / "images" / f"{name}.png")
    mask = np.zeros((8, 9), np.uint8)
    mask[2:5, 3:6] = 255
    PILImage.fromarray(mask).save(tmp_path / "labels" / "a.png")
    PILImage.fromarray(mask).save(tmp_path / "labels" / "b_seg.png")
    PILImage.fromarray(mask[:7]).save(tmp_path / "labels" / "orphan.png")
    ds = SegDataset.open(tmp_path)
    assert ds.cases == ["a", "b"] and ds.label_values == [0, 1]
    _, label = ds.load("b")
    assert label.voxels.max() == 1
    report = verify_dataset(ds)
    assert not report.ok and report.problems[0][0] == "c" and "no mask" in report.problems[0][1]
    assert any("orphan" in w[1] for w in report.warnings)
