"""Shape measures against analytic truth (anisotropic spacing, oblique direction) and against SimpleITK."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.core import Geometry
from medimg.io import read
from medimg.io.sitk_bridge import to_sitk
from medimg.measure import (
    bounding_box,
    centroid_mm,
    equivalent_sphere_diameter_mm,
    longest_diameter_mm,
    measure_labels,
    recist_diameters,
    surface_area_mm2,
    volume_ml,
)
from medimg.testing import oblique_direction, require_data

SEG = ("ct_mr_samples_totalsegmentator", "tests", "reference_files", "example_seg.nii.gz")
SPACING = (0.7, 0.9, 1.6)
R = 10.0


@pytest.fixture(scope="module")
def sphere():
    """A sphere of radius 10 mm on an anisotropic, oblique grid; returns mask (Z, Y, X), geometry, centre LPS."""
    geo = Geometry(spacing=SPACING, origin=(12.0, -30.0, 40.0), direction=oblique_direction())
    shape_zyx = (int(30 / SPACING[2]), int(30 / SPACING[1]), int(30 / SPACING[0]))
    centre_xyz = np.array([shape_zyx[2] / 2 - 0.3, shape_zyx[1] / 2 + 0.2, shape_zyx[0] / 2 + 0.1])
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    d = np.sqrt(((x - centre_xyz[0]) * SPACING[0]) ** 2 + ((y - centre_xyz[1]) * SPACING[1]) ** 2
                + ((z - centre_xyz[2]) * SPACING[2]) ** 2)
    return d <= R, geo, geo.index_to_physical(centre_xyz)


def test_sphere_volume_within_1_percent(sphere):
    mask, geo, _ = sphere
    truth = 4 / 3 * math.pi * R**3 / 1000
    assert volume_ml(mask, geo) == pytest.approx(truth, rel=0.01)
    assert equivalent_sphere_diameter_mm(volume_ml(mask, geo)) == pytest.approx(2 * R, rel=0.005)


def test_sphere_surface_area_within_3_percent(sphere):
    mask, geo, _ = sphere
    assert surface_area_mm2(mask, geo) == pytest.approx(4 * math.pi * R**2, rel=0.03)


def test_surface_area_does_not_depend_on_direction(sphere):
    mask, geo, _ = sphere
    straight = geo.replace(direction=np.eye(3))
    assert surface_area_mm2(mask, geo) == pytest.approx(surface_area_mm2(mask, straight), rel=1e-9)


def test_sphere_centroid_is_the_known_lps_point(sphere):
    mask, geo, centre = sphere
    np.testing.assert_allclose(centroid_mm(mask, geo), centre, atol=0.1)


def test_sphere_diameters_within_a_voxel(sphere):
    mask, geo, _ = sphere
    assert abs(longest_diameter_mm(mask, geo) - 2 * R) <= max(SPACING)
    rec = recist_diameters(mask, geo)
    assert abs(rec.long_axis_mm - 2 * R) <= max(SPACING[:2])
    assert abs(rec.short_axis_mm - 2 * R) <= max(SPACING[:2])
    assert rec.cross_section_area_mm2 == pytest.approx(math.pi * R**2, rel=0.03)


def test_recist_on_an_ellipsoid_finds_long_and_short_axis():
    geo = Geometry(spacing=(0.5, 0.6, 2.0))
    z, y, x = np.meshgrid(np.arange(20), np.arange(120), np.arange(140), indexing="ij")
    px, py, pz = (x - 70) * 0.5, (y - 60) * 0.6, (z - 10) * 2.0
    a, b, c = 30.0, 15.0, 12.0  # long axis along x, rotated 30 degrees in-plane
    t = math.radians(30)
    u, v = px * math.cos(t) + py * math.sin(t), -px * math.sin(t) + py * math.cos(t)
    mask = (u / a) ** 2 + (v / b) ** 2 + (pz / c) ** 2 <= 1
    rec = recist_diameters(mask, geo)
    assert rec.slice_index == 10
    assert rec.long_axis_mm == pytest.approx(2 * a, abs=0.6)
    assert rec.short_axis_mm == pytest.approx(2 * b, abs=0.6)
    assert longest_diameter_mm(mask, geo) == pytest.approx(2 * a, abs=1.0)


def test_empty_mask_gives_zeros_and_no_centroid():
    geo = Geometry(spacing=(1.0, 2.0, 3.0))
    empty = np.zeros((4, 5, 6), bool)
    assert volume_ml(empty, geo) == 0.0
    assert surface_area_mm2(empty, geo) == 0.0
    assert longest_diameter_mm(empty, geo) == 0.0
    assert recist_diameters(empty, geo).slice_index == -1
    assert bounding_box(empty) is None
    with pytest.raises(ValueError, match="empty mask"):
        centroid_mm(empty, geo)


def test_single_voxel_keeps_its_size():
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    geo = Geometry(spacing=(2.0, 2.0, 2.0))
    assert longest_diameter_mm(mask, geo) == pytest.approx(2.0, rel=1e-6)
    assert surface_area_mm2(mask, geo) > 0


def test_totalsegmentator_volumes_and_shape_match_simpleitk():
    seg = read(require_data(*SEG), kind="label")
    records = measure_labels(seg)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputeFeretDiameterOn()
    stats.ComputePerimeterOn()
    stats.Execute(to_sitk(seg))
    assert [r["label"] for r in records] == sorted(stats.GetLabels())
    voxel_ml = seg.voxel_volume_mm3 / 1000
    arr = seg.array
    spacing = max(seg.spacing)
    for r in records:
        label = r["label"]
        assert r["voxel_count"] == int((arr == label).sum()) == stats.GetNumberOfPixels(label)
        assert r["volume_ml"] == pytest.approx(r["voxel_count"] * voxel_ml, rel=1e-12)
        assert r["volume_ml"] * 1000 == pytest.approx(stats.GetPhysicalSize(label), rel=1e-9)
        np.testing.assert_allclose([r["centroid_x_mm"], r["centroid_y_mm"], r["centroid_z_mm"]],
                                   stats.GetCentroid(label), atol=1e-6)
        # ours runs between surface points, SimpleITK's Feret between voxel centres: at most one voxel apart
        feret = stats.GetFeretDiameter(label)
        assert -1e-6 <= r["longest_diameter_mm"] - feret <= spacing + 1e-6, label
        # surface areas: two different estimators; close on compact organs, looser on thin ribs
        if r["voxel_count"] >= 1000:
            assert r["surface_area_mm2"] == pytest.approx(stats.GetPerimeter(label), rel=0.03), label
        elif r["voxel_count"] >= 50:
            assert r["surface_area_mm2"] == pytest.approx(stats.GetPerimeter(label), rel=0.10), label
