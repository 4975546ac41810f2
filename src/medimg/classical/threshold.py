"""Intensity thresholds that turn an image into a label map: fixed, Otsu, multi-Otsu and CT HU ranges.

Every function takes a single-channel Image (2D or 3D) and returns a label Image on the same grid with the
threshold(s) used recorded in its history, so that the result can be reproduced with :func:`threshold`.
Automatic thresholds come from scikit-image (``threshold_otsu``, ``threshold_multiotsu``), optionally computed
only from the voxels inside a mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medimg.core.checks import intensity_voxels, require_binary, require_image
from medimg.core.enums import Kind, Modality
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image

__all__ = ["hu_range", "multi_otsu", "otsu", "threshold"]


def _sample(image: Image, arr: np.ndarray, mask: Image | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Voxel values the threshold is computed from (inside ``mask`` when given), and the mask array."""
    if mask is None:
        return arr.ravel(), None
    m = require_binary(mask)
    image.check_same_grid(mask, what="image and mask")
    if not m.any():
        raise InvalidParameterError(
            "the mask is empty: no voxels to compute a threshold from", parameter="mask",
            expected="at least one foreground voxel", found="0 voxels", fix="pass mask=None or a non-empty mask",
        )
    return arr[m], m


def _require_not_constant(values: np.ndarray, operation: str) -> None:
    if values.min() == values.max():
        raise InvalidParameterError(
            f"{operation} is undefined on constant intensities", parameter="image",
            expected="at least two different voxel values", found=f"every voxel = {values.min()}",
            fix="use threshold() with an explicit value",
        )


def _label_image(image: Image, labels: np.ndarray, operation: str, params: dict[str, Any]) -> Image:
    return image.derive(labels[None].astype(np.uint8), operation=operation, params=params, kind=Kind.LABEL)


def threshold(image: Image, *, lower: float | None = None, upper: float | None = None) -> Image:
    """Binary mask of the voxels with ``lower <= value <= upper`` (bounds inclusive, either may be omitted).

    Works on any single-channel image, label maps included (``threshold(labels, lower=1)`` = "any label").

    Args:
        image: single-channel Image (C = 1), 2D or 3D.
        lower, upper: bounds in image units (HU for CT); give at least one.

    Returns:
        A uint8 label Image (0/1) on the same grid.

    Raises:
        InvalidParameterError: no bound, a bound that is not finite, ``lower > upper``, or several channels.

    Example:
        >>> img = Image.from_array(np.arange(6).reshape(1, 2, 3))
        >>> threshold(img, lower=2, upper=4).array.ravel().tolist()
        [0, 0, 1, 1, 1, 0]
    """
    require_image(image, "image")
    if lower is None and upper is None:
        raise InvalidParameterError(
            "no threshold given", parameter="lower", expected="lower and/or upper", found="neither",
            fix="give lower=..., upper=... or both (inclusive bounds)",
        )
    for name, value in (("lower", lower), ("upper", upper)):
        if value is not None and not np.isfinite(float(value)):
            raise InvalidParameterError(
                "bound is not a finite number", parameter=name, expected="a finite number", found=repr(value),
                fix=f"omit {name} for an open bound",
            )
    if lower is not None and upper is not None and lower > upper:
        raise InvalidParameterError(
            "empty range", parameter="lower", expected=f"lower <= upper ({upper})", found=lower,
            fix="swap the bounds",
        )
    arr = image.array
    out = np.ones(arr.shape, bool)
    if lower is not None:
        out &= arr >= lower
    if upper is not None:
        out &= arr <= upper
    params = {"lower": None if lower is None else float(lower), "upper": None if upper is None else float(upper)}
    return _label_image(image, out, "threshold", params)


def otsu(image: Image, *, mask: Image | None = None, bins: int = 256) -> Image:
    """Foreground (value > Otsu threshold) of an intensity image.

    The threshold is ``skimage.filters.threshold_otsu(values, nbins=bins)`` over all voxels, or only those inside
    ``mask``; voxels outside the mask are 0 in the result. The value is recorded as ``threshold`` in the history.

    Args:
        image: single-channel intensity image, 2D or 3D (e.g. fluorescence microscopy, bright objects).
        mask: optional binary label Image on the same grid restricting where the threshold is computed and applied.
        bins: number of histogram bins, >= 2.

    Returns:
        A uint8 label Image (0/1) on the same grid.

    Raises:
        InvalidParameterError: label map given, constant image, empty or non-binary mask, bad ``bins``.
        GeometryMismatchError: ``mask`` is on another grid.

    Example:
        >>> img = Image.from_array(np.array([[0, 1, 0, 9, 10, 9]]))
        >>> otsu(img).array.ravel().tolist()
        [0, 0, 0, 1, 1, 1]
    """
    from skimage.filters import threshold_otsu

    arr = intensity_voxels(image, "otsu")
    if not isinstance(bins, (int, np.integer)) or bins < 2:
        raise InvalidParameterError(
            "invalid number of bins", parameter="bins", expected="an integer >= 2", found=repr(bins),
            fix="use the default bins=256",
        )
    values, m = _sample(image, arr, mask)
    _require_not_constant(values, "otsu")
    t = float(threshold_otsu(values, nbins=int(bins)))
    out = arr > t
    if m is not None:
        out &= m
    return _label_image(image, out, "otsu", {"threshold": t, "bins": int(bins), "masked": m is not None})


def multi_otsu(image: Image, *, classes: int = 3, mask: Image | None = None) -> Image:
    """Split intensities into ``classes`` classes with multi-Otsu thresholds (0 = darkest class).

    Thresholds come from ``skimage.filters.threshold_multiotsu(values, classes=classes)`` and are recorded as
    ``thresholds`` in the history; a voxel gets the number of thresholds below its value
    (``np.digitize(value, thresholds)``, so a value equal to a threshold stays in the lower class, as in
    scikit-image). With a mask, the thresholds come from the voxels inside it and voxels outside get 0.

    Args:
        image: single-channel intensity image, 2D or 3D.
        classes: number of classes, 2..6 (the cost grows fast with it).
        mask: optional binary label Image on the same grid.

    Returns:
        A uint8 label Image with values 0..classes-1.

    Raises:
        InvalidParameterError: label map given, constant image, too few distinct values, bad ``classes`` or mask.
        GeometryMismatchError: ``mask`` is on another grid.
    """
    from skimage.filters import threshold_multiotsu

    arr = intensity_voxels(image, "multi_otsu")
    if not isinstance(classes, (int, np.integer)) or not 2 <= classes <= 6:
        raise InvalidParameterError(
            "invalid number of classes", parameter="classes", expected="an integer in 2..6", found=repr(classes),
            fix="use classes=3 (e.g. background, soft tissue, bright structures)",
        )
    values, m = _sample(image, arr, mask)
    _require_not_constant(values, "multi_otsu")
    try:
        thresholds = threshold_multiotsu(values, classes=int(classes))
    except ValueError as exc:
        raise InvalidParameterError(
            "too few distinct intensities for this many classes", parameter="classes",
            expected=f"at least {classes} distinct values", found=f"{np.unique(values).size} distinct values",
            fix="use fewer classes",
        ) from exc
    out = np.digitize(arr, thresholds, right=True)
    if m is not None:
        out = np.where(m, out, 0)
    params = {"classes": int(classes), "thresholds": [float(t) for t in thresholds], "masked": m is not None}
    return _label_image(image, out, "multi_otsu", params)


def hu_range(image: Image, *, lower_hu: float, upper_hu: float, force: bool = False) -> Image:
    """Binary mask of a CT Hounsfield range, ``lower_hu <= value <= upper_hu``.

    Typical ranges: air/lung -1000..-400, fat -190..-30, soft tissue -100..300, bone 300..3000.

    Args:
        image: single-channel CT image in HU (metadata ``modality`` "CT").
        lower_hu, upper_hu: inclusive bounds in HU.
        force: accept an image whose modality is not CT (or not recorded), e.g. CT read from a PNG.

    Returns:
        A uint8 label Image (0/1) on the same grid.

    Raises:
        InvalidParameterError: the image is not CT (and ``force`` is False), or the bounds are invalid.
    """
    intensity_voxels(image, "hu_range")
    if not (np.isfinite(float(lower_hu)) and np.isfinite(float(upper_hu))) or lower_hu > upper_hu:
        raise InvalidParameterError(
            "invalid HU range", parameter="lower_hu", expected="finite bounds with lower_hu <= upper_hu",
            found=(lower_hu, upper_hu), fix="e.g. lower_hu=300, upper_hu=3000 for bone",
        )
    modality = Modality.parse(image.metadata.get("modality"))
    if modality != Modality.CT and not force:
        raise InvalidParameterError(
            "HU ranges only make sense on CT", parameter="image", expected="metadata modality 'CT'",
            found=f"modality {image.metadata.get('modality')!r}",
            fix="set it with image.with_metadata(modality='CT') if the image is CT in HU, or pass force=True",
        )
    out = threshold(image, lower=lower_hu, upper=upper_hu)
    params = {"lower_hu": float(lower_hu), "upper_hu": float(upper_hu), "force": bool(force)}
    return image.derive(out.voxels, operation="hu_range", params=params, kind=Kind.LABEL)
