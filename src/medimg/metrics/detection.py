"""Detection metrics on axis-aligned boxes: IoU, average precision / mAP (Pascal VOC style), FROC.

Boxes are (N, 4) arrays ``[x_min, y_min, x_max, y_max]`` in continuous coordinates (pixels or mm; area =
width * height, no "+1" pixel convention). Inputs are lists with one entry per image.

Matching (the same for AP and FROC): detections of all images are sorted by score, highest first; each one
is a true positive when its best-overlapping reference box in the same image has IoU >= ``iou_threshold`` and
that reference was not matched by a higher-scored detection, otherwise a false positive (Pascal VOC devkit
rule, with >= instead of >).

AP interpolation: ``"all_points"`` (VOC 2010+, area under the monotone precision envelope) or ``"11_point"``
(VOC 2007, mean of the envelope at recall 0, 0.1, ..., 1). With no reference box, AP is undefined and
:func:`average_precision` raises; :func:`mean_average_precision` leaves such classes out and says so.

FROC: sensitivity against the mean number of false positives per image over all score thresholds; the
sensitivity at given FP rates is linearly interpolated on that curve, starting from (0, 0) (as in the
CAMELYON16 / LUNA16 evaluation code and ``monai.metrics.compute_froc_score``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medimg.core.errors import InvalidParameterError

__all__ = ["box_iou", "match_detections", "average_precision", "mean_average_precision", "froc",
           "FROC_FP_RATES"]

#: The usual FROC false-positive rates per image (LUNA16).
FROC_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _boxes(b: np.ndarray | Sequence, name: str) -> np.ndarray:
    arr = np.asarray(b, dtype=float).reshape(-1, 4) if np.size(b) else np.zeros((0, 4))
    if np.any(arr[:, 2] < arr[:, 0]) or np.any(arr[:, 3] < arr[:, 1]):
        raise InvalidParameterError("box with max < min", parameter=name, expected="[x_min, y_min, x_max, y_max]",
                                    found=arr[(arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])][0].tolist(),
                                    fix="convert (x, y, w, h) boxes to corners first")
    return arr


def box_iou(a: np.ndarray | Sequence, b: np.ndarray | Sequence) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of two sets of corner boxes.

    >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]])
    array([[0.33333333, 0.        ]])
    """
    a, b = _boxes(a, "a"), _boxes(b, "b")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(pred_boxes: Sequence, pred_scores: Sequence, gt_boxes: Sequence, *,
                     iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """Greedy VOC matching over all images.

    Returns:
        (scores sorted high to low, is_true_positive for each, number of reference boxes).
    """
    if not (len(pred_boxes) == len(pred_scores) == len(gt_boxes)):
        raise InvalidParameterError("lists of different lengths", parameter="pred_boxes/pred_scores/gt_boxes",
                                    expected="one entry per image in each",
                                    found=f"{len(pred_boxes)}, {len(pred_scores)}, {len(gt_boxes)}",
                                    fix="give an (empty) array for images without boxes")
    entries = []
    gts = [_boxes(g, "gt_boxes") for g in gt_boxes]
    for i, (pb, ps) in enumerate(zip(pred_boxes, pred_scores)):
        pb = _boxes(pb, "pred_boxes")
        ps = np.asarray(ps, dtype=float).ravel()
        if ps.size != pb.shape[0]:
            raise InvalidParameterError("one score per box expected", parameter="pred_scores",
                                        expected=f"{pb.shape[0]} scores (image {i})", found=f"{ps.size}",
                                        fix="give one score per predicted box")
        ious = box_iou(pb, gts[i])
        for k in range(pb.shape[0]):
            entries.append((ps[k], i, ious[k]))
    order = sorted(range(len(entries)), key=lambda k: -entries[k][0])  # stable: ties keep input order
    used = [np.zeros(g.shape[0], bool) for g in gts]
    scores = np.array([entries[k][0] for k in order], dtype=float)
    tp = np.zeros(len(order), bool)
    for n, k in enumerate(order):
        _, img, ious = entries[k]
        if ious.size == 0:
            continue
        j = int(np.argmax(ious))
        if ious[j] >= iou_threshold and not used[img][j]:
            used[img][j] = True
            tp[n] = True
    return scores, tp, int(sum(g.shape[0] for g in gts))


def _ap_from_matches(tp: np.ndarray, n_gt: int, interpolation: str) -> float:
    if interpolation not in ("all_points", "11_point"):
        raise InvalidParameterError("unknown interpolation", parameter="interpolation",
                                    expected="'all_points' or '11_point'", found=interpolation,
                                    fix="use interpolation='all_points'")
    if n_gt == 0:
        raise InvalidParameterError("AP is undefined without reference boxes", parameter="gt_boxes",
                                    expected="at least one reference box", found="none",
                                    fix="evaluate on images that contain objects")
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    recall = ctp / n_gt
    prec = ctp / np.maximum(ctp + cfp, 1)
    if interpolation == "11_point":
        return float(np.mean([prec[recall >= r].max() if np.any(recall >= r) else 0.0
                              for r in np.linspace(0, 1, 11)]))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def average_precision(pred_boxes: Sequence, pred_scores: Sequence, gt_boxes: Sequence, *,
                      iou_threshold: float = 0.5, interpolation: str = "all_points") -> float:
    """Average precision of one class over a set of images.

    Args:
        pred_boxes: per image, (N_i, 4) predicted boxes.
        pred_scores: per image, (N_i,) confidence scores.
        gt_boxes: per image, (M_i, 4) reference boxes.
        iou_threshold: IoU needed for a true positive.
        interpolation: "all_points" or "11_point" (see the module docstring).

    >>> average_precision([[[0, 0, 2, 2], [5, 5, 6, 6]]], [[0.9, 0.8]], [[[0, 0, 2, 2]]])
    1.0
    """
    _, tp, n_gt = match_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold=iou_threshold)
    return _ap_from_matches(tp, n_gt, interpolation)


def mean_average_precision(pred_boxes: Sequence, pred_scores: Sequence, pred_labels: Sequence, gt_boxes: Sequence,
                           gt_labels: Sequence, *, iou_threshold: float = 0.5,
                           interpolation: str = "all_points") -> dict[str, object]:
    """Mean of per-class AP over the classes that have reference boxes.

    Returns:
        ``{"map": float, "ap": {class: AP}, "classes_without_reference": [classes with detections only]}``.
    """
    classes = sorted({c for labs in gt_labels for c in np.asarray(labs).ravel().tolist()})
    pred_only = sorted({c for labs in pred_labels for c in np.asarray(labs).ravel().tolist()} - set(classes))
    if not classes:
        raise InvalidParameterError("mAP is undefined without reference boxes", parameter="gt_boxes",
                                    expected="at least one reference box", found="none",
                                    fix="evaluate on images that contain objects")
    ap = {}
    for c in classes:
        pb = [_boxes(b, "pred_boxes")[np.asarray(lab).ravel() == c] for b, lab in zip(pred_boxes, pred_labels)]
        ps = [np.asarray(s, float).ravel()[np.asarray(lab).ravel() == c] for s, lab in zip(pred_scores, pred_labels)]
        gb = [_boxes(b, "gt_boxes")[np.asarray(lab).ravel() == c] for b, lab in zip(gt_boxes, gt_labels)]
        ap[c] = average_precision(pb, ps, gb, iou_threshold=iou_threshold, interpolation=interpolation)
    return {"map": float(np.mean(list(ap.values()))), "ap": ap, "classes_without_reference": pred_only}


def froc(pred_boxes: Sequence, pred_scores: Sequence, gt_boxes: Sequence, *, iou_threshold: float = 0.5,
         fp_rates: Sequence[float] = FROC_FP_RATES) -> dict[str, object]:
    """Free-response ROC: sensitivity at given mean numbers of false positives per image.

    Returns:
        ``{"fp_per_image": curve x, "sensitivity": curve y, "fp_rates": fp_rates,
        "sensitivity_at": sensitivity at each rate, "score": their mean (the CPM of LUNA16)}``.
    """
    scores, tp, n_gt = match_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold=iou_threshold)
    if n_gt == 0:
        raise InvalidParameterError("FROC is undefined without reference boxes", parameter="gt_boxes",
                                    expected="at least one reference box", found="none",
                                    fix="evaluate on images that contain objects")
    n_images = max(len(gt_boxes), 1)
    # one curve point per distinct score (detections tied in score enter together)
    last = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1] if scores.size else np.zeros(0, int)
    fps = np.r_[0.0, np.cumsum(~tp)[last] / n_images]
    sens = np.r_[0.0, np.cumsum(tp)[last] / n_gt]
    at = np.interp(np.asarray(fp_rates, float), fps, sens)
    return {"fp_per_image": fps.tolist(), "sensitivity": sens.tolist(), "fp_rates": [float(r) for r in fp_rates],
            "sensitivity_at": at.tolist(), "score": float(np.mean(at))}
