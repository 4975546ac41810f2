"""Segmentation metrics against MONAI and medpy on real hippocampus masks, plus the empty-mask conventions."""

import warnings

import numpy as np
import pytest
from scipy import ndimage

from medimg.core import GeometryMismatchError, Image, InvalidParameterError
from medimg.metrics import segmentation as seg
from medimg.testing import label_phantom, require_data

SPACING = (0.9, 1.1, 2.0)  # x first


def _load(case):
    nib = pytest.importorskip("nibabel")
    path = require_data("hippocampus", "labelsTr", f"hippocampus_{case}.nii.gz")
    return np.transpose(np.asarray(nib.load(str(path)).dataobj)).astype(np.uint8)  # (Z, Y, X)


@pytest.fixture(scope="module")
def pairs():
    """(pred, gt) label maps: a perturbed copy of one case, and two different cases cropped to a common shape."""
    g = _load("001")
    pert = g.copy()
    pert[ndimage.binary_dilation(g == 1)] = 1
    pert = np.roll(pert, 2, axis=1)
    other = _load("006")
    shape = tuple(min(a, b) for a, b in zip(g.shape, other.shape))
    crop = tuple(slice(0, n) for n in shape)
    return [(pert, g), (other[crop], g[crop])]


def _onehot(mask):
    torch = pytest.importorskip("torch")
    return torch.from_numpy(mask[None, None].astype(np.float32))


@pytest.mark.realdata
@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("label", [1, 2])
def test_surface_metrics_match_monai(pairs, which, label):
    metrics = pytest.importorskip("monai.metrics")
    pred, gt = pairs[which]
    pm, gm = pred == label, gt == label
    sz = SPACING[::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_hd = metrics.compute_hausdorff_distance(_onehot(pm), _onehot(gm), include_background=True, percentile=95,
                                                    spacing=sz).item()
        ref_hd100 = metrics.compute_hausdorff_distance(_onehot(pm), _onehot(gm), include_background=True,
                                                       spacing=sz).item()
        ref_asd = metrics.compute_average_surface_distance(_onehot(pm), _onehot(gm), include_background=True,
                                                           symmetric=True, spacing=sz).item()
        ref_nsd = metrics.compute_surface_dice(_onehot(pm), _onehot(gm), [1.5], include_background=True,
                                               spacing=sz).item()
    kw = dict(spacing_mm=SPACING, label=label)
    assert seg.hd95(pred, gt, **kw) == pytest.approx(ref_hd, rel=1e-5)
    assert seg.hausdorff_distance(pred, gt, **kw) == pytest.approx(ref_hd100, rel=1e-5)
    assert seg.assd(pred, gt, **kw) == pytest.approx(ref_asd, rel=1e-5)
    assert seg.normalized_surface_dice(pred, gt, tolerance_mm=1.5, **kw) == pytest.approx(ref_nsd, rel=1e-5)
    all_scores = seg.segmentation_scores(pred, gt, spacing_mm=SPACING, tolerance_mm=1.5)[label]
    assert all_scores["hd95_mm"] == pytest.approx(ref_hd, rel=1e-5)
    assert all_scores["nsd"] == pytest.approx(ref_nsd, rel=1e-5)


@pytest.mark.realdata
@pytest.mark.parametrize("which", [0, 1])
def test_overlap_and_pooled_distances_match_medpy(pairs, which):
    mb = pytest.importorskip("medpy.metric.binary")
    pred, gt = pairs[which]
    pm, gm = pred == 1, gt == 1
    sz = SPACING[::-1]
    s = seg.segmentation_scores(pred, gt, spacing_mm=SPACING)[1]
    assert s["dice"] == pytest.approx(mb.dc(pm, gm))
    assert s["iou"] == pytest.approx(mb.jc(pm, gm))
    assert s["sensitivity"] == pytest.approx(mb.sensitivity(pm, gm))
    assert s["specificity"] == pytest.approx(mb.specificity(pm, gm))
    assert s["precision"] == pytest.approx(mb.precision(pm, gm))
    assert s["relative_volume_diff"] == pytest.approx(mb.ravd(pm, gm))
    assert seg.hd95(pred, gt, spacing_mm=SPACING, label=1, method="pooled") == pytest.approx(
        mb.hd95(pm, gm, voxelspacing=sz))
    assert seg.assd(pred, gt, spacing_mm=SPACING, label=1) == pytest.approx(mb.assd(pm, gm, voxelspacing=sz))
    assert seg.dice(pred, gt, label=1) == pytest.approx(mb.dc(pm, gm))
    assert seg.volume_difference_ml(pred, gt, spacing_mm=SPACING, label=1) == pytest.approx(
        (pm.sum() - gm.sum()) * 0.9 * 1.1 * 2.0 / 1000)


def test_mean_of_directed_assd_by_hand():
    a = np.zeros((12, 12), bool)
    a[3:8, 3:8] = True
    b = np.zeros_like(a)
    b[3:8, 3:10] = True
    sd = seg.surface_distances(a, b)
    expected = (sd.pred_to_gt.mean() + sd.gt_to_pred.mean()) / 2
    assert seg.assd(a, b, method="mean_of_directed") == pytest.approx(expected)
    assert seg.assd(a, b) == pytest.approx(np.concatenate([sd.pred_to_gt, sd.gt_to_pred]).mean())


def test_empty_mask_conventions():
    z = np.zeros((6, 7, 8), np.uint8)
    m = z.copy()
    m[2:4, 2:5, 3:6] = 1
    both = seg.segmentation_scores(z, z, labels=[1])[1]
    assert both["dice"] == 1.0 and both["iou"] == 1.0 and both["hd95_mm"] == 0.0 and both["assd_mm"] == 0.0
    assert both["nsd"] == 1.0 and both["relative_volume_diff"] == 0.0
    for pred, gt in [(z, m), (m, z)]:
        one = seg.segmentation_scores(pred, gt, labels=[1])[1]
        assert one["dice"] == 0.0 and one["nsd"] == 0.0
        assert one["hd95_mm"] == np.inf and one["assd_mm"] == np.inf
        assert not any(np.isnan(v) for v in one.values())
    assert seg.segmentation_scores(z, m, labels=[1])[1]["sensitivity"] == 0.0
    assert seg.segmentation_scores(m, z, labels=[1])[1]["relative_volume_diff"] == np.inf
    assert seg.sensitivity(m, z) == 1.0 and seg.precision(z, m) == 1.0
    assert seg.hd95(z, z) == 0.0 and seg.dice(z, z) == 1.0


def test_images_use_their_spacing_and_2d_slices():
    gt = label_phantom()
    pred = gt.replace(voxels=np.roll(gt.voxels, 1, axis=3))
    sx = gt.spacing[0]
    assert seg.hausdorff_distance(pred, gt, label=2) == pytest.approx(sx)
    s = seg.segmentation_scores(pred, gt)
    assert set(s) == {1, 2} and s[2]["hd_mm"] == pytest.approx(sx)
    # a 2D slice (Z == 1) is scored in 2D: its in-plane border is not all surface
    sl = gt.replace(voxels=gt.voxels[:, 6:7])
    assert seg.hd95(sl, sl) == 0.0
    two_d = np.zeros((1, 10, 10), bool)
    two_d[0, 2:8, 2:8] = True
    assert seg.surface_distances(two_d, two_d).pred_to_gt.size == 20


def test_grid_mismatch_and_bad_parameters():
    gt = label_phantom()
    shifted = gt.replace(geometry=gt.geometry.replace(origin=(0.0, 0.0, 0.0)))
    with pytest.raises(GeometryMismatchError):
        seg.dice(shifted, gt)
    with pytest.raises(GeometryMismatchError):
        seg.hd95(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InvalidParameterError):
        seg.hd95(np.zeros((4, 4)), np.zeros((4, 4)), spacing_mm=(1, -1))
    with pytest.raises(InvalidParameterError):
        seg.hd95(np.ones((4, 4)), np.ones((4, 4)), method="median")
    with pytest.raises(InvalidParameterError):
        seg.segmentation_scores(np.full((3, 3), 0.5), np.zeros((3, 3)))
    assert isinstance(gt, Image)


def test_float_label_maps_are_accepted():
    a = np.zeros((5, 6, 7))
    a[1:4, 1:5, 2:6] = 3.0
    s = seg.segmentation_scores(a, np.roll(a, 1, axis=2))
    assert list(s) == [3] and 0 < s[3]["dice"] < 1
