"""Cascade with classical methods (issue 4): a classical result of the first channel as extra input channels.

Trains 2 iterations on 4 real hippocampus cases with ``--cascade fcm``, predicts with the model folder, and checks
the plan field round trip (old plan files without the field still load, with the cascade off).
"""

import json

import numpy as np
import pytest

from medimg.cli.cmd_train import _overrides
from medimg.cli.main import main
from medimg.core.errors import InvalidParameterError
from medimg.io import read
from medimg.tasks.segment.data import SegDataset
from medimg.tasks.segment.plan import SegmentPlan
from medimg.tasks.segment.preprocess import cache_key, preprocess_case, preprocess_image
from medimg.testing import hippocampus_subset, require_data

CASES = ["hippocampus_001", "hippocampus_006", "hippocampus_011", "hippocampus_014"]


@pytest.fixture(scope="module")
def hippo4(tmp_path_factory):
    return hippocampus_subset(tmp_path_factory.mktemp("hippo4"), CASES)


@pytest.fixture(scope="module")
def fcm_model(hippo4, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "hippo_fcm"
    cache = tmp_path_factory.mktemp("cache")
    assert main(["train", "segment", str(hippo4), "-o", str(out), "--fold", "0", "--folds", "2",
                 "--iterations", "2", "--cascade", "fcm", "--cache", str(cache), "--quiet", "--seed", "1",
                 "--threads", "1"]) == 0
    return out


def test_training_with_fcm_cascade_writes_it_into_the_plan(fcm_model):
    data = json.loads((fcm_model / "plan.json").read_text())
    assert data["cascade"] == "fcm"
    assert data["in_channels"] == 1 and data["network"]["in_channels"] == 4
    plan = SegmentPlan.load(fcm_model / "plan.json")
    assert plan.cascade == "fcm" and plan.network_in_channels == 4
    assert json.loads((fcm_model / "fold_0" / "metrics.json").read_text())["iterations"] == 2


def test_predict_with_a_cascade_model_keeps_the_input_grid(hippo4, fcm_model, tmp_path):
    case = hippo4 / "imagesTr" / "hippocampus_001_0000.nii.gz"
    out = tmp_path / "pred.nii.gz"
    assert main(["predict", str(fcm_model), str(case), str(out), "--quiet"]) == 0
    img, lab = read(case), read(out, kind="label")
    img.check_same_grid(lab)
    assert lab.spatial_shape == img.spatial_shape
    assert set(np.unique(lab.voxels)) <= {0, 1, 2}


def test_preprocess_case_appends_memberships_and_otsu_mask(hippo4, fcm_model):
    plan = SegmentPlan.load(fcm_model / "plan.json")
    image, label = SegDataset.open(hippo4).load(CASES[0])
    img, lab, props = preprocess_case(image, label, plan)
    assert img.dtype == np.float32 and img.shape == (1 + 3,) + tuple(props["shape"]) and lab.shape == img.shape[1:]
    np.testing.assert_allclose(img[1:].sum(axis=0), 1.0, atol=1e-4)
    assert img[1:].min() >= 0.0 and img[1:].max() <= 1.0
    plain, _, _ = preprocess_case(image, label, plan.replace(cascade="none"))
    np.testing.assert_array_equal(img[:1], plain)  # the normalised image comes first, unchanged
    arr, grid = preprocess_image(image, plan)  # inference goes through the same preprocessing
    np.testing.assert_allclose(arr, img, atol=1e-6)
    assert grid.spatial_shape == img.shape[1:]

    otsu_plan = plan.replace(cascade="otsu")
    assert otsu_plan.network["in_channels"] == 2
    mask = preprocess_case(image, None, otsu_plan)[0][1]
    assert set(np.unique(mask)) == {0.0, 1.0}


def test_old_plan_json_without_the_field_loads_with_cascade_off(fcm_model, tmp_path):
    data = json.loads((fcm_model / "plan.json").read_text())
    del data["cascade"]
    data["network"]["in_channels"] = data["in_channels"]
    old = tmp_path / "plan.json"
    old.write_text(json.dumps(data))
    plan = SegmentPlan.load(old)
    assert plan.cascade == "none" and plan.network_in_channels == plan.in_channels == 1
    assert "cascade" not in json.loads(plan.to_json())  # written back exactly as before the option existed
    fcm = plan.replace(cascade="fcm")
    assert fcm.network["in_channels"] == 4 and fcm.replace(cascade="none") == plan


def test_cache_key_changes_only_with_a_cascade(hippo4, fcm_model):
    plan = SegmentPlan.load(fcm_model / "plan.json").replace(cascade="none")
    ds = SegDataset.open(hippo4)
    keys = {c: cache_key(plan.replace(cascade=c), ds) for c in ("none", "fcm", "otsu")}
    assert len(set(keys.values())) == 3
    assert cache_key(plan.replace(cascade="fcm").replace(cascade="none"), ds) == keys["none"]


def test_cascade_validation_and_set_override(fcm_model):
    plan = SegmentPlan.load(fcm_model / "plan.json")
    with pytest.raises(InvalidParameterError, match="cascade"):
        plan.replace(cascade="kmeans")
    with pytest.raises(InvalidParameterError, match="in_channels"):
        plan.replace(**{"network.in_channels": 1})
    overrides = dict(_overrides(["cascade=otsu"]))  # `medimg train segment ... --set cascade=otsu`
    assert overrides == {"cascade": "otsu"}
    assert plan.replace(**overrides).network["in_channels"] == 2


def test_verify_lists_every_problem(tmp_path, capsys):
    """`medimg verify` reports each broken case of a dataset; `train` refuses it in one line."""
    import json as _json
    import shutil as _shutil

    import nibabel as nib
    import numpy as np

    from medimg.cli.main import main

    src = require_data("hippocampus")
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for c in ("hippocampus_001", "hippocampus_006", "hippocampus_011"):
        _shutil.copy(src / "imagesTr" / f"{c}_0000.nii.gz", root / "imagesTr")
        _shutil.copy(src / "labelsTr" / f"{c}.nii.gz", root / "labelsTr")
    meta = _json.loads((src / "dataset.json").read_text())
    meta["numTraining"] = 3
    meta["channel_names"] = {"0": "MRI", "1": "MRI copy"}
    for c in ("hippocampus_001", "hippocampus_006"):  # hippocampus_011 lacks its second channel file
        _shutil.copy(src / "imagesTr" / f"{c}_0000.nii.gz", root / "imagesTr" / f"{c}_0001.nii.gz")
    (root / "dataset.json").write_text(_json.dumps(meta))
    bad = nib.load(root / "labelsTr" / "hippocampus_006.nii.gz")
    data = np.asarray(bad.dataobj).copy()
    data[0, 0, 0] = 7  # a label value dataset.json does not declare
    nib.save(nib.Nifti1Image(data, bad.affine), root / "labelsTr" / "hippocampus_006.nii.gz")
    assert main(["verify", str(root)]) == 2
    err = capsys.readouterr().err
    assert "hippocampus_006" in err and "hippocampus_011" in err and "PROBLEM" in err
    assert main(["train", "segment", str(root), "-o", str(tmp_path / "m"), "--iterations", "1"]) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "medimg verify" in line
