"""Tests for `medimg preprocess` (real CT from ../shared/data, tiny phantoms written to tmp_path)."""

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.cli.main import main
from medimg.io.sitk_bridge import to_sitk
from medimg.testing import label_phantom, one_line_error, phantom, require_data

CT = ("ct_mr_samples_totalsegmentator", "tests", "reference_files", "example_ct_sm.nii.gz")


def _one_line_error(capsys):
    return one_line_error(capsys.readouterr().err)

@pytest.fixture()
def phantom_file(tmp_path):
    path = tmp_path / "in.nii.gz"
    sitk.WriteImage(to_sitk(phantom()), str(path))
    return path


def test_window_resample_normalize_on_real_ct(tmp_path, capsys):
    src = require_data(*CT)
    out = tmp_path / "out.nii.gz"
    code = main(["preprocess", str(src), str(out), "--modality", "CT", "--window", "lung", "--resample", "6,6,6",
                 "--normalize", "zscore", "--quiet"])
    assert code == 0, capsys.readouterr().err
    res = sitk.ReadImage(str(out))
    assert res.GetSpacing() == pytest.approx((6.0, 6.0, 6.0))
    assert res.GetSize() == (61, 50, 15)
    arr = sitk.GetArrayFromImage(res)
    assert arr.dtype == np.float32
    assert abs(float(arr.mean())) < 1e-3 and abs(float(arr.std()) - 1) < 1e-3
    src_img = sitk.ReadImage(str(src))
    centre_in = src_img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in src_img.GetSize()])
    centre_out = res.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in res.GetSize()])
    np.testing.assert_allclose(centre_in, centre_out, atol=1e-3)


def test_many_steps_in_fixed_order(phantom_file, tmp_path, capsys):
    out = tmp_path / "out.nii.gz"
    code = main(["preprocess", str(phantom_file), str(out), "--normalize", "minmax", "--window", "40,400",
                 "--orient", "RAS", "--median", "1", "--gaussian", "0.5", "--diffusion", "2", "--nlm", "--clahe",
                 "--crop-foreground", "--crop-margin", "2", "--modality", "CT"])
    assert code == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "orient, crop-foreground, median, gaussian, nlm, diffusion, window, clahe, normalize" in captured.out
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert arr.min() == pytest.approx(0) and arr.max() == pytest.approx(1)


def test_label_map_resampled_with_nearest(tmp_path, capsys):
    src = tmp_path / "lab.nii.gz"
    sitk.WriteImage(to_sitk(label_phantom()), str(src))
    out = tmp_path / "out.nii.gz"
    assert main(["preprocess", str(src), str(out), "--label", "--resample", "1", "-q"]) == 0
    assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(out))))) <= {0, 1, 2}
    assert main(["preprocess", str(src), str(tmp_path / "x.nii.gz"), "--label", "--gaussian", "1"]) == 2
    assert "--gaussian" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--window", "notapreset"),
        ("--window", "40,0"),
        ("--resample", "2,a,2"),
        ("--resample", "2,2,2,2"),
        ("--normalize", "l2"),
        ("--median", "one"),
        ("--diffusion", "0"),
        ("--orient", "XYZ"),
        ("--gaussian", "-1"),
        ("--modality", "CAT"),
    ],
)
def test_bad_option_exits_2_with_one_line(phantom_file, tmp_path, capsys, option, value):
    out = tmp_path / "out.nii.gz"
    assert main(["preprocess", str(phantom_file), str(out), option, value]) == 2
    assert option in _one_line_error(capsys)
    assert not out.exists()


def test_hu_preset_needs_ct(tmp_path, capsys, phantom_file):
    out = tmp_path / "out.nii.gz"
    assert main(["preprocess", str(phantom_file), str(out), "--window", "brain"]) == 2
    err = _one_line_error(capsys)
    assert "preset" in err and "--modality CT" in err
    assert main(["preprocess", str(phantom_file), str(out), "--window", "brain", "--modality", "MR"]) == 2
    _one_line_error(capsys)
    assert not out.exists()
