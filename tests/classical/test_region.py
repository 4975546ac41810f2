"""Tests for medimg.classical.seeds and medimg.classical.region (region growing), checked against SimpleITK."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medimg.classical.morphology import connected_components, keep_near
from medimg.classical.region import confidence_connected, connected_threshold
from medimg.classical.seeds import seeds_to_index
from medimg.core import Image, InvalidParameterError, Kind
from medimg.io import read
from medimg.io.sitk_bridge import to_sitk
from medimg.testing import label_phantom, phantom, require_data


@pytest.fixture(scope="module")
def ct():
    return phantom((12, 20, 24), spacing=(0.8, 0.9, 2.5), dtype=np.float32)


CENTRE = (6, 10, 12)  # (z, y, x): inside the bright core of the phantom


# ---- seeds ----------------------------------------------------------------------------------------------------
def test_voxel_and_world_seeds_agree_on_an_oblique_grid(ct):
    assert not np.allclose(ct.geometry.direction_matrix, np.eye(3))
    voxel = np.array([CENTRE, (0, 0, 0), (11, 19, 23)])
    world = ct.geometry.index_to_physical(voxel[:, ::-1])  # (x, y, z) mm in LPS
    np.testing.assert_array_equal(seeds_to_index(ct, voxel), voxel)
    np.testing.assert_array_equal(seeds_to_index(ct, world, space="world"), voxel)
    # a point 0.3 voxel away still rounds to the same voxel
    nudged = ct.geometry.index_to_physical(np.array(CENTRE[::-1]) + 0.3)
    assert seeds_to_index(ct, nudged, space="world").tolist() == [list(CENTRE)]
    out = seeds_to_index(ct, CENTRE)
    assert out.shape == (1, 3) and out.dtype == np.int64


def test_2d_seeds_accept_y_x():
    img = Image.from_array(np.zeros((5, 7)), spacing=(0.5, 2.0))
    assert seeds_to_index(img, [(4, 6)]).tolist() == [[0, 4, 6]]
    assert seeds_to_index(img, [(3.0, 8.0)], space="world").tolist() == [[0, 4, 6]]  # x=3 mm, y=8 mm


@pytest.mark.parametrize("seeds, space, match", [
    ([(12, 0, 0)], "voxel", "seed #0 lies outside"),
    ([CENTRE, (0, -1, 0)], "voxel", "seed #1 lies outside"),
    ([(1e4, 0.0, 0.0)], "world", "seed #0 lies outside"),
    ([(1.5, 2, 3)], "voxel", "integer"),
    ([(1, 2)], "voxel", "2-value"),
    ([], "voxel", "empty"),
    ([(1, 2, 3)], "ras", "unknown seed space"),
])
def test_bad_seeds_are_named(ct, seeds, space, match):
    with pytest.raises(InvalidParameterError, match=match) as err:
        seeds_to_index(ct, seeds, space=space)
    assert err.value.parameter in ("seeds", "space") and err.value.fix
    if "outside" in match:
        assert "(12, 20, 24)" in str(err.value)  # the image size is in the message


# ---- connected threshold --------------------------------------------------------------------------------------
def test_connected_threshold_matches_simpleitk(ct):
    out = connected_threshold(ct, seeds=[CENTRE], lower=200, upper=1000)
    ref = sitk.GetArrayFromImage(sitk.ConnectedThreshold(to_sitk(ct), seedList=[CENTRE[::-1]], lower=200,
                                                         upper=1000, replaceValue=1))
    np.testing.assert_array_equal(out.array, ref)
    assert out.kind == Kind.LABEL and out.dtype == np.uint8 and out.geometry == ct.geometry
    core = label_phantom((12, 20, 24)).array == 2
    np.testing.assert_array_equal(out.array > 0, core)
    assert out.history[-1].params["seeds_zyx"] == [list(CENTRE)]


def test_connected_threshold_world_seed_and_2d(ct):
    world = ct.geometry.index_to_physical(np.array(CENTRE[::-1], float))
    a = connected_threshold(ct, seeds=world, lower=200, upper=1000, seed_space="world")
    b = connected_threshold(ct, seeds=CENTRE, lower=200, upper=1000)
    np.testing.assert_array_equal(a.array, b.array)
    arr = np.zeros((6, 9), np.int16)
    arr[1:4, 1:4] = 100
    arr[:, 6:] = 100
    img = Image.from_array(arr, spacing=(0.7, 1.3))
    out = connected_threshold(img, seeds=[(2, 2)], lower=50, upper=150)
    assert out.is_2d and out.array.sum() == 9


def test_connected_threshold_refuses_seed_outside_range(ct):
    with pytest.raises(InvalidParameterError, match="empty") as err:
        connected_threshold(ct, seeds=[(0, 0, 0)], lower=200, upper=1000)
    assert err.value.parameter == "seeds"
    with pytest.raises(InvalidParameterError):
        connected_threshold(ct, seeds=[CENTRE], lower=10, upper=5)
    with pytest.raises(InvalidParameterError, match="label map"):
        connected_threshold(label_phantom((12, 20, 24)), seeds=[CENTRE], lower=1, upper=2)


# ---- confidence connected -------------------------------------------------------------------------------------
def test_confidence_connected_matches_simpleitk(ct):
    out = confidence_connected(ct, seeds=[CENTRE, (6, 10, 4)], multiplier=2.5, iterations=3, radius_vox=1)
    ref = sitk.GetArrayFromImage(sitk.ConfidenceConnected(
        to_sitk(ct), seedList=[CENTRE[::-1], (4, 10, 6)], numberOfIterations=3, multiplier=2.5,
        initialNeighborhoodRadius=1, replaceValue=1))
    np.testing.assert_array_equal(out.array, ref)
    # seeds in the core and the shell: the region grows in the object, never into the air
    lab = label_phantom((12, 20, 24)).array
    assert out.array[lab == 0].sum() == 0 and out.array[CENTRE] == 1 and out.array[6, 10, 4] == 1
    assert out.array.sum() > 10


@pytest.mark.parametrize("kwargs", [{"multiplier": 0}, {"iterations": -1}, {"radius_vox": 1.5}])
def test_confidence_connected_bad_parameters(ct, kwargs):
    with pytest.raises(InvalidParameterError) as err:
        confidence_connected(ct, seeds=[CENTRE], **kwargs)
    assert err.value.parameter == next(iter(kwargs))


def test_region_growing_in_real_hippocampus_mr_gives_a_connected_region():
    folder = require_data("hippocampus")
    img = read(folder / "imagesTr" / "hippocampus_001_0000.nii.gz")
    truth = read(folder / "labelsTr" / "hippocampus_001.nii.gz", kind="label").array > 0
    seed = np.unravel_index(np.argmax(ndimage.distance_transform_edt(truth)), truth.shape)  # deepest voxel
    region = confidence_connected(img, seeds=[seed], multiplier=2.0)
    grown = region.array > 0
    assert grown[seed]
    assert connected_components(region).history[-1].params["n_components"] == 1
    ref = sitk.ConfidenceConnected(to_sitk(img), seedList=[tuple(int(v) for v in seed[::-1])],
                                   numberOfIterations=4, multiplier=2.0, initialNeighborhoodRadius=1, replaceValue=1)
    np.testing.assert_array_equal(region.array, sitk.GetArrayFromImage(ref))
    # intensity alone leaks into neighbouring grey matter (the hippocampus is not brighter than its
    # surroundings); it still covers most of the hippocampus, and a distance prior bounds the leak
    assert (grown & truth).sum() / truth.sum() > 0.5
    seed_mask = np.zeros(truth.shape, np.uint8)
    seed_mask[seed] = 1
    near = keep_near(region, region.derive(seed_mask[None], operation="seed"), max_distance_mm=12.0)
    d = ndimage.distance_transform_edt(seed_mask == 0, sampling=img.geometry.spacing_zyx)
    assert d[near.array > 0].max() <= 12.0 and near.array.sum() < grown.sum()
