"""Registration metrics: target registration error and Jacobian determinant statistics of displacement fields.

Displacement fields are arrays (3, Z, Y, X) or (2, Y, X) whose components are in **x, y(, z) order and in
mm** along the index axes (the ITK / SimpleITK convention, x first like :attr:`Geometry.spacing`). The
transform is x -> x + u(x); its Jacobian is I + du/dx, with derivatives by central differences in the
interior and one-sided differences at the border (``numpy.gradient``), using the voxel spacing in mm.
Fields whose index axes are not aligned with the physical axes (non-identity direction) are taken along the
index axes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medimg.core.errors import InvalidParameterError

__all__ = ["target_registration_error", "jacobian_determinant", "jacobian_statistics"]


def target_registration_error(points_a: Sequence | np.ndarray, points_b: Sequence | np.ndarray, *,
                              spacing_mm: Sequence[float] | None = None) -> np.ndarray:
    """Distance (mm) between corresponding landmarks, e.g. transformed moving vs fixed landmarks.

    Args:
        points_a, points_b: (N, D) points, D = 2 or 3, in mm (x, y[, z]) — or in voxel indices (x, y[, z])
            when ``spacing_mm`` (sx, sy[, sz]) is given.

    Returns:
        (N,) distances in mm; summarise with mean/std/median/max as needed.

    >>> target_registration_error([[0, 0, 0]], [[1, 1, 1]], spacing_mm=(3, 4, 0))
    array([5.])
    """
    a, b = np.asarray(points_a, float), np.asarray(points_b, float)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] not in (2, 3):
        raise InvalidParameterError("landmark arrays do not match", parameter="points_b",
                                    expected=f"shape (N, 2 or 3) equal to points_a {a.shape}", found=b.shape,
                                    fix="give corresponding landmarks in the same order")
    diff = b - a
    if spacing_mm is not None:
        diff = diff * np.asarray(spacing_mm, float)[: a.shape[1]]
    return np.sqrt(np.sum(diff**2, axis=1))


def jacobian_determinant(displacement: np.ndarray, *, spacing_mm: Sequence[float] | None = None) -> np.ndarray:
    """Determinant of the Jacobian of x -> x + u(x) at every voxel.

    Args:
        displacement: (3, Z, Y, X) or (2, Y, X) field, components (ux, uy[, uz]) in mm.
        spacing_mm: (sx, sy[, sz]) voxel spacing in mm; None: 1 mm.

    Returns:
        (Z, Y, X) or (Y, X) determinants; <= 0 marks folding.

    >>> u = np.zeros((2, 4, 5)); u[0] = 0.1 * np.arange(5)[None, :]   # ux grows 0.1 mm per 1 mm along x
    >>> round(float(jacobian_determinant(u, spacing_mm=(1.0, 1.0)).mean()), 6)
    1.1
    """
    u = np.asarray(displacement, dtype=float)
    d = u.ndim - 1
    if d not in (2, 3) or u.shape[0] != d:
        raise InvalidParameterError("wrong displacement shape", parameter="displacement",
                                    expected="(3, Z, Y, X) or (2, Y, X)", found=u.shape,
                                    fix="put the vector components first, in x, y, z order")
    sp = np.ones(d) if spacing_mm is None else np.asarray(spacing_mm, float)[:d]
    if sp.size != d or np.any(sp <= 0):
        raise InvalidParameterError("invalid spacing", parameter="spacing_mm", expected=f"{d} positive numbers",
                                    found=tuple(np.ravel(spacing_mm)), fix="give the spacing x first, in mm")
    # array axis for index axis i (x=0, y=1, z=2) is d-1-i
    jac = np.empty((d, d) + u.shape[1:])
    for comp in range(d):
        grads = np.gradient(u[comp], *[sp[d - 1 - ax] for ax in range(d)])
        for i in range(d):
            jac[comp, i] = grads[d - 1 - i] + (1.0 if comp == i else 0.0)
    return np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))


def jacobian_statistics(displacement: np.ndarray, *, spacing_mm: Sequence[float] | None = None,
                        mask: np.ndarray | None = None) -> dict[str, float]:
    """Summary of the Jacobian determinant (inside ``mask`` if given).

    Returns:
        ``{"mean", "std", "min", "max", "folding_fraction" (det <= 0), "n_folding", "std_log_jacobian"}``.
        ``std_log_jacobian`` (SDlogJ, Learn2Reg) uses det clipped to >= 1e-9.
    """
    det = jacobian_determinant(displacement, spacing_mm=spacing_mm)
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape != det.shape:
            raise InvalidParameterError("mask shape differs from the field", parameter="mask",
                                        expected=det.shape, found=m.shape, fix="give a mask on the field's grid")
        det = det[m]
    det = det.ravel()
    if det.size == 0:
        raise InvalidParameterError("empty mask", parameter="mask", expected="at least one voxel", found="none",
                                    fix="give a non-empty mask")
    fold = det <= 0
    return {
        "mean": float(det.mean()), "std": float(det.std()), "min": float(det.min()), "max": float(det.max()),
        "folding_fraction": float(fold.mean()), "n_folding": float(fold.sum()),
        "std_log_jacobian": float(np.log(np.clip(det, 1e-9, None)).std()),
    }
