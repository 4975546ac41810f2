import itertools

import numpy as np
import pytest
from scipy import ndimage

from medimg.classical.graphcut import _energy, _pairwise_weights, _unary_costs, graph_cut
from medimg.core import Image, InvalidParameterError, Kind
from medimg.io import read
from medimg.testing import phantom, require_data

NUCLEUS = "0287e7ee5b"  # grey-level fluorescence image, 256 x 256, 62 nuclei


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _terms(img, fg, bg, lam=1.0):
    feats = img.voxels.astype(np.float64)
    unary = _unary_costs(feats, fg, bg, "histogram")
    pairs, _ = _pairwise_weights(feats, img.geometry.spacing_zyx, img.is_2d, None, lam)
    return unary, pairs


def test_minimum_energy_matches_brute_force():
    rng = np.random.default_rng(0)
    arr = np.array([[1, 2, 8, 9], [2, 7, 8, 3], [1, 1, 9, 8]], float) + rng.normal(0, 0.5, (3, 4))
    img = Image.from_array(arr, spacing=(1.0, 2.0))
    fg_pts, bg_pts = [(0, 3)], [(2, 0)]
    for lam in (0.0, 1.0, 4.0):
        seg = graph_cut(img, foreground_seeds=fg_pts, background_seeds=bg_pts, lambda_boundary=lam)
        fg = np.zeros((1, 3, 4), bool)
        fg[0, 0, 3] = True
        bg = np.zeros((1, 3, 4), bool)
        bg[0, 2, 0] = True
        unary, pairs = _terms(img, fg, bg, lam)
        best = np.inf
        for bits in itertools.product([False, True], repeat=12):
            lab = np.array(bits).reshape(1, 3, 4)
            if not lab[fg].all() or lab[bg].any():
                continue
            best = min(best, _energy(lab, unary, pairs))
        got = _energy(seg.array.astype(bool), unary, pairs)
        assert got == pytest.approx(best, abs=1e-9)
        assert seg.array[0, 0, 3] == 1 and seg.array[0, 2, 0] == 0


def test_max_flow_equals_energy_without_seed_terms():
    img = phantom((6, 12, 12), dtype=np.float32)
    fg = [(3, 6, 6)]
    bg = [(0, 0, 0), (5, 11, 11)]
    seg = graph_cut(img, foreground_seeds=fg, background_seeds=bg, lambda_boundary=3.0)
    fgm = np.zeros(img.spatial_shape, bool)
    fgm[3, 6, 6] = True
    bgm = np.zeros(img.spatial_shape, bool)
    bgm[0, 0, 0] = bgm[5, 11, 11] = True
    unary, pairs = _terms(img, fgm, bgm, 3.0)
    seeds = fgm | bgm
    unary = tuple(np.where(seeds, 0.0, u) for u in unary)
    flow = seg.history[-1].params["max_flow"]
    assert flow == pytest.approx(_energy(seg.array.astype(bool), unary, pairs), rel=1e-9)


def test_phantom_3d_core_and_world_seeds():
    img = phantom((12, 20, 24))  # oblique direction, anisotropic spacing
    truth = img.array > 200
    fg = np.argwhere(truth)[:3]
    shell = np.argwhere((img.array > -500) & (img.array < 200))
    bg = np.concatenate([[(0, 0, 0), (11, 19, 23)], shell[:: len(shell) // 5]])  # air and soft tissue
    seg = graph_cut(img, foreground_seeds=fg, background_seeds=bg)
    assert seg.kind == Kind.LABEL and seg.dtype == np.uint8 and seg.geometry == img.geometry
    assert dice(seg.array == 1, truth) > 0.95
    to_world = lambda p: img.geometry.index_to_physical(np.asarray(p, float)[:, ::-1])  # noqa: E731
    seg_w = graph_cut(img, foreground_seeds=to_world(fg) + 0.1, background_seeds=to_world(bg),
                      seed_space="world")
    np.testing.assert_array_equal(seg_w.voxels, seg.voxels)


def test_boundary_weights_are_spacing_aware():
    img = Image.from_array(np.zeros((3, 4, 5), np.float32), spacing=(0.5, 1.0, 4.0))
    pairs, sigma = _pairwise_weights(img.voxels.astype(float), img.geometry.spacing_zyx, False, None, 2.0)
    by_axis = {ax: w for ax, w in pairs}
    assert by_axis[0][0, 0, 0] == pytest.approx(2.0 / 4.0)  # z: 4 mm
    assert by_axis[1][0, 0, 0] == pytest.approx(2.0 / 1.0)
    assert by_axis[2][0, 0, 0] == pytest.approx(2.0 / 0.5)
    assert by_axis[2][0, 0, -1] == 0.0  # no neighbour past the border
    img2d = Image.from_array(np.zeros((4, 5), np.float32))
    pairs2d, _ = _pairwise_weights(img2d.voxels.astype(float), img2d.geometry.spacing_zyx, True, None, 1.0)
    assert sorted(ax for ax, _ in pairs2d) == [1, 2]


def test_nuclei_with_ground_truth_seeds_beats_otsu():
    from skimage.filters import threshold_otsu

    root = require_data("nuclei_dsb2018")
    path = next((root / "images").glob(f"{NUCLEUS}*.png"))
    img = read(path)
    gt = read(root / "labels" / path.name).array[0] > 0
    rng = np.random.default_rng(0)
    inner = np.argwhere(ndimage.binary_erosion(gt, iterations=2))
    outer = np.argwhere(~ndimage.binary_dilation(gt, iterations=3))
    fg = inner[rng.choice(len(inner), 10, replace=False)]
    bg = outer[rng.choice(len(outer), 10, replace=False)]
    seg = graph_cut(img, foreground_seeds=fg, background_seeds=bg).array[0] == 1
    arr = img.array[0]
    otsu = arr > threshold_otsu(arr)
    d_gc, d_otsu = dice(seg, gt), dice(otsu, gt)
    assert d_otsu == pytest.approx(0.851, abs=0.01)
    assert d_gc > 0.88 and d_gc > d_otsu + 0.02
    # multichannel input goes through the Gaussian data model
    rgb = Image.from_array(np.stack([arr, arr * 0.5, 255 - arr]).astype(np.float32)[:, None])
    seg_rgb = graph_cut(rgb, foreground_seeds=fg, background_seeds=bg).array[0] == 1
    assert dice(seg_rgb, gt) > 0.8


def test_seed_masks_as_images():
    arr = np.zeros((10, 10), np.float32)
    arr[:, 5:] = 10
    img = Image.from_array(arr)
    fgm = np.zeros((10, 10), np.uint8)
    fgm[:, 8] = 1
    bgm = np.zeros((10, 10), np.uint8)
    bgm[:, 1] = 1
    seg = graph_cut(img, foreground_seeds=Image.from_array(fgm, kind="label"),
                    background_seeds=Image.from_array(bgm, kind="label"))
    np.testing.assert_array_equal(seg.array[0], (arr > 5).astype(np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "parameter", "match"),
    [
        ({"foreground_seeds": []}, "foreground_seeds", "empty"),
        ({"background_seeds": np.zeros((0, 2))}, "background_seeds", "empty"),
        ({"foreground_seeds": [(3, 20)]}, "foreground_seeds", "outside"),
        ({"foreground_seeds": [(-1, 2)]}, "foreground_seeds", "outside"),
        ({"foreground_seeds": [(1, 2, 3, 4)]}, "foreground_seeds", "wrong shape"),
        ({"foreground_seeds": [(1.5, 2)]}, "foreground_seeds", "integer"),
        ({"foreground_seeds": [(np.nan, 2)]}, "foreground_seeds", "NaN"),
        ({"background_seeds": [(2, 2)]}, "background_seeds", "both"),
        ({"foreground_seeds": [(0, 1, 2)], "seed_space": "world"}, "foreground_seeds", "outside"),
        ({"seed_space": "index"}, "seed_space", "seed space"),
        ({"lambda_boundary": -1}, "lambda_boundary", "boundary"),
        ({"sigma": 0}, "sigma", "sigma"),
        ({"data_model": "gmm"}, "data_model", "data model"),
    ],
)
def test_bad_inputs(kwargs, parameter, match):
    img = Image.from_array(np.arange(100, dtype=np.float32).reshape(10, 10), origin=(5.0, 5.0, 0.0))
    args = {"foreground_seeds": [(2, 2)], "background_seeds": [(8, 8)]} | kwargs
    with pytest.raises(InvalidParameterError, match=match) as err:
        graph_cut(img, **args)
    assert err.value.parameter == parameter


def test_nan_image_and_label_image():
    arr = np.ones((5, 5), np.float32)
    arr[1, 1] = np.nan
    with pytest.raises(InvalidParameterError, match="non-finite"):
        graph_cut(Image.from_array(arr), foreground_seeds=[(0, 0)], background_seeds=[(4, 4)])
    with pytest.raises(InvalidParameterError, match="label map"):
        graph_cut(Image.from_array(np.ones((5, 5), np.uint8), kind="label"), foreground_seeds=[(0, 0)],
                  background_seeds=[(4, 4)])
