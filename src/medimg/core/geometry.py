"""Voxel-grid geometry: spacing, origin, direction and the coordinate space they are expressed in.

Conventions (the same as ITK / SimpleITK, so conversion at the I/O boundary is a copy):

* Voxel arrays are indexed ``[c, z, y, x]``. The *index axes* are i = x (last array axis), j = y, k = z.
* ``spacing`` is ``(sx, sy, sz)`` in mm, i.e. in index-axis order (x first), the reverse of array order.
  :attr:`Geometry.spacing_zyx` gives it in array order.
* ``origin`` is the physical position (mm) of the centre of voxel (i, j, k) = (0, 0, 0).
* ``direction`` is a 3x3 matrix whose *columns* are the unit vectors of the i, j, k axes in physical space.
* Physical point of index (i, j, k): ``origin + direction @ (spacing * (i, j, k))``.
* ``space`` says which patient coordinate system the physical axes are: LPS inside the library (DICOM, ITK).
  RAS appears only at the NIfTI boundary, in ``medimg.io``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from medimg.core.enums import Space
from medimg.core.errors import GeometryMismatchError, InvalidParameterError

__all__ = ["Geometry", "orientation_code"]


def _as_tuple3(value: Sequence[float] | np.ndarray, name: str) -> tuple[float, float, float]:
    arr = np.asarray(value, dtype=float).ravel()
    if arr.shape != (3,):
        raise InvalidParameterError(
            "wrong number of values",
            parameter=name,
            expected="3 values (x, y, z)",
            found=f"{arr.size} values",
            fix=f"give {name} as three numbers in x, y, z order",
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(
            "non-finite value", parameter=name, expected="finite numbers", found=tuple(arr),
            fix=f"check where {name} came from",
        )
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True)
class Geometry:
    """Where a voxel grid lies in patient space.

    Args:
        spacing: voxel size (sx, sy, sz) in mm, all > 0.
        origin: centre of the first voxel (x, y, z) in mm.
        direction: 3x3 orthonormal matrix, columns = directions of the i, j, k index axes.
        space: patient coordinate system of origin/direction (LPS inside the library).

    Example:
        >>> g = Geometry(spacing=(0.5, 0.5, 2.0))
        >>> g.spacing_zyx
        (2.0, 0.5, 0.5)
        >>> g.orientation
        'LPS'
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[tuple[float, float, float], ...] = field(
        default=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    )
    space: Space = Space.LPS

    def __post_init__(self) -> None:
        spacing = _as_tuple3(self.spacing, "spacing")
        if min(spacing) <= 0:
            raise InvalidParameterError(
                "non-positive voxel spacing", parameter="spacing", expected="all values > 0 mm",
                found=spacing, fix="give the voxel size in mm, e.g. spacing=(1.0, 1.0, 1.0)",
            )
        origin = _as_tuple3(self.origin, "origin")
        d = np.asarray(self.direction, dtype=float)
        if d.shape == (9,):
            d = d.reshape(3, 3)
        if d.shape != (3, 3) or not np.all(np.isfinite(d)):
            raise InvalidParameterError(
                "direction is not a finite 3x3 matrix", parameter="direction", expected="3x3 matrix",
                found=f"shape {d.shape}", fix="give a 3x3 matrix whose columns are the axis directions",
            )
        if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
            raise InvalidParameterError(
                "direction is not orthonormal", parameter="direction", expected="orthonormal columns",
                found=np.round(d, 4).tolist(),
                fix="normalise the direction cosines (e.g. from ImageOrientationPatient)",
            )
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", tuple(tuple(float(v) for v in row) for row in d))
        object.__setattr__(self, "space", Space(self.space))

    # ---- derived views -------------------------------------------------------------------------------------
    @property
    def direction_matrix(self) -> np.ndarray:
        """The direction as a new (3, 3) float array (columns = i, j, k axis directions)."""
        return np.array(self.direction, dtype=float)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Spacing in array-axis order (z, y, x)."""
        return (self.spacing[2], self.spacing[1], self.spacing[0])

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous index (i, j, k, 1) = (x, y, z, 1) to physical mm in ``space``."""
        a = np.eye(4)
        a[:3, :3] = self.direction_matrix * np.asarray(self.spacing)[None, :]
        a[:3, 3] = self.origin
        return a

    @property
    def orientation(self) -> str:
        """Three-letter orientation code of the index axes (i, j, k), e.g. 'LPS' or 'RAS' (ITK style).

        Each letter is the patient direction the axis points *to*, in this geometry's space.
        """
        return orientation_code(self.direction_matrix, self.space)

    def index_to_physical(self, index_xyz: Sequence[float] | np.ndarray) -> np.ndarray:
        """Physical coordinates (mm) of continuous indices given as (..., 3) in (i, j, k) = (x, y, z) order."""
        idx = np.asarray(index_xyz, dtype=float)
        return idx @ (self.direction_matrix * np.asarray(self.spacing)[None, :]).T + np.asarray(self.origin)

    def physical_to_index(self, points: Sequence[float] | np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) indices of physical points (..., 3)."""
        pts = np.asarray(points, dtype=float) - np.asarray(self.origin)
        return (pts @ self.direction_matrix) / np.asarray(self.spacing)

    def replace(self, **changes: object) -> Geometry:
        """A copy with some fields changed (validated again)."""
        values = {
            "spacing": self.spacing, "origin": self.origin, "direction": self.direction, "space": self.space,
        }
        values.update(changes)
        return Geometry(**values)  # type: ignore[arg-type]

    # ---- comparison ----------------------------------------------------------------------------------------
    def differences(self, other: Geometry, *, atol_mm: float = 1e-3, atol_direction: float = 1e-4) -> list[str]:
        """Human-readable differences with ``other``; an empty list when they match within tolerance."""
        out = []
        if self.space != other.space:
            out.append(f"space {self.space.value} vs {other.space.value}")
        if not np.allclose(self.spacing, other.spacing, atol=atol_mm, rtol=0):
            out.append(f"spacing {_r(self.spacing)} vs {_r(other.spacing)} mm")
        if not np.allclose(self.origin, other.origin, atol=atol_mm, rtol=0):
            out.append(f"origin {_r(self.origin)} vs {_r(other.origin)} mm")
        if not np.allclose(self.direction, other.direction, atol=atol_direction, rtol=0):
            out.append(f"direction {np.round(self.direction_matrix, 4).tolist()} vs "
                       f"{np.round(other.direction_matrix, 4).tolist()}")
        return out

    def is_close(self, other: Geometry, *, atol_mm: float = 1e-3, atol_direction: float = 1e-4) -> bool:
        """True when spacing, origin and direction agree within tolerance and the space is the same."""
        return not self.differences(other, atol_mm=atol_mm, atol_direction=atol_direction)

    def check_same(self, other: Geometry, *, what: str = "images", atol_mm: float = 1e-3,
                   atol_direction: float = 1e-4) -> None:
        """Raise :class:`GeometryMismatchError` naming the differing field when the grids differ."""
        diffs = self.differences(other, atol_mm=atol_mm, atol_direction=atol_direction)
        if diffs:
            raise GeometryMismatchError(
                f"{what} do not share a voxel grid ({'; '.join(diffs)})",
                expected="the same spacing, origin and direction",
                found=diffs[0],
                fix="resample one image onto the other's grid (medimg.preprocess.resample_to)",
            )


def _r(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(v), 4) for v in values)


_AXIS_LETTERS = {
    Space.LPS: (("R", "L"), ("A", "P"), ("I", "S")),
    Space.RAS: (("L", "R"), ("P", "A"), ("I", "S")),
}


def orientation_code(direction: np.ndarray, space: Space = Space.LPS) -> str:
    """Closest three-letter orientation code (ITK convention: letter = where each axis points *to*).

    >>> orientation_code(np.eye(3))
    'LPS'
    """
    letters = _AXIS_LETTERS[Space(space)]
    d = np.asarray(direction, dtype=float)
    code = []
    used: set[int] = set()
    for col in range(3):
        v = d[:, col].copy()
        v[list(used)] = 0.0
        axis = int(np.argmax(np.abs(v)))
        used.add(axis)
        code.append(letters[axis][1] if v[axis] > 0 else letters[axis][0])
    return "".join(code)


def is_oblique(direction: np.ndarray, *, tol_deg: float = 0.5) -> bool:
    """True when some index axis is more than ``tol_deg`` degrees away from every patient axis."""
    d = np.abs(np.asarray(direction, dtype=float))
    cos_tol = math.cos(math.radians(tol_deg))
    return bool(np.any(d.max(axis=0) < cos_tol))
