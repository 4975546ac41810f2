"""The shipped hippocampus model through `medimg analyze` and `medimg models` (the sample case is held out)."""

import json
import shutil

import numpy as np
import pytest

from medimg.cli.main import main
from medimg.io import read
from medimg.pipelines import choose_pipeline, run_pipeline
from medimg.zoo import ZOO

SAMPLE = ZOO["hippocampus"].path.parent.parent / "data" / "hippocampus_sample"

pytestmark = pytest.mark.skipif(not ZOO["hippocampus"].available, reason="shipped hippocampus model missing")


def _dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_sample_is_recognised_and_segmented_well():
    image = read(SAMPLE / "hippocampus_001.nii.gz")
    truth = read(SAMPLE / "hippocampus_001_label.nii.gz", kind="label").voxels[0]
    assert choose_pipeline(image)[0] == "hippocampus"
    result = run_pipeline(image)
    pred = result.masks["hippocampus"].voxels[0]
    image.check_same_grid(result.masks["hippocampus"])
    for label in (1, 2):
        assert _dice(pred == label, truth == label) > 0.8, label
    vol = result.summary
    true_ml = {k: float((truth == k).sum()) * image.voxel_volume_mm3 / 1000 for k in (1, 2)}
    assert vol["anterior_volume_ml"] == pytest.approx(true_ml[1], rel=0.2)
    assert vol["posterior_volume_ml"] == pytest.approx(true_ml[2], rel=0.2)


def test_analyze_folder_of_crops(tmp_path, capsys):
    src = tmp_path / "crops"
    src.mkdir()
    for name in ("a_0000.nii.gz", "b_0000.nii.gz"):
        shutil.copy(SAMPLE / "hippocampus_001.nii.gz", src / name)
    out = tmp_path / "out"
    assert main(["analyze", str(src), "-o", str(out), "--quiet"]) == 0
    payload = json.loads((out / "measurements.json").read_text())
    assert payload["pipeline"] == "hippocampus"
    assert {r["case"] for r in payload["measurements"]} == {"a", "b"}
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["a_hippocampus.nii.gz", "b_hippocampus.nii.gz"]
    assert "anterior" in (out / "report.html").read_text()


def test_models_lists_the_shipped_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "hippocampus" in out and "ready" in out and "medimg train segment" in out


def test_predict_by_model_name(tmp_path):
    out = tmp_path / "p.nii.gz"
    assert main(["predict", "hippocampus", str(SAMPLE / "hippocampus_001.nii.gz"), str(out), "--quiet"]) == 0
    assert set(np.unique(read(out).voxels)) <= {0, 1, 2}


def test_predict_a_dicom_series(tmp_path):
    from medimg.testing import require_data

    series = require_data("brain_mri_dicom", "Study1", "13_HCropVolume")
    out = tmp_path / "hcrop_labels.nii.gz"
    assert main(["predict", "hippocampus", str(series), str(out), "--quiet"]) == 0
    image, labels = read(series), read(out, kind="label")
    image.check_same_grid(labels)  # the oblique DICOM geometry is kept exactly
    assert set(np.unique(labels.voxels)) <= {0, 1, 2}
