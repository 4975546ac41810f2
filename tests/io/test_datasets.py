"""nnU-Net-style folder datasets: real hippocampus data, synthetic v1/v2 layouts, error cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medimg.core import GeometryMismatchError, ImageReadError, InvalidParameterError, Kind
from medimg.io.datasets import NnUNetDataset
from medimg.io.nifti import read_nifti, write_nifti
from medimg.testing import label_phantom, phantom, require_data

SHAPE = (4, 6, 7)


def _make_v2(root, cases=("case_a", "case_b"), channels=2, ending=".nii.gz"):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, case in enumerate(cases):
        for c in range(channels):
            write_nifti(phantom(SHAPE, seed=10 * i + c), root / "imagesTr" / f"{case}_{c:04d}{ending}")
        write_nifti(label_phantom(SHAPE, seed=10 * i), root / "labelsTr" / f"{case}{ending}")
    info = {
        "channel_names": {str(c): f"ch{c}" for c in range(channels)},
        "labels": {"background": 0, "shell": 1, "core": 2},
        "numTraining": len(cases),
        "file_ending": ending,
    }
    (root / "dataset.json").write_text(json.dumps(info))
    return root


@pytest.mark.realdata
def test_hippocampus_real():
    root = require_data("hippocampus")
    ds = NnUNetDataset(root)
    assert len(ds) == 208
    assert ds.cases == sorted(ds.cases) and "hippocampus_001" in ds
    assert ds.channel_names == {0: "MRI"}
    assert ds.labels == {"background": 0, "anterior": 1, "posterior": 2}
    for case in ds.cases[:3]:
        image, label = ds.load(case)
        assert image.n_channels == 1 and label.kind == Kind.LABEL
        image.check_same_grid(label)
        assert set(np.unique(label.voxels)) == {0, 1, 2}  # every hippocampus case holds both structures
        ref = read_nifti(root / "imagesTr" / f"{case}_0000.nii.gz")
        np.testing.assert_array_equal(image.voxels, ref.voxels)
        np.testing.assert_array_equal(label.voxels, read_nifti(root / "labelsTr" / f"{case}.nii.gz").voxels)
        assert image.metadata["case_id"] == case
        assert image.metadata["channel_names"] == ["MRI"]


def test_v2_multichannel_stacked(tmp_path):
    ds = NnUNetDataset(_make_v2(tmp_path / "ds"))
    assert ds.cases == ["case_a", "case_b"]
    image, label = ds.load("case_b")
    assert image.shape == (2,) + SHAPE
    np.testing.assert_array_equal(image.voxels[1], phantom(SHAPE, seed=11).voxels[0])
    np.testing.assert_array_equal(label.voxels, label_phantom(SHAPE, seed=10).voxels)
    assert image.geometry.is_close(phantom(SHAPE).geometry, atol_mm=1e-4)
    assert image.metadata["channel_names"] == ["ch0", "ch1"]
    assert label.kind == Kind.LABEL and label.dtype == np.uint8


def test_v1_training_list(tmp_path):
    root = tmp_path / "v1"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    # MSD style: one 4D file per case holding both channels
    write_nifti(phantom(SHAPE, channels=2), root / "imagesTr" / "c1.nii.gz")
    write_nifti(label_phantom(SHAPE), root / "labelsTr" / "c1.nii.gz")
    info = {
        "modality": {"0": "T1", "1": "T2"},
        "labels": {"0": "background", "1": "shell", "2": "core"},
        "training": [{"image": "./imagesTr/c1.nii.gz", "label": "./labelsTr/c1.nii.gz"}],
    }
    (root / "dataset.json").write_text(json.dumps(info))
    ds = NnUNetDataset(root)
    assert ds.cases == ["c1"]
    assert ds.labels == {"background": 0, "shell": 1, "core": 2}
    image, _label = ds.load("c1")
    assert image.n_channels == 2


def test_missing_dataset_json(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(ImageReadError, match="dataset.json") as exc:
        NnUNetDataset(tmp_path)
    assert str(tmp_path / "dataset.json") in str(exc.value)


def test_invalid_dataset_json(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ImageReadError, match="unreadable dataset.json"):
        NnUNetDataset(tmp_path)


def test_missing_channel_file(tmp_path):
    root = _make_v2(tmp_path / "ds")
    missing = root / "imagesTr" / "case_a_0001.nii.gz"
    missing.unlink()
    ds = NnUNetDataset(root)
    with pytest.raises(ImageReadError, match="channel file is missing") as exc:
        ds.load("case_a")
    assert exc.value.path == str(missing)
    ds.load("case_b")  # other cases still load


def test_missing_label(tmp_path):
    root = _make_v2(tmp_path / "ds")
    missing = root / "labelsTr" / "case_b.nii.gz"
    missing.unlink()
    with pytest.raises(ImageReadError, match="label file is missing") as exc:
        NnUNetDataset(root).load("case_b")
    assert exc.value.path == str(missing)


def test_label_off_grid(tmp_path):
    root = _make_v2(tmp_path / "ds")
    path = root / "labelsTr" / "case_a.nii.gz"
    write_nifti(label_phantom(SHAPE, origin=(0.0, 0.0, 0.0)), path)
    with pytest.raises(GeometryMismatchError, match="origin") as exc:
        NnUNetDataset(root).load("case_a")
    assert exc.value.path == str(path)


def test_label_wrong_size(tmp_path):
    root = _make_v2(tmp_path / "ds")
    write_nifti(label_phantom((4, 6, 8)), root / "labelsTr" / "case_a.nii.gz")
    with pytest.raises(GeometryMismatchError, match="size"):
        NnUNetDataset(root).load("case_a")


def test_unknown_case(tmp_path):
    ds = NnUNetDataset(_make_v2(tmp_path / "ds", cases=("x",), channels=1))
    with pytest.raises(InvalidParameterError, match="unknown case"):
        ds.load("nope")


def test_no_cases(tmp_path):
    root = _make_v2(tmp_path / "ds", cases=(), channels=1)
    with pytest.raises(ImageReadError, match="no training cases"):
        NnUNetDataset(root)


def test_other_file_ending(tmp_path):
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    from medimg.io.itk_formats import write_itk

    write_itk(phantom(SHAPE), root / "imagesTr" / "k_0000.nrrd")
    write_itk(label_phantom(SHAPE), root / "labelsTr" / "k.nrrd")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0},
                                                   "file_ending": ".nrrd"}))
    image, label = NnUNetDataset(root).load("k")
    assert image.shape == (1,) + SHAPE and label.kind == Kind.LABEL
