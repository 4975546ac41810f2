"""Spacing-aware segmentation metrics: overlap, surface distances (mm), NSD, confusion rates, volume error.

Inputs: ``pred`` and ``gt`` are :class:`medimg.core.Image` (spacing from the geometry, grids checked with
``check_same_grid``) or arrays (Y, X) / (Z, Y, X) with ``spacing_mm`` given x first, like
:attr:`Geometry.spacing` (default 1 mm). A single-slice volume (Z == 1) is treated as 2D. Boolean arrays are
masks; for label maps ``label`` picks a class (``label=None``: every non-zero voxel is foreground).

Definitions (all distances in mm, Euclidean, with the voxel spacing):

* Surface voxels: a foreground voxel with at least one face neighbour (connectivity 1) in the background,
  voxels on the image border included (``mask XOR erode(mask)``, as MONAI and medpy do).
* ``d(A->B)``: for each surface voxel of A, the distance to the nearest surface voxel of B.
* Hausdorff at percentile q, ``method="max_of_directed"`` (default, the same as
  ``monai.metrics.compute_hausdorff_distance(percentile=q)``): ``max(P_q(d(pred->gt)), P_q(d(gt->pred)))``.
  ``method="pooled"`` (the same as ``medpy.metric.binary.hd95``): ``P_q`` of both sets pooled. Percentiles
  interpolate linearly (numpy / torch.quantile default).
* ASSD, ``method="pooled"`` (default, MONAI ``compute_average_surface_distance(symmetric=True)``): the mean of
  both sets pooled (also medpy 0.5 ``assd``); ``method="mean_of_directed"``: the mean of the two directed
  means (Heimann et al. 2009, older medpy releases).
* NSD at tolerance tau mm (Nikolov et al. 2021, counted in surface voxels like MONAI
  ``compute_surface_dice(use_subvoxels=False)``): ``(#{d(pred->gt) <= tau} + #{d(gt->pred) <= tau}) /
  (#surface(pred) + #surface(gt))``.

Empty masks (a documented convention, never an accidental NaN):

============================  ==========  ========================================
case                          Dice / IoU  HD / ASSD           NSD
============================  ==========  ========================================
both empty                    1.0         0.0                 1.0
exactly one empty             0.0         ``inf``             0.0
============================  ==========  ========================================

Sensitivity is 1.0 when the reference is empty (nothing was missed), precision is 1.0 when the prediction is
empty (nothing was wrongly found), specificity is 1.0 when there is no background. The relative volume
difference is 0.0 when both are empty and ``inf`` when only the reference is. Summaries
(:mod:`medimg.metrics.evaluate`) leave ``inf`` out and report how many values they left out.

Speed: each class is cropped to the bounding box of pred OR gt (plus one voxel) before erosion, bounding boxes
of all classes come from one ``scipy.ndimage.find_objects`` pass, surface voxels shared by both surfaces are
0 mm without a search, and the others are found with a k-d tree (exact Euclidean distances).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from medimg.core.errors import InvalidParameterError
from medimg.metrics._inputs import prepare_pair

__all__ = [
    "SurfaceDistances", "surface_distances", "dice", "dice_per_label", "iou", "hausdorff_distance", "hd95", "assd",
    "normalized_surface_dice", "sensitivity", "specificity", "precision", "volume_difference_ml",
    "relative_volume_difference", "segmentation_scores", "SEGMENTATION_METRICS",
]

#: Names of the per-class values :func:`segmentation_scores` returns, in column order.
SEGMENTATION_METRICS = (
    "dice", "iou", "hd95_mm", "hd_mm", "assd_mm", "nsd", "sensitivity", "specificity", "precision",
    "volume_pred_ml", "volume_gt_ml", "volume_diff_ml", "relative_volume_diff",
)

_HD_METHODS = ("max_of_directed", "pooled")
_ASSD_METHODS = ("pooled", "mean_of_directed")


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances (mm) between a prediction and a reference of one class.

    Attributes:
        pred_to_gt: for each surface voxel of pred, the distance to the nearest gt surface voxel (mm).
        gt_to_pred: for each surface voxel of gt, the distance to the nearest pred surface voxel (mm).
        pred_empty, gt_empty: whether each mask is empty.
    """

    pred_to_gt: np.ndarray
    gt_to_pred: np.ndarray
    pred_empty: bool
    gt_empty: bool

    def _one_empty(self) -> bool | None:
        """True if exactly one mask is empty, False if none is, None if both are."""
        if self.pred_empty and self.gt_empty:
            return None
        return self.pred_empty or self.gt_empty

    def hausdorff(self, percentile: float = 100.0, *, method: str = "max_of_directed") -> float:
        """Hausdorff distance (mm) at ``percentile`` (100 = maximum); see the module docstring for ``method``."""
        _check_choice(method, _HD_METHODS, "method")
        if not 0 <= percentile <= 100:
            raise InvalidParameterError("percentile out of range", parameter="percentile", expected="0..100",
                                        found=percentile, fix="give a percentile such as 95")
        state = self._one_empty()
        if state is None:
            return 0.0
        if state:
            return float("inf")
        if method == "pooled":
            return float(np.percentile(np.concatenate([self.pred_to_gt, self.gt_to_pred]), percentile))
        return float(max(np.percentile(self.pred_to_gt, percentile), np.percentile(self.gt_to_pred, percentile)))

    def assd(self, *, method: str = "pooled") -> float:
        """Average symmetric surface distance (mm); see the module docstring for ``method``."""
        _check_choice(method, _ASSD_METHODS, "method")
        state = self._one_empty()
        if state is None:
            return 0.0
        if state:
            return float("inf")
        if method == "mean_of_directed":
            return float((self.pred_to_gt.mean() + self.gt_to_pred.mean()) / 2)
        return float(np.concatenate([self.pred_to_gt, self.gt_to_pred]).mean())

    def nsd(self, tolerance_mm: float) -> float:
        """Normalised surface Dice at ``tolerance_mm`` (surface voxels within the tolerance / all of them)."""
        if not np.isfinite(tolerance_mm) or tolerance_mm < 0:
            raise InvalidParameterError("invalid tolerance", parameter="tolerance_mm", expected="a number >= 0",
                                        found=tolerance_mm, fix="give the tolerance in mm, e.g. 1.0")
        state = self._one_empty()
        if state is None:
            return 1.0
        if state:
            return 0.0
        good = np.count_nonzero(self.pred_to_gt <= tolerance_mm) + np.count_nonzero(self.gt_to_pred <= tolerance_mm)
        return float(good / (self.pred_to_gt.size + self.gt_to_pred.size))


def _check_choice(value: str, choices: Sequence[str], name: str) -> None:
    if value not in choices:
        raise InvalidParameterError("unknown choice", parameter=name, expected=" or ".join(choices), found=value,
                                    fix=f"use one of {', '.join(choices)}")


# ---- low-level helpers ---------------------------------------------------------------------------------------

def _binarize(arr: np.ndarray, label: int | None) -> np.ndarray:
    if arr.dtype == bool:
        if label not in (None, 1, True):
            raise InvalidParameterError("label given for a boolean mask", parameter="label",
                                        expected="None (or 1) for boolean masks", found=label,
                                        fix="pass the label map instead of a mask, or drop label")
        return arr
    return arr != 0 if label is None else arr == label


def _surface(mask: np.ndarray) -> np.ndarray:
    """mask XOR erode(mask), face connectivity, background beyond the array border (scipy border_value=0)."""
    if not mask.any():
        return np.zeros_like(mask)
    padded = np.pad(mask, 1)
    eroded = mask.copy()
    core = tuple(slice(1, -1) for _ in range(mask.ndim))
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            sl = list(core)
            sl[axis] = slice(1 + shift, padded.shape[axis] - 1 + shift)
            eroded &= padded[tuple(sl)]
    return mask & ~eroded


def _crop_box(slices: Iterable[tuple[slice, ...] | None], shape: tuple[int, ...], margin: int = 1):
    boxes = [s for s in slices if s is not None]
    if not boxes:
        return None
    lo = [min(b[i].start for b in boxes) for i in range(len(shape))]
    hi = [max(b[i].stop for b in boxes) for i in range(len(shape))]
    return tuple(slice(max(0, a - margin), min(n, b + margin)) for a, b, n in zip(lo, hi, shape))


def _directed(surf_from: np.ndarray, surf_to: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) from each voxel of ``surf_from`` (C order) to the nearest voxel of ``surf_to``.

    Exact Euclidean nearest neighbours from a k-d tree over the physical coordinates of ``surf_to``; voxels
    that lie on both surfaces are 0 without a query (most of them, for good predictions).
    """
    scale = np.asarray(spacing, dtype=float)
    shared = surf_to[surf_from]
    out = np.zeros(shared.size)
    todo = ~shared
    if todo.any():
        targets = np.argwhere(surf_to) * scale
        queries = np.argwhere(surf_from & ~surf_to) * scale
        tree = cKDTree(targets, leafsize=32, balanced_tree=False, compact_nodes=False)
        out[todo] = tree.query(queries, k=1)[0]
    return out


def _surface_distances_cropped(pm: np.ndarray, gm: np.ndarray, spacing: tuple[float, ...]) -> SurfaceDistances:
    pe, ge = not pm.any(), not gm.any()
    if pe or ge:
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, pe, ge)
    sp, sg = _surface(pm), _surface(gm)
    return SurfaceDistances(_directed(sp, sg, spacing), _directed(sg, sp, spacing), False, False)


def _mask_pair(pred: Any, gt: Any, spacing_mm: Any, label: int | None):
    p, g, spacing = prepare_pair(pred, gt, spacing_mm)
    pm, gm = _binarize(p, label), _binarize(g, label)
    box = _crop_box([_bbox(pm), _bbox(gm)], pm.shape)
    return pm, gm, spacing, box


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    objs = ndimage.find_objects(mask.astype(np.uint8, copy=False))
    return objs[0] if objs else None


# ---- public functions on one class ----------------------------------------------------------------------------

def surface_distances(pred: Any, gt: Any, *, spacing_mm: float | Sequence[float] | None = None,
                      label: int | None = None) -> SurfaceDistances:
    """Directed surface distances (mm) between ``pred`` and ``gt`` for one class.

    Args:
        pred, gt: Images or arrays (Y, X) / (Z, Y, X) on the same grid (bool masks or label maps).
        spacing_mm: (sx, sy[, sz]) mm for arrays, x first; None: 1 mm (or the Images' spacing).
        label: class of a label map; None: non-zero voxels.

    Returns:
        :class:`SurfaceDistances`, from which HD at any percentile, ASSD and NSD are derived without recomputing.

    Example:
        >>> m = np.zeros((9, 9), bool); m[2:7, 2:7] = True
        >>> s = surface_distances(m, np.roll(m, 1, axis=1), spacing_mm=(0.5, 1.0))
        >>> s.hausdorff(100), s.nsd(0.5)
        (0.5, 1.0)
    """
    pm, gm, spacing, box = _mask_pair(pred, gt, spacing_mm, label)
    if box is None:
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, True, True)
    return _surface_distances_cropped(pm[box], gm[box], spacing)


def hausdorff_distance(pred: Any, gt: Any, *, percentile: float = 100.0, method: str = "max_of_directed",
                       spacing_mm: float | Sequence[float] | None = None, label: int | None = None) -> float:
    """Hausdorff distance in mm at ``percentile`` (see the module docstring for ``method`` and empty masks)."""
    return surface_distances(pred, gt, spacing_mm=spacing_mm, label=label).hausdorff(percentile, method=method)


def hd95(pred: Any, gt: Any, *, method: str = "max_of_directed", spacing_mm: float | Sequence[float] | None = None,
         label: int | None = None) -> float:
    """95th-percentile Hausdorff distance in mm (MONAI definition by default; ``method="pooled"``: medpy).

    >>> m = np.zeros((1, 9, 9), bool); m[0, 2:7, 2:7] = True
    >>> round(hd95(m, np.roll(m, 2, axis=2), spacing_mm=(0.7, 0.7, 3.0)), 6)
    1.4
    """
    return hausdorff_distance(pred, gt, percentile=95.0, method=method, spacing_mm=spacing_mm, label=label)


def assd(pred: Any, gt: Any, *, method: str = "pooled", spacing_mm: float | Sequence[float] | None = None,
         label: int | None = None) -> float:
    """Average symmetric surface distance in mm (MONAI definition by default; see the module docstring)."""
    return surface_distances(pred, gt, spacing_mm=spacing_mm, label=label).assd(method=method)


def normalized_surface_dice(pred: Any, gt: Any, *, tolerance_mm: float = 1.0,
                            spacing_mm: float | Sequence[float] | None = None, label: int | None = None) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (fraction of surface voxels within the tolerance)."""
    return surface_distances(pred, gt, spacing_mm=spacing_mm, label=label).nsd(tolerance_mm)


def _counts(pred: Any, gt: Any, label: int | None) -> tuple[int, int, int, int]:
    p, g, _ = prepare_pair(pred, gt, 1.0 if not _any_image(pred, gt) else None)
    pm, gm = _binarize(p, label), _binarize(g, label)
    tp = int(np.count_nonzero(pm & gm))
    n_p, n_g = int(np.count_nonzero(pm)), int(np.count_nonzero(gm))
    fp, fn = n_p - tp, n_g - tp
    return tp, fp, fn, pm.size - tp - fp - fn


def _any_image(*xs: Any) -> bool:
    from medimg.core.image import Image

    return all(isinstance(x, Image) for x in xs)


def _ratio(num: float, den: float, empty_value: float) -> float:
    return float(num / den) if den > 0 else empty_value


def dice(pred: Any, gt: Any, *, label: int | None = None) -> float:
    """Dice coefficient 2|P∩G| / (|P| + |G|); 1.0 when both are empty.

    >>> dice(np.array([[1, 1, 0]]), np.array([[1, 0, 0]]))
    0.6666666666666666
    """
    tp, fp, fn, _ = _counts(pred, gt, label)
    return _ratio(2 * tp, 2 * tp + fp + fn, 1.0)


def dice_per_label(pred: Any, gt: Any, labels: Sequence[int]) -> dict[int, float]:
    """Dice of each label value in ``labels`` (1.0 where a label is absent from both): the one per-label Dice that
    trainers, validation and registration use.

    >>> dice_per_label(np.array([[1, 2, 0]]), np.array([[1, 0, 0]]), [1, 2])
    {1: 1.0, 2: 0.0}
    """
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise InvalidParameterError("prediction and reference shapes differ", parameter="pred",
                                    expected=f"shape {g.shape}", found=f"shape {p.shape}",
                                    fix="compare masks on one grid (resample the prediction to the reference)")
    out: dict[int, float] = {}
    for v in labels:
        a, b = p == v, g == v
        total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
        out[int(v)] = 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total
    return out


def iou(pred: Any, gt: Any, *, label: int | None = None) -> float:
    """Intersection over union (Jaccard) |P∩G| / |P∪G|; 1.0 when both are empty."""
    tp, fp, fn, _ = _counts(pred, gt, label)
    return _ratio(tp, tp + fp + fn, 1.0)


def sensitivity(pred: Any, gt: Any, *, label: int | None = None) -> float:
    """True positive rate TP / (TP + FN); 1.0 when the reference is empty."""
    tp, _, fn, _ = _counts(pred, gt, label)
    return _ratio(tp, tp + fn, 1.0)


def specificity(pred: Any, gt: Any, *, label: int | None = None) -> float:
    """True negative rate TN / (TN + FP); 1.0 when there is no background."""
    _, fp, _, tn = _counts(pred, gt, label)
    return _ratio(tn, tn + fp, 1.0)


def precision(pred: Any, gt: Any, *, label: int | None = None) -> float:
    """Positive predictive value TP / (TP + FP); 1.0 when the prediction is empty."""
    tp, fp, _, _ = _counts(pred, gt, label)
    return _ratio(tp, tp + fp, 1.0)


def volume_difference_ml(pred: Any, gt: Any, *, spacing_mm: float | Sequence[float] | None = None,
                         label: int | None = None) -> float:
    """Signed volume difference pred - gt in mL (area in mm^2 / 1000 for 2D inputs)."""
    p, g, spacing = prepare_pair(pred, gt, spacing_mm)
    voxel = float(np.prod(spacing)) / 1000.0
    return (int(np.count_nonzero(_binarize(p, label))) - int(np.count_nonzero(_binarize(g, label)))) * voxel


def relative_volume_difference(pred: Any, gt: Any, *, label: int | None = None) -> float:
    """(|P| - |G|) / |G|, signed; 0.0 when both are empty, ``inf`` when only the reference is."""
    tp, fp, fn, _ = _counts(pred, gt, label)
    n_p, n_g = tp + fp, tp + fn
    if n_g == 0:
        return 0.0 if n_p == 0 else float("inf")
    return (n_p - n_g) / n_g


# ---- all metrics, all classes, one pass ---------------------------------------------------------------------

def _label_objects(arr: np.ndarray, labels: Sequence[int]) -> list[tuple[slice, ...] | None]:
    """Bounding box of each label (None when absent), from one find_objects pass when possible."""
    if arr.dtype == bool:
        objs = ndimage.find_objects(arr.astype(np.uint8))
        return [objs[0] if (objs and lab == 1) else None for lab in labels]
    if np.issubdtype(arr.dtype, np.integer) and min(labels) >= 1:
        objs = ndimage.find_objects(arr if arr.dtype.itemsize <= 8 else arr.astype(np.int64),
                                    max_label=int(max(labels)))
        return [objs[lab - 1] if lab - 1 < len(objs) else None for lab in labels]
    return [_bbox(arr == lab) for lab in labels]


def _integer_labels(arr: np.ndarray, name: str) -> np.ndarray:
    """Label maps stored as floats (common in NIfTI/NPZ) become int32 when every value is a whole number."""
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        return arr
    as_int = arr.astype(np.int32)
    if not np.array_equal(as_int, arr):
        raise InvalidParameterError(
            "label map holds non-integer values", parameter=name, expected="whole-number labels or a bool mask",
            found=f"dtype {arr.dtype} with fractional values", fix="threshold or round the prediction first",
        )
    return as_int


def _present_labels(*arrays: np.ndarray) -> list[int]:
    found: set[int] = set()
    for a in arrays:
        if a.dtype == bool:
            if a.any():
                found.add(1)
        elif np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 and a.max() < 2**16:
            found.update(int(v) for v in np.flatnonzero(np.bincount(a.ravel())))
        else:
            found.update(int(v) for v in np.unique(a) if float(v).is_integer())
    found.discard(0)
    return sorted(found)


def segmentation_scores(
    pred: Any,
    gt: Any,
    *,
    labels: Sequence[int] | None = None,
    spacing_mm: float | Sequence[float] | None = None,
    tolerance_mm: float = 1.0,
) -> dict[int, dict[str, float]]:
    """Every segmentation metric for every class, computed with one crop and one pair of distance maps per class.

    Args:
        pred, gt: Images or arrays (label maps or bool masks) on the same grid.
        labels: classes to score; None: every non-zero value present in pred or gt (a bool mask is class 1).
        spacing_mm: (sx, sy[, sz]) mm for arrays; None: 1 mm, or the Images' spacing.
        tolerance_mm: NSD tolerance in mm.

    Returns:
        ``{label: {name: value}}`` with the names in :data:`SEGMENTATION_METRICS` (HD95 and ASSD with the MONAI
        definitions, volumes in mL). Empty masks follow the table in the module docstring.

    Raises:
        GeometryMismatchError: pred and gt are not on the same grid.

    Example:
        >>> gt = np.zeros((6, 8, 8), np.uint8); gt[1:5, 2:6, 2:6] = 1
        >>> s = segmentation_scores(gt, gt, spacing_mm=(1, 1, 2))
        >>> s[1]["dice"], s[1]["hd95_mm"], s[1]["volume_gt_ml"]
        (1.0, 0.0, 0.128)
    """
    p, g, spacing = prepare_pair(pred, gt, spacing_mm)
    p, g = _integer_labels(p, "pred"), _integer_labels(g, "gt")
    if labels is None:
        labels = _present_labels(p, g)
    labels = [int(v) for v in labels]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out: dict[int, dict[str, float]] = {}
    if not labels:
        return out
    boxes_p = _label_objects(p, labels) if min(labels) >= 1 else [_bbox(_binarize(p, lab)) for lab in labels]
    boxes_g = _label_objects(g, labels) if min(labels) >= 1 else [_bbox(_binarize(g, lab)) for lab in labels]
    for lab, bp, bg in zip(labels, boxes_p, boxes_g):
        box = _crop_box([bp, bg], p.shape)
        if box is None:
            pm = gm = np.zeros((1,) * p.ndim, bool)
        else:
            pm, gm = _binarize(p[box], lab), _binarize(g[box], lab)
        tp = int(np.count_nonzero(pm & gm))
        n_p, n_g = int(np.count_nonzero(pm)), int(np.count_nonzero(gm))
        fp, fn = n_p - tp, n_g - tp
        tn = p.size - tp - fp - fn
        sd = _surface_distances_cropped(pm, gm, spacing)
        out[lab] = {
            "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
            "iou": _ratio(tp, tp + fp + fn, 1.0),
            "hd95_mm": sd.hausdorff(95.0),
            "hd_mm": sd.hausdorff(100.0),
            "assd_mm": sd.assd(),
            "nsd": sd.nsd(tolerance_mm),
            "sensitivity": _ratio(tp, tp + fn, 1.0),
            "specificity": _ratio(tn, tn + fp, 1.0),
            "precision": _ratio(tp, tp + fp, 1.0),
            "volume_pred_ml": n_p * voxel_ml,
            "volume_gt_ml": n_g * voxel_ml,
            "volume_diff_ml": (n_p - n_g) * voxel_ml,
            "relative_volume_diff": ((n_p - n_g) / n_g) if n_g else (0.0 if n_p == 0 else float("inf")),
        }
    return out
