"""Tests for medimg.classical.threshold: fixed, Otsu, multi-Otsu and HU-range thresholds."""

import numpy as np
import pytest
from skimage.filters import threshold_multiotsu, threshold_otsu

from medimg.classical.morphology import component_stats, connected_components, largest_component
from medimg.classical.threshold import hu_range, multi_otsu, otsu, threshold
from medimg.core import GeometryMismatchError, Image, InvalidParameterError, Kind
from medimg.io import read
from medimg.testing import label_phantom, phantom, require_data


@pytest.fixture(scope="module")
def ct():
    return phantom((12, 20, 24), spacing=(0.8, 0.9, 2.5), dtype=np.float32)


# ---- fixed threshold ------------------------------------------------------------------------------------------
def test_threshold_inclusive_bounds_label_output_same_geometry(ct):
    out = threshold(ct, lower=-500, upper=200)
    assert out.kind == Kind.LABEL and out.dtype == np.uint8 and out.shape == ct.shape
    assert out.geometry == ct.geometry
    v = ct.array
    np.testing.assert_array_equal(out.array, ((v >= -500) & (v <= 200)).astype(np.uint8))
    assert out.history[-1].name == "threshold" and out.history[-1].params == {"lower": -500.0, "upper": 200.0}
    assert not ct.voxels.flags.writeable and ct.history == ()  # input untouched


def test_threshold_open_bounds_and_on_label_maps(ct):
    np.testing.assert_array_equal(threshold(ct, lower=200).array, ct.array >= 200)
    np.testing.assert_array_equal(threshold(ct, upper=-500).array, ct.array <= -500)
    lab = label_phantom((12, 20, 24))
    np.testing.assert_array_equal(threshold(lab, lower=1).array, lab.array > 0)


@pytest.mark.parametrize("kwargs, parameter", [({}, "lower"), ({"lower": 5, "upper": 1}, "lower"),
                                                ({"upper": float("nan")}, "upper")])
def test_threshold_bad_bounds(ct, kwargs, parameter):
    with pytest.raises(InvalidParameterError) as err:
        threshold(ct, **kwargs)
    assert err.value.parameter == parameter and err.value.fix


def test_multichannel_image_is_refused():
    img = phantom((4, 6, 8), channels=2)
    with pytest.raises(InvalidParameterError, match="channel"):
        otsu(img)


# ---- Otsu -----------------------------------------------------------------------------------------------------
def test_otsu_threshold_equals_skimage_and_is_recorded(ct):
    out = otsu(ct)
    t = threshold_otsu(ct.array, nbins=256)
    assert out.history[-1].params["threshold"] == pytest.approx(float(t))
    np.testing.assert_array_equal(out.array, (ct.array > t).astype(np.uint8))
    assert out.kind == Kind.LABEL and out.geometry == ct.geometry


def test_otsu_in_mask_uses_masked_values_only(ct):
    body = threshold(ct, lower=-500)
    out = otsu(ct, mask=body, bins=128)
    t = threshold_otsu(ct.array[body.array > 0], nbins=128)
    assert out.history[-1].params["threshold"] == pytest.approx(float(t))
    np.testing.assert_array_equal(out.array, ((ct.array > t) & (body.array > 0)).astype(np.uint8))
    # inside the body, Otsu separates the bright core (400 HU) from soft tissue (40 HU)
    assert 40 < t < 400


def test_otsu_bad_inputs(ct):
    lab = label_phantom((12, 20, 24))
    with pytest.raises(InvalidParameterError, match="label map"):
        otsu(lab)
    with pytest.raises(InvalidParameterError, match="constant"):
        otsu(Image.from_array(np.ones((3, 4, 5))))
    empty = ct.derive(np.zeros(ct.shape, np.uint8), operation="x", kind=Kind.LABEL)
    with pytest.raises(InvalidParameterError, match="empty") as err:
        otsu(ct, mask=empty)
    assert err.value.parameter == "mask"
    with pytest.raises(InvalidParameterError, match="binary mask") as err:
        otsu(ct, mask=lab)  # values 0, 1, 2
    assert err.value.parameter == "mask" and "threshold()" in str(err.value)
    with pytest.raises(InvalidParameterError, match="binary mask"):
        otsu(ct, mask=ct)  # an intensity image given as a mask
    moved = threshold(ct, lower=-500).replace(geometry=ct.geometry.replace(origin=(0.0, 0.0, 0.0)))
    with pytest.raises(GeometryMismatchError, match="origin"):
        otsu(ct, mask=moved)
    with pytest.raises(InvalidParameterError) as err:
        otsu(ct, bins=1)
    assert err.value.parameter == "bins"


def test_otsu_on_real_fluorescence_nuclei_reaches_good_dice():
    """DSB2018 fluorescence images (dark background, bright nuclei): Otsu alone gives Dice > 0.8 against truth."""
    folder = require_data("nuclei_dsb2018")
    images = sorted((folder / "images").glob("*.png"))
    dices = []
    for path in images:
        img = read(path)
        if img.n_channels != 1 or np.median(img.array) > 30:  # keep grayscale fluorescence images
            continue
        truth = read(folder / "labels" / path.name, kind="label").array > 0
        pred = otsu(img).array > 0
        dices.append(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))
        if len(dices) == 8:
            break
    assert len(dices) == 8
    assert min(dices) > 0.8, dices
    assert np.mean(dices) > 0.88, dices


# ---- multi-Otsu -----------------------------------------------------------------------------------------------
def test_multi_otsu_matches_skimage(ct):
    out = multi_otsu(ct, classes=3)
    ts = threshold_multiotsu(ct.array, classes=3)
    assert out.history[-1].params["thresholds"] == pytest.approx([float(t) for t in ts])
    np.testing.assert_array_equal(out.array, np.digitize(ct.array, ts, right=True))
    assert set(np.unique(out.array)) == {0, 1, 2}
    # the phantom's three tissues: air, soft tissue shell, bright core
    lab = label_phantom((12, 20, 24))
    assert (out.array == lab.array).mean() > 0.99


def test_multi_otsu_with_mask_and_bad_classes(ct):
    body = threshold(ct, lower=-500)
    out = multi_otsu(ct, classes=2, mask=body)
    assert out.array[body.array == 0].max() == 0
    with pytest.raises(InvalidParameterError) as err:
        multi_otsu(ct, classes=1)
    assert err.value.parameter == "classes"
    with pytest.raises(InvalidParameterError) as err:
        multi_otsu(Image.from_array(np.array([[0.0, 1.0, 0.0, 1.0]])), classes=4)
    assert err.value.parameter == "classes"


# ---- HU range -------------------------------------------------------------------------------------------------
def test_hu_range_requires_ct_unless_forced(ct):
    mr = ct.with_metadata(modality="MR")
    with pytest.raises(InvalidParameterError, match="CT") as err:
        hu_range(mr, lower_hu=300, upper_hu=3000)
    assert err.value.parameter == "image" and "force=True" in err.value.fix
    forced = hu_range(mr, lower_hu=300, upper_hu=3000, force=True)
    np.testing.assert_array_equal(forced.array, hu_range(ct, lower_hu=300, upper_hu=3000).array)
    assert forced.history[-1].name == "hu_range"
    with pytest.raises(InvalidParameterError) as err:
        hu_range(ct, lower_hu=3000, upper_hu=300)
    assert err.value.parameter == "lower_hu"


def test_hu_range_bone_on_real_ct_with_largest_component():
    path = require_data("ct_mr_samples_totalsegmentator", "tests", "reference_files", "example_ct.nii.gz")
    raw = read(path)
    with pytest.raises(InvalidParameterError, match="CT"):  # NIfTI carries no modality
        hu_range(raw, lower_hu=300, upper_hu=3000)
    ct = raw.with_metadata(modality="CT")
    bone = hu_range(ct, lower_hu=300, upper_hu=3000)
    assert bone.geometry == ct.geometry and bone.kind == Kind.LABEL
    n_bone = int(bone.array.sum())
    assert 0.005 < n_bone / bone.array.size < 0.05  # bone is a small part of a body CT
    biggest = largest_component(bone)
    kept = biggest.array > 0
    assert kept.sum() < n_bone and not np.any(kept & (bone.array == 0))
    assert connected_components(biggest).history[-1].params["n_components"] == 1
    # it is the first (largest) instance of the component map, and it is bone: mean HU well above 300
    stats = component_stats(connected_components(bone), intensity=ct)
    assert stats[0]["voxels"] == kept.sum() == max(s["voxels"] for s in stats)
    assert stats[0]["volume_ml"] == pytest.approx(kept.sum() * 27.0 / 1000)
    assert stats[0]["intensity_min"] >= 300 and stats[0]["intensity_mean"] > 400
