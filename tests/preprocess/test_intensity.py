"""Tests for medimg.preprocess.intensity: window and normalize (checked against SimpleITK)."""

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.core import Image, InvalidParameterError, Kind
from medimg.io.sitk_bridge import from_sitk, to_sitk
from medimg.preprocess import WINDOW_PRESETS, normalize, window
from medimg.testing import label_phantom, phantom, require_data


@pytest.fixture(scope="module")
def ct():
    path = require_data("ct_mr_samples_totalsegmentator", "tests", "reference_files", "example_ct.nii.gz")
    return from_sitk(sitk.ReadImage(str(path)), metadata={"modality": "CT"})


def test_presets_are_standard_values():
    assert WINDOW_PRESETS["brain"] == (40, 80)
    assert WINDOW_PRESETS["lung"] == (-600, 1500)
    assert WINDOW_PRESETS["bone"] == (400, 1800)
    assert WINDOW_PRESETS["mediastinum"] == (50, 350)
    assert {"subdural", "abdomen", "liver"} <= set(WINDOW_PRESETS)


@pytest.mark.parametrize("preset", sorted(WINDOW_PRESETS))
def test_window_matches_sitk_intensity_windowing_on_real_ct(ct, preset):
    level, width = WINDOW_PRESETS[preset]
    out = window(ct, preset=preset)
    assert out.dtype == np.float32 and out.shape == ct.shape
    assert out.geometry == ct.geometry
    ref = sitk.IntensityWindowing(sitk.Cast(to_sitk(ct), sitk.sitkFloat64), level - width / 2, level + width / 2,
                                  0.0, 1.0)
    np.testing.assert_allclose(out.voxels[0], sitk.GetArrayFromImage(ref), atol=1e-6)
    assert out.history[-1].name == "window" and out.history[-1].params["preset"] == preset


def test_window_hu_output_clips_in_hu(ct):
    out = window(ct, level=40, width=400, output="hu")
    ref = sitk.Clamp(sitk.Cast(to_sitk(ct), sitk.sitkFloat32), sitk.sitkFloat32, -160.0, 240.0)
    np.testing.assert_array_equal(out.voxels[0], sitk.GetArrayFromImage(ref))
    assert out.dtype == np.float32


def test_window_unit_values_on_phantom():
    img = phantom()
    out = window(img, level=0, width=200)
    expected = np.clip((img.voxels.astype(float) + 100) / 200, 0, 1)
    np.testing.assert_allclose(out.voxels, expected, atol=1e-6)
    assert len(out.history) == len(img.history) + 1
    assert img.voxels.dtype == np.int16  # input untouched


def test_window_preset_needs_ct_modality():
    mr = phantom().with_metadata(modality="MR")
    with pytest.raises(InvalidParameterError, match="preset"):
        window(mr, preset="brain")
    unknown = Image(voxels=phantom().voxels)
    with pytest.raises(InvalidParameterError, match="modality"):
        window(unknown, preset="lung")
    assert window(mr, preset="brain", force=True).history[-1].params["force"] is True
    # explicit level/width are fine on any modality
    assert window(mr, level=100, width=50).dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"preset": "nope"}, "preset"),
        ({"level": 40}, "width"),
        ({"width": 40}, "level"),
        ({"level": 40, "width": 0}, "width"),
        ({"level": 40, "width": 80, "output": "percent"}, "output"),
        ({"preset": "brain", "level": 3}, "preset"),
    ],
)
def test_window_invalid_parameters(kwargs, parameter):
    with pytest.raises(InvalidParameterError) as info:
        window(phantom(), **kwargs)
    assert info.value.parameter == parameter


def test_window_refuses_labels_and_nan():
    with pytest.raises(InvalidParameterError, match="label"):
        window(label_phantom(), level=1, width=2)
    nan = Image.from_array(np.array([[0.0, np.nan]]), metadata={"modality": "CT"})
    with pytest.raises(InvalidParameterError, match="finite"):
        window(nan, preset="brain")


def test_zscore_matches_sitk_normalize():
    img = phantom(dtype=np.float32)
    out = normalize(img, method="zscore")
    ref = sitk.GetArrayFromImage(sitk.Normalize(to_sitk(img)))  # ITK uses the n-1 standard deviation
    n = img.voxels.size
    np.testing.assert_allclose(out.voxels[0] * np.sqrt((n - 1) / n), ref, atol=1e-4)
    assert out.dtype == np.float32
    assert abs(float(out.voxels.mean())) < 1e-5 and abs(float(out.voxels.std()) - 1) < 1e-4


@pytest.mark.parametrize("out_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_minmax_matches_sitk_rescale_intensity(out_range):
    img = phantom()
    out = normalize(img, method="minmax", out_range=out_range)
    ref = sitk.RescaleIntensity(sitk.Cast(to_sitk(img), sitk.sitkFloat64), *out_range)
    np.testing.assert_allclose(out.voxels[0], sitk.GetArrayFromImage(ref), atol=1e-6)


def test_percentile_normalization():
    img = phantom()
    out = normalize(img, method="percentile", percentiles=(1, 99), out_range=(-1, 1))
    lo, hi = np.percentile(img.voxels.astype(float), [1, 99])
    expected = (np.clip(img.voxels, lo, hi) - lo) / (hi - lo) * 2 - 1
    np.testing.assert_allclose(out.voxels, expected, atol=1e-5)
    assert out.voxels.min() == -1 and out.voxels.max() == 1


def test_normalize_with_mask_uses_inside_statistics():
    img = phantom()
    mask = label_phantom().voxels[0] > 0
    out = normalize(img, method="zscore", mask=mask)
    inside = out.voxels[0][mask]
    assert abs(float(inside.mean())) < 1e-4 and abs(float(inside.std()) - 1) < 1e-3
    # the same mask as an Image on the grid
    out2 = normalize(img, method="zscore", mask=label_phantom())
    np.testing.assert_array_equal(out.voxels, out2.voxels)


def test_normalize_per_channel():
    img = phantom(channels=2, dtype=np.float32)
    both = normalize(img, method="minmax", per_channel=True)
    assert both.voxels[1].max() == pytest.approx(1) and both.voxels[0].max() == pytest.approx(1)
    joint = normalize(img, method="minmax", per_channel=False)
    assert joint.voxels[0].max() < 1 and joint.voxels[1].max() == pytest.approx(1)


@pytest.mark.parametrize("method", ["zscore", "minmax", "percentile"])
def test_constant_image_gives_zeros_not_nan(method):
    img = Image.from_array(np.full((3, 4, 5), 7.0))
    out = normalize(img, method=method)
    assert np.all(out.voxels == 0)


def test_normalize_invalid():
    with pytest.raises(InvalidParameterError) as info:
        normalize(phantom(), method="l2")
    assert info.value.parameter == "method"
    with pytest.raises(InvalidParameterError) as info:
        normalize(phantom(), method="percentile", percentiles=(99, 1))
    assert info.value.parameter == "percentiles"
    with pytest.raises(InvalidParameterError) as info:
        normalize(phantom(), out_range=(1, 1))
    assert info.value.parameter == "out_range"
    with pytest.raises(InvalidParameterError) as info:
        normalize(phantom(), mask=np.zeros((12, 20, 24), bool))
    assert info.value.parameter == "mask"
    with pytest.raises(InvalidParameterError) as info:
        normalize(phantom(), mask=np.ones((3, 3, 3), bool))
    assert info.value.parameter == "mask"
    with pytest.raises(InvalidParameterError, match="finite"):
        normalize(Image.from_array(np.array([[1.0, np.nan]])))
    with pytest.raises(InvalidParameterError, match="label"):
        normalize(label_phantom())
    assert label_phantom().kind == Kind.LABEL
