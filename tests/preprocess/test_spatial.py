"""Tests for medimg.preprocess.spatial: resample, resample_to, reorient, crop, crop_to_foreground, pad_to_shape."""

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.core import Image, InvalidParameterError, Kind
from medimg.io.sitk_bridge import from_sitk, to_sitk
from medimg.preprocess import crop, crop_to_foreground, pad_to_shape, reorient, resample, resample_to
from medimg.testing import label_phantom, phantom, require_data


def _centre(image):
    size = np.asarray(image.spatial_shape[::-1], float)
    return image.geometry.index_to_physical((size - 1) / 2)


def _extent_corner(image):
    """Physical position of the outer corner of voxel (0, 0, 0) (half a voxel before its centre)."""
    return image.geometry.index_to_physical([-0.5, -0.5, -0.5])


# ---- resample ---------------------------------------------------------------------------------------------------
def test_resample_to_spacing_keeps_centre_and_field_of_view():
    img = phantom()
    out = resample(img, spacing_mm=(1.6, 1.8, 5.0))
    assert out.spatial_shape == (6, 10, 12)
    assert out.geometry.spacing == pytest.approx((1.6, 1.8, 5.0))
    np.testing.assert_allclose(_centre(out), _centre(img), atol=1e-6)
    np.testing.assert_allclose(_extent_corner(out), _extent_corner(img), atol=1e-6)
    np.testing.assert_allclose(out.geometry.direction_matrix, img.geometry.direction_matrix)
    assert out.dtype == np.float32  # int16 interpolated linearly -> float32, values not rescaled
    assert out.history[-1].name == "resample" and len(out.history) == len(img.history) + 1


def test_resample_there_and_back_keeps_geometry():
    img = phantom()
    there = resample(img, spacing_mm=(1.6, 1.8, 5.0))
    back = resample(there, spacing_mm=img.geometry.spacing)
    assert back.spatial_shape == img.spatial_shape
    assert back.geometry.is_close(img.geometry), back.geometry.differences(img.geometry)
    back2 = resample(there, shape=img.spatial_shape)
    assert back2.geometry.is_close(img.geometry)
    back3 = resample_to(there, img)
    assert back3.geometry == img.geometry and back3.spatial_shape == img.spatial_shape


def test_resample_shape_keeps_centre_with_odd_sizes():
    img = phantom()
    out = resample(img, shape=(7, 13, 31), interpolation="bspline")
    assert out.spatial_shape == (7, 13, 31)
    np.testing.assert_allclose(_centre(out), _centre(img), atol=1e-6)
    np.testing.assert_allclose(_extent_corner(out), _extent_corner(img), atol=1e-6)


def test_resample_linear_matches_skimage_resize():
    from skimage.transform import resize

    img = phantom(dtype=np.float32, oblique=False)
    shape = (24, 30, 36)
    out = resample(img, shape=shape)
    ref = resize(img.voxels[0].astype(np.float64), shape, order=1, mode="edge", anti_aliasing=False,
                 preserve_range=True)
    np.testing.assert_allclose(out.voxels[0], ref, atol=1e-3)


def test_resample_nearest_matches_sitk_resample():
    img = phantom(dtype=np.float32)
    out = resample(img, spacing_mm=(1.6, 1.8, 5.0), interpolation="nearest")
    ref_grid = sitk.Image([12, 10, 6], sitk.sitkFloat32)
    ref_grid.SetSpacing(out.geometry.spacing)
    ref_grid.SetOrigin(out.geometry.origin)
    ref_grid.SetDirection(tuple(out.geometry.direction_matrix.ravel()))
    ref = sitk.Resample(to_sitk(img), ref_grid, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(out.voxels[0], sitk.GetArrayFromImage(ref))
    assert out.dtype == np.float32


def test_labels_resampled_keep_only_label_values():
    lab = label_phantom()
    for interp in (None, "nearest", "onehot_linear"):
        out = resample(lab, spacing_mm=(0.5, 0.7, 1.1), interpolation=interp)
        assert set(np.unique(out.voxels)) == {0, 1, 2}
        assert out.dtype == np.uint8 and out.kind == Kind.LABEL
    assert resample(lab, spacing_mm=1.0).history[-1].params["interpolation"] == "nearest"
    # label 2 touching background: averaging label values would put 1s on the border between them, and the
    # border must stay where it is (half-way between the voxel centres at x = 5 and 6 mm)
    arr = np.zeros((4, 8, 12), np.uint8)
    arr[:, :, 6:] = 2
    two = Image.from_array(arr, kind="label")
    for interp in (None, "nearest", "onehot_linear"):
        out = resample(two, spacing_mm=(0.4, 0.4, 0.4), interpolation=interp)
        assert set(np.unique(out.voxels)) == {0, 2}, interp
        x_mm = out.geometry.origin[0] + np.arange(out.voxels.shape[-1]) * 0.4
        assert np.abs(x_mm - 5.5).min() > 0.05  # no sample exactly half-way between the voxels at 5 and 6 mm
        np.testing.assert_array_equal(out.voxels[0, 0, 0] == 2, x_mm > 5.5)


def test_onehot_linear_close_to_nearest_on_labels():
    lab = label_phantom()
    a = resample(lab, spacing_mm=1.0, interpolation="nearest").voxels
    b = resample(lab, spacing_mm=1.0, interpolation="onehot_linear").voxels
    assert (a == b).mean() > 0.95


def test_label_interpolation_rules():
    with pytest.raises(InvalidParameterError) as info:
        resample(label_phantom(), spacing_mm=1.0, interpolation="linear")
    assert info.value.parameter == "interpolation"
    with pytest.raises(InvalidParameterError) as info:
        resample(phantom(), spacing_mm=1.0, interpolation="onehot_linear")
    assert info.value.parameter == "interpolation"
    with pytest.raises(InvalidParameterError) as info:
        resample(phantom(), spacing_mm=1.0, interpolation="cubic")
    assert info.value.parameter == "interpolation"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({}, "spacing_mm"),
        ({"spacing_mm": 1.0, "shape": (2, 2, 2)}, "shape"),
        ({"spacing_mm": (1.0, -1.0, 1.0)}, "spacing_mm"),
        ({"spacing_mm": (1.0, 1.0, 1.0, 1.0)}, "spacing_mm"),
        ({"shape": (0, 4, 4)}, "shape"),
        ({"shape": (2.5, 4, 4)}, "shape"),
    ],
)
def test_resample_invalid_parameters(kwargs, parameter):
    with pytest.raises(InvalidParameterError) as info:
        resample(phantom(), **kwargs)
    assert info.value.parameter == parameter


def test_resample_2d_and_multichannel():
    img2d = phantom((1, 20, 24), oblique=False, channels=2)
    out = resample(img2d, spacing_mm=(0.4, 0.45))
    assert out.shape == (2, 1, 40, 48) and out.is_2d
    assert out.geometry.spacing[2] == img2d.geometry.spacing[2]
    np.testing.assert_allclose(_centre(out), _centre(img2d), atol=1e-6)
    assert out.voxels[1].mean() > out.voxels[0].mean()  # channel 1 is channel 0 + 5


def test_resample_real_ct_keeps_centre_and_hu(tmp_path):
    path = require_data("ct_mr_samples_totalsegmentator", "tests", "reference_files", "example_ct.nii.gz")
    ct = from_sitk(sitk.ReadImage(str(path)), metadata={"modality": "CT"})
    out = resample(ct, spacing_mm=(6.0, 6.0, 6.0))
    assert out.spatial_shape == (56, 50, 61)
    np.testing.assert_allclose(_centre(out), _centre(ct), atol=1e-6)
    assert out.metadata["modality"] == "CT"
    v, o = ct.voxels.astype(float), out.voxels
    assert v.min() <= o.min() and o.max() <= v.max()  # HU stay HU: no rescaling
    assert abs(float(o.mean()) - float(v.mean())) < 15.0
    back = resample_to(out, ct)
    inside = v[0] > -900
    assert np.median(np.abs(back.voxels[0][inside] - v[0][inside])) < 60


def test_resample_to_with_other_grid_and_fill():
    img = phantom(dtype=np.float32)
    ref = pad_to_shape(img, (16, 24, 28))
    out = resample_to(img, ref)
    assert out.spatial_shape == (16, 24, 28) and out.geometry == ref.geometry
    np.testing.assert_allclose(out.voxels, ref.voxels, atol=1e-3)
    with pytest.raises(InvalidParameterError) as info:
        resample_to(img, phantom((1, 20, 24)))
    assert info.value.parameter == "reference"


# ---- reorient ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["RAS", "LPS", "LAS", "RPI", "SAR", "IPL", "ASL"])
def test_reorient_matches_sitk_dicom_orient(code):
    img = phantom()
    out = reorient(img, code)
    ref = from_sitk(sitk.DICOMOrient(to_sitk(img), code))
    np.testing.assert_array_equal(out.voxels, ref.voxels)
    assert out.geometry.is_close(ref.geometry, atol_mm=1e-6), out.geometry.differences(ref.geometry)
    assert out.geometry.orientation == code


def test_reorient_round_trip_is_exact_and_keeps_physical_points():
    img = phantom()
    ras = reorient(img, "RAS")
    back = reorient(ras, "LPS")
    np.testing.assert_array_equal(back.voxels, img.voxels)
    assert back.geometry.is_close(img.geometry, atol_mm=1e-9)
    # voxel (z, y, x) = (3, 5, 7) of the input sits at the same physical point in the reoriented image
    z, y, x = 3, 5, 7
    p = img.geometry.index_to_physical([x, y, z])
    ijk = ras.geometry.physical_to_index(p)
    np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-9)
    i, j, k = np.rint(ijk).astype(int)
    assert ras.voxels[0, k, j, i] == img.voxels[0, z, y, x]
    assert [op.name for op in back.history] == ["reorient", "reorient"]


def test_reorient_invalid_code():
    for bad in ("LPA", "XYZ", "LP", 3):
        with pytest.raises(InvalidParameterError) as info:
            reorient(phantom(), bad)
        assert info.value.parameter == "orientation"


# ---- crop / pad -------------------------------------------------------------------------------------------------
def test_crop_updates_origin():
    img = phantom()
    out = crop(img, (2, 3, 4), (10, 15, 20))
    assert out.spatial_shape == (8, 12, 16)
    np.testing.assert_array_equal(out.voxels, img.voxels[:, 2:10, 3:15, 4:20])
    np.testing.assert_allclose(out.geometry.index_to_physical([0, 0, 0]), img.geometry.index_to_physical([4, 3, 2]))
    with pytest.raises(InvalidParameterError):
        crop(img, (0, 0, 0), (13, 5, 5))
    with pytest.raises(InvalidParameterError):
        crop(img, (5, 0, 0), (5, 5, 5))


def test_crop_to_foreground_with_threshold_and_margin():
    img = phantom()
    out = crop_to_foreground(img, threshold=-500)
    params = out.history[-1].params
    start, stop = params["start"], params["stop"]
    fg = np.argwhere(img.voxels[0] > -500)
    assert tuple(start) == tuple(fg.min(axis=0)) and tuple(stop) == tuple(fg.max(axis=0) + 1)
    p = img.geometry.index_to_physical(list(start)[::-1])
    np.testing.assert_allclose(out.geometry.origin, p)
    margin = crop_to_foreground(img, threshold=200, margin_mm=2.0)
    m_start = margin.history[-1].params["start"]
    core = crop_to_foreground(img, threshold=200).history[-1].params["start"]
    # 2 mm margin = ceil(2 / spacing) voxels: z 2.5 mm -> 1, y 0.9 -> 3, x 0.8 -> 3
    assert tuple(np.subtract(core, m_start)) == (1, 3, 3)


def test_crop_to_foreground_defaults_and_mask():
    lab = label_phantom()
    out = crop_to_foreground(lab)
    assert out.kind == Kind.LABEL and out.voxels.any()
    assert out.history[-1].params["foreground"] == "label != 0"
    img = phantom()
    by_mask = crop_to_foreground(img, mask=lab)
    assert by_mask.spatial_shape == out.spatial_shape
    otsu = crop_to_foreground(img)
    assert otsu.history[-1].params["foreground"].startswith("otsu")
    with pytest.raises(InvalidParameterError) as info:
        crop_to_foreground(img, threshold=1e6)
    assert info.value.parameter == "threshold"
    with pytest.raises(InvalidParameterError) as info:
        crop_to_foreground(img, threshold=0, margin_mm=-1)
    assert info.value.parameter == "margin_mm"


def test_pad_to_shape_center_and_end():
    img = phantom()
    out = pad_to_shape(img, (15, 20, 30))
    assert out.spatial_shape == (15, 20, 30)
    np.testing.assert_array_equal(out.voxels[:, 1:13, :, 3:27], img.voxels)
    assert out.voxels[0, 0, 0, 0] == img.voxels.min()
    np.testing.assert_allclose(out.geometry.index_to_physical([3, 0, 1]), img.geometry.origin, atol=1e-9)
    end = pad_to_shape(img, (15, 20, 30), where="end", value=-1024)
    assert end.geometry.origin == img.geometry.origin and end.voxels[0, -1, -1, -1] == -1024
    edge = pad_to_shape(img, (14, 22, 26), mode="edge")
    np.testing.assert_array_equal(edge.voxels[:, 0, 1:21, 1:25], img.voxels[:, 0])
    lab = pad_to_shape(label_phantom(), (14, 22, 26))
    assert lab.voxels[0, 0, 0, 0] == 0


def test_pad_crop_round_trip_and_invalid():
    img = phantom()
    padded = pad_to_shape(img, (16, 24, 28))
    before = padded.history[-1].params["before"]
    back = crop(padded, before, tuple(b + n for b, n in zip(before, img.spatial_shape)))
    np.testing.assert_array_equal(back.voxels, img.voxels)
    assert back.geometry.is_close(img.geometry)
    for kwargs, parameter in (({"shape": (4, 4, 4)}, "shape"), ({"shape": (16, 24, 28), "mode": "wrap"}, "mode"),
                              ({"shape": (16, 24, 28), "where": "start"}, "where")):
        with pytest.raises(InvalidParameterError) as info:
            pad_to_shape(img, **kwargs)
        assert info.value.parameter == parameter


def test_inputs_never_modified():
    img = phantom()
    before = img.voxels.copy()
    geo = img.geometry
    for out in (resample(img, spacing_mm=2.0), reorient(img, "RAS"), crop_to_foreground(img, threshold=0),
                pad_to_shape(img, (14, 22, 26)), crop(img, (0, 0, 0), (2, 2, 2))):
        assert len(out.history) == len(img.history) + 1
    np.testing.assert_array_equal(img.voxels, before)
    assert img.geometry == geo and img.history == ()
    assert isinstance(img, Image)
