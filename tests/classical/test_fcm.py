import numpy as np
import pytest

from medimg.classical.fcm import FCMResult, fuzzy_c_means
from medimg.core import GeometryMismatchError, Image, InvalidParameterError, Kind
from medimg.io import read
from medimg.testing import phantom, require_data

NUCLEUS = "0287e7ee5b"  # grey-level fluorescence image, 256 x 256, 62 nuclei


def reference_fcm(x, centers, m=2.0, n_iter=500, tol=1e-10):
    """Textbook voxel-wise FCM (Bezdek): x (N, C), initial centres (K, C); returns centres, memberships (K, N)."""
    x = x.astype(np.float64)
    v = np.array(centers, dtype=np.float64)
    for _ in range(n_iter):
        d = np.sqrt(((x[None] - v[:, None]) ** 2).sum(-1)) + 1e-12
        u = 1.0 / ((d[:, None] / d[None]) ** (2 / (m - 1))).sum(1)
        um = u ** m
        new = um @ x / um.sum(1, keepdims=True)
        if np.abs(new - v).max() < tol:
            v = new
            break
        v = new
    d = np.sqrt(((x[None] - v[:, None]) ** 2).sum(-1)) + 1e-12
    u = 1.0 / ((d[:, None] / d[None]) ** (2 / (m - 1))).sum(1)
    return v, u


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _hippocampus():
    root = require_data("hippocampus", "imagesTr")
    path = sorted(root.glob("*.nii.gz"))[0]
    return read(path), read(str(path).replace("imagesTr", "labelsTr").replace("_0000", ""))


def test_matches_reference_on_hippocampus_mr():
    img, lab = _hippocampus()
    res = fuzzy_c_means(img, n_clusters=3, tol=1e-9, max_iter=1000)
    x = img.array.reshape(-1, 1)
    v, u = reference_fcm(x, res.centers + np.array([[-3.0], [2.0], [4.0]]))
    rng = float(np.ptp(x))
    np.testing.assert_allclose(res.centers, v, atol=1e-4 * rng)
    np.testing.assert_allclose(res.memberships.voxels.reshape(3, -1), u, atol=1e-4)
    # geometry, kinds, history and shapes
    assert isinstance(res, FCMResult)
    assert res.memberships.kind == Kind.PROBABILITY and res.labels.kind == Kind.LABEL
    assert res.memberships.shape == (3,) + img.spatial_shape and res.labels.shape == (1,) + img.spatial_shape
    assert res.memberships.geometry == img.geometry
    assert res.labels.history[-1].name == "fuzzy_c_means"
    np.testing.assert_allclose(res.memberships.voxels.sum(0), 1.0, atol=1e-5)
    assert np.all(np.diff(res.centers[:, 0]) > 0)
    np.testing.assert_array_equal(res.labels.array, np.argmax(res.memberships.voxels, axis=0))
    # the hippocampus is grey matter: hardly any of it falls in the brightest (white-matter-like) cluster
    hippo = lab.array > 0
    assert np.mean(res.labels.array[hippo] == 2) < 0.15
    assert np.mean(res.labels.array[hippo] >= 1) > 0.5


def test_float_image_binned_histogram_close_to_reference():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, size=(20, 30, 30))
    arr = (truth * 50.0 + rng.normal(0, 12, truth.shape)).astype(np.float32)
    res = fuzzy_c_means(Image.from_array(arr), n_clusters=3, tol=1e-9, max_iter=500)
    v, u = reference_fcm(arr.reshape(-1, 1), [[-10.0], [60.0], [110.0]])
    np.testing.assert_allclose(res.centers, v, atol=0.01)  # bins are ~0.04 wide
    np.testing.assert_allclose(res.memberships.voxels.reshape(3, -1), u, atol=2e-3)
    assert np.mean(res.labels.array == truth) > 0.95


def test_vector_fcm_matches_reference():
    img = phantom((8, 16, 16), channels=2, dtype=np.float32)
    vox = img.voxels.copy()
    vox[1] = -0.5 * vox[1] + np.random.default_rng(0).normal(0, 20, vox[1].shape)
    img = img.replace(voxels=vox)
    res = fuzzy_c_means(img, n_clusters=3, tol=1e-9, max_iter=500)
    assert res.centers.shape == (3, 2)
    v, u = reference_fcm(vox.reshape(2, -1).T, res.centers * 1.01)
    np.testing.assert_allclose(res.centers, v, rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(res.memberships.voxels.reshape(3, -1), u, atol=1e-3)


def test_spatial_term_is_more_robust_to_noise():
    rng = np.random.default_rng(3)
    z, y, x = np.mgrid[:16, :48, :48]
    truth = (x // 16 + (y > 24)) % 3  # three classes of equal size in blocks
    arr = truth * 100.0 + rng.normal(0, 45, truth.shape)
    img = Image.from_array(arr.astype(np.float32))
    plain = fuzzy_c_means(img, n_clusters=3)
    spatial = fuzzy_c_means(img, n_clusters=3, spatial_weight=2.0)
    acc_plain = np.mean(plain.labels.array == truth)
    acc_spatial = np.mean(spatial.labels.array == truth)
    assert acc_spatial > acc_plain + 0.1
    assert acc_spatial > 0.9
    assert spatial.labels.history[-1].params["spatial_weight"] == 2.0


def test_nuclei_two_clusters_dice():
    root = require_data("nuclei_dsb2018")
    path = next((root / "images").glob(f"{NUCLEUS}*.png"))
    img = read(path)
    gt = read(root / "labels" / path.name).array > 0
    res = fuzzy_c_means(img, n_clusters=2)
    assert res.centers[1, 0] > res.centers[0, 0]
    fg = res.labels.array == 1  # nuclei are the bright cluster in fluorescence
    assert dice(fg, gt) > 0.8


def test_mask_restricts_the_fit_and_input_is_unchanged():
    img = phantom((8, 16, 16))
    before = img.voxels.copy()
    body = Image(voxels=(img.voxels > -500).astype(np.uint8), geometry=img.geometry, kind=Kind.LABEL)
    res = fuzzy_c_means(img, n_clusters=2, mask=body)
    # inside the body: soft tissue (~40) and bright core (~400); air (-1000) was not fitted
    assert res.centers[0, 0] > -100 and res.centers[1, 0] > 300
    np.testing.assert_allclose(res.memberships.voxels.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(img.voxels, before)


def test_seed_reproducible():
    img = phantom((8, 16, 16), dtype=np.float32)
    a = fuzzy_c_means(img, seed=5)
    b = fuzzy_c_means(img, seed=5)
    np.testing.assert_array_equal(a.memberships.voxels, b.memberships.voxels)
    assert a.n_iter == b.n_iter


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"n_clusters": 1}, "n_clusters"),
        ({"n_clusters": 2.5}, "n_clusters"),
        ({"m": 1.0}, "m"),
        ({"spatial_weight": -1}, "spatial_weight"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": 0}, "tol"),
    ],
)
def test_bad_parameters(kwargs, parameter):
    with pytest.raises(InvalidParameterError) as err:
        fuzzy_c_means(phantom((4, 8, 8)), **kwargs)
    assert err.value.parameter == parameter


def test_bad_images():
    arr = np.ones((4, 8, 8), np.float32)
    arr[0, 0, 0] = np.nan
    with pytest.raises(InvalidParameterError, match="non-finite"):
        fuzzy_c_means(Image.from_array(arr))
    with pytest.raises(InvalidParameterError) as err:
        fuzzy_c_means(Image.from_array(np.ones((4, 8, 8), np.float32)))
    assert err.value.parameter == "n_clusters"
    with pytest.raises(InvalidParameterError) as err:
        fuzzy_c_means(Image.from_array(np.ones((4, 8, 8), np.uint8)))
    assert err.value.parameter == "n_clusters"
    with pytest.raises(InvalidParameterError, match="label map"):
        fuzzy_c_means(Image.from_array(np.ones((4, 8, 8), np.uint8), kind="label"))
    img = phantom((4, 8, 8))
    with pytest.raises(InvalidParameterError) as err:
        fuzzy_c_means(img, mask=Image(voxels=np.zeros(img.shape, np.uint8), geometry=img.geometry))
    assert err.value.parameter == "mask"
    with pytest.raises(GeometryMismatchError):
        fuzzy_c_means(img, mask=Image.from_array(np.ones((4, 8, 8), np.uint8)))
