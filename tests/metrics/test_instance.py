"""Instance metrics on real DSB 2018 nuclei label maps, checked against the plain Kaggle formula."""

import numpy as np
import pytest
from scipy import ndimage

from medimg.metrics import instance


def _kaggle_score(pred, gt):
    """The Kaggle kernel formula written plainly (match = IoU > t, TP/(TP+FP+FN))."""
    true_ids = [v for v in np.unique(gt) if v]
    pred_ids = [v for v in np.unique(pred) if v]
    iou = np.zeros((len(true_ids), len(pred_ids)))
    for i, t in enumerate(true_ids):
        for j, p in enumerate(pred_ids):
            a, b = gt == t, pred == p
            inter = np.sum(a & b)
            if inter:
                iou[i, j] = inter / np.sum(a | b)
    scores = []
    for th in np.arange(0.5, 1.0, 0.05):
        m = iou > th
        tp = np.sum(np.sum(m, axis=1) == 1)
        fp = np.sum(np.sum(m, axis=0) == 0)
        fn = np.sum(np.sum(m, axis=1) == 0)
        scores.append(tp / (tp + fp + fn))
    return float(np.mean(scores))


def _aji_reference(pred, gt):
    """AJI as in the HoVer-Net reference (get_fast_aji), written with plain loops."""
    gt_ids = [v for v in np.unique(gt) if v]
    pred_ids = [v for v in np.unique(pred) if v]
    used, inter_sum, union_sum = set(), 0, 0
    for g in gt_ids:
        gm = gt == g
        best, best_iou = None, 0.0
        for p in pred_ids:
            pm = pred == p
            inter = np.sum(gm & pm)
            if inter and inter / np.sum(gm | pm) > best_iou:
                best, best_iou = p, inter / np.sum(gm | pm)
        if best is None:
            union_sum += gm.sum()
        else:
            pm = pred == best
            inter_sum += np.sum(gm & pm)
            union_sum += np.sum(gm | pm)
            used.add(best)
    for p in pred_ids:
        if p not in used:
            union_sum += np.sum(pred == p)
    return inter_sum / union_sum


@pytest.fixture(scope="module")
def nuclei(shared_data):
    from PIL import Image as PILImage

    folder = shared_data / "nuclei_dsb2018" / "labels"
    files = sorted(folder.glob("*.png"))[:4]
    if not files:
        pytest.skip("no DSB label maps")
    return [np.asarray(PILImage.open(f)).astype(np.int32) for f in files]


def _perturb(gt, seed):
    rng = np.random.default_rng(seed)
    pred = np.zeros_like(gt)
    ids = [v for v in np.unique(gt) if v]
    for v in ids:
        m = gt == v
        r = rng.random()
        if r < 0.15:
            continue  # missed nucleus
        if r < 0.5:
            m = ndimage.binary_erosion(m)
        elif r < 0.7:
            m = ndimage.binary_dilation(m, iterations=2) & (gt == 0) | m
        pred[m & (pred == 0)] = v + 1000
    # merge two instances and add a false positive blob
    if len(ids) > 2:
        pred[pred == ids[1] + 1000] = ids[0] + 1000
    pred[:4, :4] = 9999
    return pred


@pytest.mark.realdata
def test_dsb_ap_and_aji_match_references(nuclei):
    for k, gt in enumerate(nuclei):
        pred = _perturb(gt, k)
        assert instance.dsb_average_precision(pred, gt) == pytest.approx(_kaggle_score(pred, gt))
        assert instance.aggregated_jaccard_index(pred, gt) == pytest.approx(_aji_reference(pred, gt))
        assert instance.dsb_average_precision(gt, gt) == 1.0
        f1 = instance.instance_f1(pred, gt, iou_thresholds=[0.1, 0.5, 0.9])
        assert f1[0.1]["tp"] >= f1[0.5]["tp"] >= f1[0.9]["tp"]


def test_hand_computed_and_empty():
    gt = np.array([[1, 1, 0, 2, 2, 0, 3]])
    pred = np.array([[5, 5, 0, 0, 6, 0, 0]])
    f = instance.instance_f1(pred, gt, iou_thresholds=[0.4, 0.6])
    assert f[0.4] == {"tp": 2.0, "fp": 0.0, "fn": 1.0, "precision": 1.0, "recall": 2 / 3, "f1": 0.8}
    assert f[0.6]["tp"] == 1.0
    z = np.zeros((3, 3), int)
    assert instance.dsb_average_precision(z, z) == 1.0 and instance.aggregated_jaccard_index(z, z) == 1.0
    assert instance.dsb_average_precision(z, gt[:, :3].repeat(3, 0)) == 0.0


def test_low_threshold_uses_one_to_one_assignment():
    # gt 1 overlaps pred 7 and 8 at IoU 1/3 each; gt 2 overlaps only pred 8: the best assignment pairs both
    gt = np.array([[1, 1, 1, 2, 2, 2]])
    pred = np.array([[7, 0, 8, 8, 0, 0]])
    assert instance.instance_f1(pred, gt, iou_thresholds=[0.1])[0.1]["tp"] == 2.0
