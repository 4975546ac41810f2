"""Tests for medimg.classical.morphology: radii in mm, components, statistics, distance priors."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medimg.classical.morphology import (
    binary_closing,
    binary_dilation,
    binary_erosion,
    binary_opening,
    component_stats,
    connected_components,
    fill_holes,
    keep_near,
    largest_component,
)
from medimg.classical.threshold import threshold
from medimg.core import GeometryMismatchError, Image, InvalidParameterError, Kind
from medimg.io import read
from medimg.io.sitk_bridge import to_sitk
from medimg.testing import label_phantom, oblique_direction, phantom, require_data

SPACING = (0.8, 0.9, 2.5)  # (sx, sy, sz) mm


def _mask(arr, spacing=SPACING, oblique=True):
    return Image.from_array(np.asarray(arr, np.uint8), spacing=spacing, origin=(-10.0, 5.0, 30.0),
                            direction=oblique_direction() if oblique else None, kind=Kind.LABEL)


@pytest.fixture(scope="module")
def body():
    """Binary mask of the phantom's object (shell + core), anisotropic and oblique."""
    return threshold(label_phantom((12, 20, 24), spacing=SPACING), lower=1)


def _extent(arr):
    """Half-extent (voxels) of a mask around the centre voxel, per axis (z, y, x)."""
    idx = np.argwhere(arr)
    return tuple(int(v) for v in (idx.max(axis=0) - idx.min(axis=0)) // 2)


# ---- radii in mm ----------------------------------------------------------------------------------------------
def test_dilation_of_one_voxel_honours_anisotropic_spacing():
    arr = np.zeros((9, 21, 21), np.uint8)
    arr[4, 10, 10] = 1
    out = binary_dilation(_mask(arr), radius_mm=2.6)
    # 2.6 mm is floor(2.6/2.5) = 1 slice in z, floor(2.6/0.9) = 2 rows in y, floor(2.6/0.8) = 3 columns in x
    assert _extent(out.array) == (1, 2, 3)
    params = out.history[-1].params
    assert params["radius_mm"] == [2.6, 2.6, 2.6]
    assert params["radius_vox"] == pytest.approx([2.6 / 0.8, 2.6 / 0.9, 2.6 / 2.5])
    # a per-axis radius (x, y, z) in mm
    assert _extent(binary_dilation(_mask(arr), radius_mm=(1.0, 4.0, 5.0)).array) == (2, 4, 1)


def test_dilation_equals_physical_distance_from_edt(body):
    for r in (1.0, 2.6, 5.0):
        out = binary_dilation(body, radius_mm=r).array > 0
        dist = ndimage.distance_transform_edt(body.array == 0, sampling=body.geometry.spacing_zyx)
        np.testing.assert_array_equal(out, dist <= r)


def test_erosion_opening_closing_match_scipy_with_the_same_ellipsoid(body):
    se = binary_dilation(_mask(np.pad([[[1]]], ((1, 1), (3, 3), (3, 3)))), radius_mm=2.6).array > 0
    arr = body.array > 0
    np.testing.assert_array_equal(binary_erosion(body, radius_mm=2.6).array > 0,
                                  ndimage.binary_erosion(arr, se, border_value=1))
    np.testing.assert_array_equal(binary_opening(body, radius_mm=2.6).array > 0,
                                  ndimage.binary_dilation(ndimage.binary_erosion(arr, se, border_value=1), se))
    padded = np.pad(arr, ((1, 1), (3, 3), (3, 3)))
    closed = ndimage.binary_erosion(ndimage.binary_dilation(padded, se), se, border_value=1)[1:-1, 3:-3, 3:-3]
    np.testing.assert_array_equal(binary_closing(body, radius_mm=2.6).array > 0, closed)


def test_opening_and_closing_are_ordered_and_keep_geometry(body):
    o = binary_opening(body, radius_mm=2.0)
    c = binary_closing(body, radius_mm=2.0)
    a = body.array > 0
    assert not np.any((o.array > 0) & ~a) and not np.any(a & ~(c.array > 0))
    for out in (o, c):
        assert out.kind == Kind.LABEL and out.dtype == np.uint8 and out.geometry == body.geometry
    # opening removes a thin line, closing bridges a 1-voxel gap
    arr = np.zeros((1, 15, 15), np.uint8)
    arr[0, 2:6, 2:6] = 1
    arr[0, 10, 1:14] = 1
    m = _mask(arr, spacing=(1.0, 1.0), oblique=False)
    assert (binary_opening(m, radius_mm=1.0).array[0, 10] == 0).all()
    gap = np.zeros((1, 9, 9), np.uint8)
    gap[0, 2:7, 1:4] = 1
    gap[0, 2:7, 5:8] = 1
    assert binary_closing(_mask(gap, spacing=(1.0, 1.0), oblique=False), radius_mm=1.0).array[0, 4, 4] == 1


def test_erosion_does_not_eat_from_the_image_edge():
    arr = np.ones((1, 6, 6), np.uint8)
    arr[0, :, 4:] = 0
    out = binary_erosion(_mask(arr, spacing=(1.0, 1.0), oblique=False), radius_mm=1.0).array[0]
    assert out[:, :3].all() and not out[:, 3:].any()


# ---- holes and components -------------------------------------------------------------------------------------
def test_fill_holes_3d_matches_simpleitk_and_per_slice(body):
    arr = body.array.copy()
    arr[6, 8:12, 10:14] = 0  # a hole inside the object
    tube = arr.copy()
    tube[:, 10, 12] = 0  # a channel through every slice: a 2D hole per slice, not a 3D hole
    m, t = _mask(arr), _mask(tube)
    ref = sitk.GetArrayFromImage(sitk.BinaryFillhole(to_sitk(m), fullyConnected=False, foregroundValue=1))
    np.testing.assert_array_equal(fill_holes(m).array, ref)
    np.testing.assert_array_equal(fill_holes(m).array, body.array)
    assert fill_holes(t).array[6, 10, 12] == 0
    assert fill_holes(t, per_slice=True).array[6, 10, 12] == 1


def test_connected_components_match_simpleitk_relabel(body):
    arr = body.array.copy()
    arr[:, :, 11:13] = 0  # cut the object in two unequal halves
    arr[0, 0, 0:3] = 1  # and a small speck
    m = _mask(arr)
    out = connected_components(m)
    cc = sitk.ConnectedComponent(to_sitk(m), False)
    ref = sitk.GetArrayFromImage(sitk.RelabelComponent(cc, sortByObjectSize=True))
    np.testing.assert_array_equal(out.array, ref)
    assert out.history[-1].params["n_components"] == 3 and out.kind == Kind.LABEL
    sizes = np.bincount(out.array.ravel())[1:]
    assert list(sizes) == sorted(sizes, reverse=True)
    assert connected_components(m, min_size_vox=4).array.max() == 2
    np.testing.assert_array_equal(largest_component(m).array, out.array == 1)


def test_connectivity_option():
    arr = np.zeros((1, 4, 4), np.uint8)
    arr[0, 0, 0] = arr[0, 1, 1] = 1
    m = _mask(arr, spacing=(1.0, 1.0), oblique=False)
    assert connected_components(m, connectivity=1).array.max() == 2
    assert connected_components(m, connectivity=2).array.max() == 1
    with pytest.raises(InvalidParameterError) as err:
        connected_components(m, connectivity=3)  # 2D: 1 or 2
    assert err.value.parameter == "connectivity"


def test_empty_masks():
    empty = _mask(np.zeros((3, 4, 5)))
    assert connected_components(empty).array.max() == 0
    assert component_stats(connected_components(empty)) == []
    with pytest.raises(InvalidParameterError, match="empty") as err:
        largest_component(empty)
    assert err.value.parameter == "mask"


def test_non_binary_or_non_label_masks_are_refused(body):
    lab = label_phantom((12, 20, 24), spacing=SPACING)  # 0/1/2
    img = phantom((12, 20, 24), spacing=SPACING)
    for fn in (lambda m: binary_dilation(m, radius_mm=1.0), fill_holes, largest_component, connected_components):
        with pytest.raises(InvalidParameterError, match=r"binary mask \(0/1\)") as err:
            fn(lab)
        assert err.value.parameter == "mask" and "threshold()" in err.value.fix
        with pytest.raises(InvalidParameterError, match="binary mask"):
            fn(img)
    with pytest.raises(InvalidParameterError) as err:
        binary_dilation(body, radius_mm=-1)
    assert err.value.parameter == "radius_mm"


# ---- distance prior -------------------------------------------------------------------------------------------
def test_keep_near_uses_physical_distance(body):
    ref = np.zeros(body.shape[1:], np.uint8)
    ref[6, 10, 12] = 1
    reference = body.derive(ref[None], operation="seed")
    out = keep_near(body, reference, max_distance_mm=5.0)
    d = ndimage.distance_transform_edt(ref == 0, sampling=body.geometry.spacing_zyx)
    np.testing.assert_array_equal(out.array > 0, (body.array > 0) & (d <= 5.0))
    # along z (2.5 mm slices) 5 mm is 2 slices; along x (0.8 mm) it is 6 columns
    assert out.array[:, 10, 12].nonzero()[0].tolist() == [4, 5, 6, 7, 8]
    assert out.array[6, 10].nonzero()[0].tolist() == list(range(6, 19))
    whole = keep_near(body, reference, max_distance_mm=5.0, per_component=True)
    np.testing.assert_array_equal(whole.array, body.array)


def test_keep_near_bad_inputs(body):
    with pytest.raises(InvalidParameterError, match="empty") as err:
        keep_near(body, body.derive(np.zeros(body.shape, np.uint8), operation="x"), max_distance_mm=1.0)
    assert err.value.parameter == "reference"
    other = _mask(body.array, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(GeometryMismatchError, match="spacing"):
        keep_near(body, other, max_distance_mm=1.0)
    with pytest.raises(InvalidParameterError) as err:
        keep_near(body, body, max_distance_mm=-1.0)
    assert err.value.parameter == "max_distance_mm"


# ---- statistics -----------------------------------------------------------------------------------------------
def test_component_stats_physical_units_on_oblique_grid(body):
    img = phantom((12, 20, 24), spacing=SPACING)
    labels = connected_components(body)
    (s,) = component_stats(labels, intensity=img)
    n = int(body.array.sum())
    assert s["label"] == 1 and s["voxels"] == n
    assert s["volume_ml"] == pytest.approx(n * 0.8 * 0.9 * 2.5 / 1000)
    idx = np.argwhere(body.array > 0)
    expected = body.geometry.index_to_physical(idx[:, ::-1].mean(axis=0))  # LPS mm
    np.testing.assert_allclose(s["centroid_mm"], expected, atol=1e-6)
    assert s["bbox_start_zyx"] == tuple(idx.min(axis=0)) and s["bbox_stop_zyx"] == tuple(idx.max(axis=0) + 1)
    vals = img.array[body.array > 0]
    assert s["intensity_mean"] == pytest.approx(vals.mean()) and s["intensity_std"] == pytest.approx(vals.std())
    assert (s["intensity_min"], s["intensity_max"]) == (vals.min(), vals.max())
    # the same numbers as SimpleITK's label shape statistics (physical size and centroid)
    f = sitk.LabelShapeStatisticsImageFilter()
    f.Execute(to_sitk(labels))
    assert s["volume_ml"] == pytest.approx(f.GetPhysicalSize(1) / 1000)
    np.testing.assert_allclose(s["centroid_mm"], f.GetCentroid(1), atol=1e-6)


def test_component_stats_multilabel_2d_and_errors():
    lab = np.zeros((1, 6, 8), np.uint8)
    lab[0, 1:3, 1:4] = 1
    lab[0, 4, 5:8] = 3
    stats = component_stats(_mask(lab, spacing=(0.5, 2.0), oblique=False))
    assert [s["label"] for s in stats] == [1, 3]
    assert stats[0]["area_mm2"] == pytest.approx(6 * 1.0) and "volume_ml" not in stats[0]
    assert stats[1]["bbox_start_zyx"] == (0, 4, 5) and stats[1]["bbox_stop_zyx"] == (1, 5, 8)
    with pytest.raises(InvalidParameterError, match="label map"):
        component_stats(phantom((4, 5, 6)))
    with pytest.raises(GeometryMismatchError):
        component_stats(_mask(lab, spacing=(0.5, 2.0)), intensity=Image.from_array(np.zeros((6, 8))))


def test_component_stats_on_real_hippocampus_labels():
    folder = require_data("hippocampus")
    labels = read(folder / "labelsTr" / "hippocampus_001.nii.gz", kind="label")
    img = read(folder / "imagesTr" / "hippocampus_001_0000.nii.gz")
    stats = component_stats(labels, intensity=img)
    assert [s["label"] for s in stats] == [1, 2]
    vox = labels.voxel_volume_mm3
    for s in stats:
        n = int((labels.array == s["label"]).sum())
        assert s["voxels"] == n and s["volume_ml"] == pytest.approx(n * vox / 1000)
        assert 0.5 < s["volume_ml"] < 3.0  # one hippocampus head or body/tail: about a millilitre or two
