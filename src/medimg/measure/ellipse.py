"""Ellipse fit, circumference and perimeter of 2D objects in mm (e.g. fetal head circumference, HC18).

* :func:`fit_ellipse` fits an ellipse to a filled 2D mask, in mm, using the pixel spacing. The default
  ``method="moments"`` matches the second moments of the filled region (the region-props way; unbiased for
  filled ellipses, robust to ragged edges); ``method="contour"`` fits
  :class:`skimage.measure.EllipseModel` to the 0.5 iso-contour (use it for open or non-elliptic blobs when the
  outline matters more than the area).
* :func:`ellipse_circumference` is Ramanujan's second approximation (relative error < 1e-9 up to b/a = 0.1).
* :func:`perimeter_mm` is the length of the marching-squares contour of the mask (outer and hole boundaries).

Angles are measured in the image plane from the +x (column) index axis towards +y (row), in degrees,
in (-90, 90].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medimg.core.errors import InvalidParameterError
from medimg.measure.shape import slice_contours_mm

__all__ = ["EllipseFit", "fit_ellipse", "ellipse_circumference", "perimeter_mm"]


@dataclass(frozen=True)
class EllipseFit:
    """A fitted ellipse in mm.

    Attributes:
        center_xy_mm: centre as scaled index coordinates (x mm, y mm) from pixel (0, 0).
        semi_major_mm, semi_minor_mm: semi-axes a >= b.
        angle_deg: direction of the major axis from +x towards +y, in (-90, 90].
        circumference_mm: Ramanujan's second approximation of the perimeter of the ellipse.
    """

    center_xy_mm: tuple[float, float]
    semi_major_mm: float
    semi_minor_mm: float
    angle_deg: float
    circumference_mm: float

    @property
    def major_axis_mm(self) -> float:
        return 2.0 * self.semi_major_mm

    @property
    def minor_axis_mm(self) -> float:
        return 2.0 * self.semi_minor_mm


def ellipse_circumference(a: float, b: float) -> float:
    """Perimeter of an ellipse with semi-axes a, b (Ramanujan's second approximation).

    ``pi (a + b) (1 + 3h / (10 + sqrt(4 - 3h)))`` with ``h = ((a - b) / (a + b))^2``.

    >>> round(ellipse_circumference(1.0, 1.0), 6) == round(2 * math.pi, 6)
    True
    """
    a, b = float(a), float(b)
    if a < 0 or b < 0:
        raise InvalidParameterError(
            "negative semi-axis", parameter="a, b", expected="a, b >= 0", found=(a, b), fix="give semi-axes in mm",
        )
    if a + b == 0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + math.sqrt(4.0 - 3.0 * h)))


def _mask2d(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise InvalidParameterError(
            "not a 2D mask", parameter="mask", expected="(Y, X) or (1, Y, X)", found=f"shape {np.shape(mask)}",
            fix="pass one slice, e.g. labels.array[0] == 1",
        )
    return m.astype(bool, copy=False)


def _spacing_xy(spacing_xy: tuple[float, float] | np.ndarray) -> tuple[float, float]:
    s = tuple(float(v) for v in np.asarray(spacing_xy, dtype=float).ravel()[:2])
    if len(s) != 2 or min(s) <= 0 or not all(math.isfinite(v) for v in s):
        raise InvalidParameterError(
            "invalid pixel spacing", parameter="spacing_xy", expected="(sx, sy) in mm, both > 0",
            found=spacing_xy, fix="give the pixel size in mm, e.g. (0.1, 0.1)",
        )
    return s[0], s[1]


def _fit_from_axes(cx: float, cy: float, a: float, b: float, vx: float, vy: float) -> EllipseFit:
    angle = math.degrees(math.atan2(vy, vx))
    if angle <= -90:
        angle += 180
    elif angle > 90:
        angle -= 180
    return EllipseFit((cx, cy), a, b, angle, ellipse_circumference(a, b))


def fit_ellipse(mask: np.ndarray, spacing_xy: tuple[float, float], *, method: str = "moments") -> EllipseFit | None:
    """Fit an ellipse (in mm) to a 2D mask.

    Args:
        mask: (Y, X) or (1, Y, X) boolean mask of one object (all its pixels are used).
        spacing_xy: pixel size (sx, sy) in mm: column spacing first.
        method: "moments" (default): the ellipse with the same area moments, a = 2 sqrt(lambda_1) with the
            eigenvalues of the covariance of pixel areas; "contour": least-squares EllipseModel fit to the
            0.5 iso-contour.

    Returns:
        An :class:`EllipseFit`, or None for an empty mask (or, with "contour", when no ellipse fits).

    Example:
        >>> yy, xx = np.mgrid[:200, :200]
        >>> disk = (xx - 100) ** 2 + (yy - 100) ** 2 <= 80 ** 2
        >>> round(fit_ellipse(disk, (0.5, 0.5)).semi_major_mm, 1)
        40.0
    """
    m = _mask2d(mask)
    sx, sy = _spacing_xy(spacing_xy)
    if method == "moments":
        rows, cols = np.nonzero(m)
        if rows.size == 0:
            return None
        pts = np.stack([cols * sx, rows * sy], axis=1)
        c = pts.mean(axis=0)
        d = pts - c
        cov = d.T @ d / len(pts) + np.diag([sx * sx / 12.0, sy * sy / 12.0])  # pixels are squares, not points
        evals, evecs = np.linalg.eigh(cov)
        a, b = 2.0 * math.sqrt(max(evals[1], 0.0)), 2.0 * math.sqrt(max(evals[0], 0.0))
        return _fit_from_axes(float(c[0]), float(c[1]), a, b, float(evecs[0, 1]), float(evecs[1, 1]))
    if method == "contour":
        from skimage.measure import EllipseModel

        contours = slice_contours_mm(m, (sx, sy))
        if not contours:
            return None
        outer = max(contours, key=len)
        if len(outer) < 5:
            return None
        if hasattr(EllipseModel, "from_estimate"):  # scikit-image >= 0.26
            model = EllipseModel.from_estimate(outer)
            if not model:
                return None
            (xc, yc), (p1, p2), theta = model.center, model.axis_lengths, model.theta
        else:  # pragma: no cover - older scikit-image
            model = EllipseModel()
            if not model.estimate(outer):
                return None
            xc, yc, p1, p2, theta = model.params
        xc, yc, p1, p2, theta = (float(v) for v in (xc, yc, p1, p2, theta))
        if p1 >= p2:
            a, b, ang = p1, p2, theta
        else:
            a, b, ang = p2, p1, theta + math.pi / 2
        return _fit_from_axes(xc, yc, a, b, math.cos(ang), math.sin(ang))
    raise InvalidParameterError(
        "unknown ellipse fit method", parameter="method", expected="'moments' or 'contour'", found=repr(method),
        fix="use method='moments'",
    )


def perimeter_mm(mask: np.ndarray, spacing_xy: tuple[float, float]) -> float:
    """Length (mm) of the 0.5 iso-contour(s) of a 2D mask: outer boundaries plus hole boundaries; 0 if empty.

    Marching squares cuts the corners of the pixel staircase, so for smooth shapes this is close to the true
    perimeter (unlike counting pixel edges, which overestimates by up to 4/pi).
    """
    m = _mask2d(mask)
    sx, sy = _spacing_xy(spacing_xy)
    total = 0.0
    for c in slice_contours_mm(m, (sx, sy)):
        seg = np.diff(c, axis=0)
        total += float(np.hypot(seg[:, 0], seg[:, 1]).sum())
    return total
