"""Instance segmentation metrics on instance label maps (0 background, 1..N one id per object).

* :func:`instance_iou_matrix`: IoU between every reference and predicted instance (one bincount pass).
* :func:`instance_f1`: TP/FP/FN, precision, recall, F1 at IoU thresholds. At each threshold t, instances are
  paired one to one to maximise the number of pairs with IoU > t (Hungarian assignment); for t >= 0.5 this is
  the same as counting pairs with IoU > t, since such pairs are unique.
* :func:`dsb_average_precision`: the 2018 Data Science Bowl score, the mean over t = 0.5, 0.55, ..., 0.95 of
  TP / (TP + FP + FN) with a match meaning IoU > t.
* :func:`aggregated_jaccard_index`: AJI (Kumar et al., IEEE TMI 2017), as in the HoVer-Net reference code.

Empty images: with no instance in either map every score is 1.0 (nothing to find, nothing wrongly found);
with instances in exactly one of them the scores are 0.0.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from medimg.core.errors import GeometryMismatchError, InvalidParameterError
from medimg.metrics._inputs import as_spatial_array

__all__ = ["instance_iou_matrix", "instance_f1", "dsb_average_precision", "aggregated_jaccard_index",
           "DSB_THRESHOLDS"]

#: IoU thresholds of the Data Science Bowl 2018 score.
DSB_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _relabel(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive ids 0..n (0 stays background) and the original id of each new one."""
    if arr.dtype == bool or (not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0)):
        raise InvalidParameterError("not an instance label map", parameter="pred/gt",
                                    expected="integer ids, 0 background", found=str(arr.dtype),
                                    fix="label connected components first (scipy.ndimage.label)")
    ids, inverse = np.unique(arr, return_inverse=True)
    if ids[0] != 0:
        ids = np.concatenate([[0], ids])
        inverse = inverse + 1
    return inverse.reshape(arr.shape), ids[1:]


def _prepare(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, _ = as_spatial_array(pred, name="pred")
    g, _ = as_spatial_array(gt, name="gt")
    if p.shape != g.shape:
        raise GeometryMismatchError("pred and gt instance maps differ in size", expected=f"shape {g.shape}",
                                    found=f"shape {p.shape}", fix="compare maps of the same image")
    return p, g


def instance_iou_matrix(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every (gt instance, pred instance) pair.

    Args:
        pred, gt: instance label maps (Y, X) or (Z, Y, X), or Images.

    Returns:
        (iou (n_gt, n_pred), gt ids, pred ids), rows/columns in increasing id order.

    >>> g = np.array([[1, 1, 0, 2]]); p = np.array([[3, 0, 0, 2]])
    >>> instance_iou_matrix(p, g)[0]
    array([[0. , 0.5],
           [1. , 0. ]])
    """
    p, g = _prepare(pred, gt)
    g_lab, g_ids = _relabel(g)
    p_lab, p_ids = _relabel(p)
    n_g, n_p = g_ids.size + 1, p_ids.size + 1
    joint = np.bincount((g_lab.ravel().astype(np.int64) * n_p + p_lab.ravel()), minlength=n_g * n_p)
    joint = joint.reshape(n_g, n_p)
    area_g, area_p = joint.sum(1), joint.sum(0)
    inter = joint[1:, 1:].astype(float)
    union = area_g[1:, None] + area_p[None, 1:] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return iou, g_ids, p_ids


def _matches(iou: np.ndarray, threshold: float) -> int:
    """Largest number of one-to-one pairs with IoU > threshold."""
    ok = iou > threshold
    if not ok.any():
        return 0
    if threshold >= 0.5:
        return int(ok.sum())
    rows, cols = np.nonzero(ok.any(1))[0], np.nonzero(ok.any(0))[0]
    sub = ok[np.ix_(rows, cols)]
    # maximise the number of pairs first, then their total IoU (tie-break term sums to < 1)
    weight = sub * (1.0 + iou[np.ix_(rows, cols)] / (min(sub.shape) + 1))
    r, c = linear_sum_assignment(weight, maximize=True)
    return int(sub[r, c].sum())


def instance_f1(pred: Any, gt: Any, *, iou_thresholds: Sequence[float] = (0.5,)) -> dict[float, dict[str, float]]:
    """Detection-style counts and F1 of instances at each IoU threshold.

    Returns:
        ``{threshold: {"tp", "fp", "fn", "precision", "recall", "f1"}}``; precision/recall/F1 are 1.0 when
        their denominator is 0 (no instances on that side).

    >>> g = np.array([[1, 1, 0, 2, 2]]); p = np.array([[1, 1, 0, 0, 2]])
    >>> instance_f1(p, g, iou_thresholds=[0.4, 0.6])[0.6]["f1"]
    0.5
    """
    iou, g_ids, p_ids = instance_iou_matrix(pred, gt)
    out: dict[float, dict[str, float]] = {}
    for t in iou_thresholds:
        tp = _matches(iou, float(t))
        fp, fn = p_ids.size - tp, g_ids.size - tp
        out[float(t)] = {
            "tp": float(tp), "fp": float(fp), "fn": float(fn),
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        }
    return out


def dsb_average_precision(pred: Any, gt: Any, *, thresholds: Sequence[float] = DSB_THRESHOLDS) -> float:
    """Data Science Bowl 2018 mean "AP": mean over thresholds of TP / (TP + FP + FN), match = IoU > t.

    1.0 when neither map holds an instance.
    """
    iou, g_ids, p_ids = instance_iou_matrix(pred, gt)
    scores = []
    for t in thresholds:
        tp = _matches(iou, float(t))
        denom = g_ids.size + p_ids.size - tp
        scores.append(tp / denom if denom else 1.0)
    return float(np.mean(scores))


def aggregated_jaccard_index(pred: Any, gt: Any) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017).

    Each reference instance is paired with the predicted instance of highest IoU (none if it overlaps none);
    AJI = sum |G ∩ S| / (sum |G ∪ S| + area of predicted instances never paired). 1.0 with no instance in
    either map, 0.0 with instances on one side only.
    """
    iou, g_ids, p_ids = instance_iou_matrix(pred, gt)
    if g_ids.size == 0 and p_ids.size == 0:
        return 1.0
    p, g = _prepare(pred, gt)
    g_lab, _ = _relabel(g)
    p_lab, _ = _relabel(p)
    n_p = p_ids.size + 1
    joint = np.bincount(g_lab.ravel().astype(np.int64) * n_p + p_lab.ravel(),
                        minlength=(g_ids.size + 1) * n_p).reshape(g_ids.size + 1, n_p)
    area_g, area_p = joint.sum(1)[1:], joint.sum(0)[1:]
    inter_all = joint[1:, 1:]
    inter = union = 0
    used = np.zeros(p_ids.size, bool)
    for k in range(g_ids.size):
        if p_ids.size and iou[k].max() > 0:
            j = int(np.argmax(iou[k]))
            inter += int(inter_all[k, j])
            union += int(area_g[k] + area_p[j] - inter_all[k, j])
            used[j] = True
        else:
            union += int(area_g[k])
    union += int(area_p[~used].sum())
    return float(inter / union) if union else 1.0
