"""Detection metrics: hand-computed cases, a plain VOC reference on real BCCD boxes, FROC against MONAI."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from medimg.metrics import detection as det


def _read_voc(path):
    root = ET.parse(path).getroot()
    boxes, names = [], []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        boxes.append([float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
        names.append(obj.find("name").text)
    return np.array(boxes).reshape(-1, 4), names


@pytest.fixture(scope="module")
def bccd(shared_data):
    files = sorted((shared_data / "blood_cells_bccd" / "Annotations").glob("*.xml"))[:25]
    if not files:
        pytest.skip("no BCCD annotations")
    rng = np.random.default_rng(0)
    gts, preds, scores = [], [], []
    for f in files:
        g, _ = _read_voc(f)
        gts.append(g)
        keep = rng.random(len(g)) > 0.15
        jit = g[keep] + rng.normal(0, 6, (int(keep.sum()), 4))
        jit[:, 2:] = np.maximum(jit[:, 2:], jit[:, :2] + 1)
        fp = rng.uniform(0, 400, (2, 2))
        fp = np.concatenate([fp, fp + 40], 1)
        preds.append(np.concatenate([jit, fp]))
        scores.append(np.round(rng.random(len(jit) + 2), 2) + 0.01)
    return preds, scores, gts


def _voc_reference(preds, scores, gts, thr):
    """VOC devkit voc_eval logic (continuous areas, >= threshold), all-point interpolation."""
    dets = [(s, i, b) for i, (pb, ps) in enumerate(zip(preds, scores)) for b, s in zip(pb, ps)]
    dets.sort(key=lambda d: -d[0])
    seen = [np.zeros(len(g), bool) for g in gts]
    tp = np.zeros(len(dets))
    for k, (_, i, b) in enumerate(dets):
        g = gts[i]
        ixmin, iymin = np.maximum(g[:, 0], b[0]), np.maximum(g[:, 1], b[1])
        ixmax, iymax = np.minimum(g[:, 2], b[2]), np.minimum(g[:, 3], b[3])
        inter = np.maximum(ixmax - ixmin, 0) * np.maximum(iymax - iymin, 0)
        uni = (b[2] - b[0]) * (b[3] - b[1]) + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter
        ov = inter / uni
        j = int(np.argmax(ov))
        if ov[j] >= thr and not seen[i][j]:
            tp[k], seen[i][j] = 1, True
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    rec, prec = ctp / sum(len(g) for g in gts), ctp / (ctp + cfp)
    mrec, mpre = np.r_[0, rec, 1], np.r_[0, prec, 0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])), tp


@pytest.mark.realdata
def test_ap_matches_voc_reference_and_froc_matches_monai(bccd):
    preds, scores, gts = bccd
    for thr in (0.3, 0.5, 0.7):
        ref, _ = _voc_reference(preds, scores, gts, thr)
        assert det.average_precision(preds, scores, gts, iou_threshold=thr) == pytest.approx(ref)
    froc_mod = pytest.importorskip("monai.metrics.froc")
    sorted_scores, tp, n_gt = det.match_detections(preds, scores, gts, iou_threshold=0.5)
    fp_probs = sorted_scores[~tp]
    tp_probs = np.r_[sorted_scores[tp], np.zeros(n_gt - int(tp.sum()))]  # missed targets: probability 0
    fps, sens = froc_mod.compute_froc_curve_data(fp_probs, tp_probs, n_gt, len(gts))
    ref = froc_mod.compute_froc_score(fps, sens, eval_thresholds=det.FROC_FP_RATES)
    assert det.froc(preds, scores, gts)["score"] == pytest.approx(ref)


def test_hand_computed_ap_and_map():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[0, 0, 4, 4]])]
    preds = [np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]]), np.zeros((0, 4))]
    scores = [np.array([0.9, 0.8, 0.7]), np.zeros(0)]
    # ranked: TP (P=1, R=1/3), FP, TP (P=2/3, R=2/3) -> all-point AP = 1/3 * 1 + 1/3 * 2/3
    assert det.average_precision(preds, scores, gts) == pytest.approx(1 / 3 + 2 / 9)
    # 11-point: recall 0..0.3 -> 1, 0.4..0.6 -> 2/3, 0.7..1 -> 0
    assert det.average_precision(preds, scores, gts, interpolation="11_point") == pytest.approx(
        (4 * 1 + 3 * 2 / 3) / 11)
    labels = [np.array([0, 0, 1]), np.zeros(0, int)]
    res = det.mean_average_precision(preds, scores, labels, gts, [np.array([0, 1]), np.array([0])])
    assert res["ap"][0] == pytest.approx(0.5) and res["ap"][1] == pytest.approx(1.0)
    assert res["map"] == pytest.approx(0.75)
    f = det.froc(preds, scores, gts, fp_rates=[0.25, 0.5, 1.0])
    assert f["sensitivity_at"] == pytest.approx([1 / 3, 2 / 3, 2 / 3])


def test_box_iou():
    np.testing.assert_allclose(det.box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2]]), [[1 / 7, 1.0]])
