"""Turning the (Image | array, spacing_mm) pairs the metric functions accept into plain arrays and spacing."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from medimg.core.errors import GeometryMismatchError, InvalidParameterError
from medimg.core.image import Image

__all__ = ["prepare_pair", "as_spatial_array"]


def as_spatial_array(x: Any, *, name: str) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """(array, spacing in array order or None) of an Image or array; a single-slice volume becomes 2D."""
    if isinstance(x, Image):
        if x.n_channels != 1:
            raise InvalidParameterError(
                "image has several channels", parameter=name, expected="a single-channel label map",
                found=f"{x.n_channels} channels", fix="pick one channel, e.g. image.voxels[c]",
            )
        arr = np.asarray(x.array)
        spacing = x.geometry.spacing_zyx
        if arr.shape[0] == 1:
            return arr[0], spacing[1:]
        return arr, spacing
    arr = np.asarray(x)
    if arr.ndim not in (2, 3):
        raise InvalidParameterError(
            "wrong number of dimensions", parameter=name, expected="a 2D (Y, X) or 3D (Z, Y, X) array or an Image",
            found=f"shape {arr.shape}", fix="pass a single-channel mask or label map",
        )
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    return arr, None


def _spacing_zyx(spacing_mm: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing_mm is None:
        return (1.0,) * ndim
    values = np.atleast_1d(np.asarray(spacing_mm, dtype=float)).ravel()
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.size == 3 and ndim == 2:
        values = values[:2]
    if values.size != ndim or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InvalidParameterError(
            "invalid spacing", parameter="spacing_mm",
            expected=f"{ndim} positive numbers in x-first order (sx, sy{', sz' if ndim == 3 else ''}) mm",
            found=tuple(values.tolist()), fix="give the voxel size in mm, x first, like Geometry.spacing",
        )
    return tuple(float(v) for v in values[::-1])


def prepare_pair(
    pred: Any, gt: Any, spacing_mm: float | Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Validate a prediction/reference pair: same grid, and return (pred, gt, spacing in array order)."""
    if isinstance(pred, Image) and isinstance(gt, Image):
        gt.check_same_grid(pred, what="reference (gt) and prediction (pred)")
        if spacing_mm is not None:
            raise InvalidParameterError(
                "spacing given twice", parameter="spacing_mm", expected="None when pred and gt are Images",
                found=spacing_mm, fix="leave spacing_mm out: the images carry their spacing",
            )
    p, sp_p = as_spatial_array(pred, name="pred")
    g, sp_g = as_spatial_array(gt, name="gt")
    if p.shape != g.shape:
        raise GeometryMismatchError(
            "pred and gt do not share a voxel grid (size differs)", expected=f"shape {g.shape} (gt)",
            found=f"shape {p.shape} (pred)", fix="resample the prediction onto the reference grid",
        )
    spacing = sp_g if sp_g is not None else sp_p
    if spacing is None or spacing_mm is not None:
        spacing = _spacing_zyx(spacing_mm, p.ndim)
    return p, g, tuple(float(s) for s in spacing)
