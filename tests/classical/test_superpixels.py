import numpy as np
import pytest
from skimage.segmentation import slic as sk_slic

from medimg.classical.superpixels import slic, superpixel_pseudo_labels
from medimg.core import GeometryMismatchError, Image, InvalidParameterError, Kind
from medimg.io import read
from medimg.testing import phantom, require_data

NUCLEUS = "00071198d0"  # grey-level fluorescence image, 256 x 256, 27 nuclei


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _nucleus_image():
    root = require_data("nuclei_dsb2018")
    path = next((root / "images").glob(f"{NUCLEUS}*.png"))
    return read(path), read(root / "labels" / path.name).array[0] > 0


def test_slic_equals_skimage_2d_and_3d():
    img, _ = _nucleus_image()
    sp = slic(img, n_segments=300, compactness=0.1)
    ref = sk_slic(img.array[0].astype(float), n_segments=300, compactness=0.1, spacing=np.ones(2),
                  channel_axis=None, convert2lab=False, start_label=1)
    np.testing.assert_array_equal(sp.array[0], ref)
    assert sp.kind == Kind.LABEL and sp.geometry == img.geometry and sp.array.min() == 1
    vol = phantom((10, 16, 20), dtype=np.float32)  # spacing (0.8, 0.9, 2.5) mm
    sp3 = slic(vol, n_segments=40, compactness=0.2)
    ref3 = sk_slic(vol.array.astype(float), n_segments=40, compactness=0.2, spacing=np.array([2.5, 0.9, 0.8]),
                   channel_axis=None, convert2lab=False, start_label=1)
    np.testing.assert_array_equal(sp3.array, ref3)
    assert sp3.history[-1].params["n_superpixels"] == int(ref3.max())


def test_slic_multichannel_and_mask():
    vol = phantom((6, 16, 16), channels=2, dtype=np.float32)
    body = (vol.voxels[:1] > -500).astype(np.uint8)
    sp = slic(vol, n_segments=20, mask=Image(voxels=body, geometry=vol.geometry, kind=Kind.LABEL))
    assert np.all(sp.array[body[0] == 0] == 0)
    assert np.all(sp.array[body[0] == 1] >= 1)


def test_pseudo_labels_from_sparse_nuclei_scribbles():
    img, gt = _nucleus_image()
    rng = np.random.default_rng(0)
    picked = rng.random(gt.shape) < 0.02  # 2% of the pixels carry a scribble label
    scribbles = np.where(picked, np.where(gt, 2, 1), 0).astype(np.uint8)
    out = superpixel_pseudo_labels(img, Image.from_array(scribbles, kind="label"), n_segments=1000,
                                   compactness=0.1)
    pl = out.array[0]
    labelled = pl > 0
    assert out.kind == Kind.LABEL and set(np.unique(pl)) == {0, 1, 2}
    assert labelled.mean() > 0.6  # 2% scribbles spread to most of the image
    assert np.mean((pl == 2)[labelled] == gt[labelled]) > 0.95
    assert dice((pl == 2) & labelled, gt & labelled) > 0.8
    assert out.history[-1].params["n_labelled_superpixels"] > 0


def test_majority_vote_and_agreement():
    arr = np.zeros((4, 6), np.float32)
    sp = np.array([[1, 1, 1, 2, 2, 2]] * 4, np.int32)
    sp[3] = 3
    scr = np.zeros((4, 6), np.uint8)
    scr[0, 0] = scr[0, 1] = 2
    scr[0, 2] = 1  # superpixel 1: 2 votes for class 2, 1 for class 1
    scr[1, 3] = 1
    scr[1, 4] = 3  # superpixel 2: a tie, 50% each; superpixel 3: no scribbles
    img = Image.from_array(arr)
    sps = Image.from_array(sp, kind="label")
    out = superpixel_pseudo_labels(img, Image.from_array(scr, kind="label"), superpixels=sps).array[0]
    assert out[1, 0] == 2 and out[1, 3] == 1 and out[3, 0] == 0
    strict = superpixel_pseudo_labels(img, Image.from_array(scr, kind="label"), superpixels=sps,
                                      min_agreement=0.6).array[0]
    assert strict[1, 0] == 2 and strict[1, 3] == 0


def test_bad_inputs():
    img = Image.from_array(np.random.default_rng(0).random((8, 8)).astype(np.float32))
    empty = Image.from_array(np.zeros((8, 8), np.uint8), kind="label")
    with pytest.raises(InvalidParameterError, match="empty scribbles") as err:
        superpixel_pseudo_labels(img, empty)
    assert err.value.parameter == "scribbles"
    neg = Image.from_array(-np.ones((8, 8), np.int16), kind="label")
    with pytest.raises(InvalidParameterError, match="negative"):
        superpixel_pseudo_labels(img, neg)
    with pytest.raises(GeometryMismatchError):
        superpixel_pseudo_labels(img, Image.from_array(np.ones((8, 9), np.uint8), kind="label"))
    with pytest.raises(InvalidParameterError) as err:
        superpixel_pseudo_labels(img, Image.from_array(np.ones((8, 8), np.uint8)), min_agreement=1.5)
    assert err.value.parameter == "min_agreement"
    with pytest.raises(InvalidParameterError) as err:
        slic(img, n_segments=0)
    assert err.value.parameter == "n_segments"
    with pytest.raises(InvalidParameterError) as err:
        slic(img, compactness=0)
    assert err.value.parameter == "compactness"
    with pytest.raises(InvalidParameterError) as err:
        slic(img, mask=empty)
    assert err.value.parameter == "mask"
    arr = np.ones((6, 6), np.float32)
    arr[0, 0] = np.nan
    with pytest.raises(InvalidParameterError, match="non-finite"):
        slic(Image.from_array(arr))
