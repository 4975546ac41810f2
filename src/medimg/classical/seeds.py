"""Seed points for region growing and other seeded methods: voxel or world (LPS mm) coordinates to voxel indices.

Voxel seeds are given in array order (z, y, x) like ``image.array[z, y, x]`` ((y, x) is accepted for 2D images);
world seeds are physical points (x, y, z) in mm in LPS, the library's space, converted with
``image.geometry.physical_to_index`` and rounded to the nearest voxel centre.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image

__all__ = ["seeds_to_index"]

_SPACES = ("voxel", "world")


def _as_points(seeds: Any, parameter: str = "seeds") -> np.ndarray:
    try:
        pts = np.asarray(seeds, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            "seeds are not a list of points", parameter=parameter, expected="(z, y, x) or a list of them",
            found=repr(seeds)[:80], fix="give seeds as [(z, y, x), ...] or a (N, 3) array",
        ) from exc
    if pts.size == 0:
        raise InvalidParameterError(
            "empty seed set", parameter=parameter, expected="at least one seed point", found="0 points",
            fix="give at least one point, e.g. [(z, y, x)]",
        )
    if pts.ndim == 1:
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] not in (2, 3):
        raise InvalidParameterError(
            "seeds have the wrong shape", parameter=parameter, expected="(N, 3) points, N >= 1 ((N, 2) for 2D)",
            found=f"shape {pts.shape}", fix="give seeds as [(z, y, x), ...]",
        )
    if not np.all(np.isfinite(pts)):
        raise InvalidParameterError(
            "seeds contain NaN or infinite values", parameter=parameter, expected="finite coordinates",
            found=pts.tolist(), fix="check where the seed coordinates came from",
        )
    return pts


def seeds_to_index(image: Image, seeds: Any, *, space: str = "voxel", parameter: str = "seeds") -> np.ndarray:
    """Voxel indices (z, y, x) of seed points, checked to lie inside the image.

    Args:
        image: the image the seeds belong to (its grid and geometry are used).
        seeds: one point or a list of points. ``space="voxel"``: integer indices (z, y, x), or (y, x) for a 2D
            image. ``space="world"``: physical LPS coordinates (x, y, z) in mm, or (x, y) for a 2D image
            (z taken in the image plane).
        space: "voxel" or "world".
        parameter: the name errors use for the seeds (e.g. "foreground_seeds").

    Returns:
        An int64 array (N, 3) of (z, y, x) indices.

    Raises:
        InvalidParameterError: bad shape, non-integer voxel seeds, or a seed outside the image (the error names the
            seed, its index and the image size).

    Example:
        >>> img = Image.from_array(np.zeros((4, 5, 6)), spacing=(0.5, 0.5, 2.0))
        >>> seeds_to_index(img, [(1, 2, 3)]).tolist()
        [[1, 2, 3]]
        >>> seeds_to_index(img, (1.5, 1.0, 2.0), space="world").tolist()  # x=1.5 mm -> i=3, z=2 mm -> k=1
        [[1, 2, 3]]
    """
    if not isinstance(image, Image):
        raise InvalidParameterError(
            "not an Image", parameter="image", expected="medimg.core.Image", found=type(image).__name__,
            fix="build one with Image.from_array or read it with medimg.io.read",
        )
    if space not in _SPACES:
        raise InvalidParameterError(
            "unknown seed space", parameter="space", expected="'voxel' (z, y, x) or 'world' (LPS mm, x, y, z)",
            found=repr(space), fix="use space='voxel' or space='world'",
        )
    pts = _as_points(seeds, parameter)
    shape = image.spatial_shape
    if pts.shape[1] == 2 and not image.is_2d:
        raise InvalidParameterError(
            "2-value seeds given for a 3D image", parameter=parameter,
            expected="(z, y, x)" if space == "voxel" else "(x, y, z) in mm", found=pts.tolist(),
            fix="give all three coordinates",
        )
    if space == "voxel":
        if pts.shape[1] == 2:
            pts = np.column_stack([np.zeros(len(pts)), pts])
        if not np.all(pts == np.round(pts)):
            raise InvalidParameterError(
                "voxel seeds must be integer indices", parameter=parameter, expected="integers (z, y, x)",
                found=pts.tolist(), fix="round them, or pass space='world' for coordinates in mm",
            )
        index = pts.astype(np.int64)
    else:
        if pts.shape[1] == 2:
            plane_z = image.geometry.origin[2]
            pts = np.column_stack([pts, np.full(len(pts), plane_z)])
        ijk = image.geometry.physical_to_index(pts)
        index = np.rint(ijk[:, ::-1]).astype(np.int64)
    for n, idx in enumerate(index):
        if np.any(idx < 0) or np.any(idx >= np.asarray(shape)):
            given = tuple(float(v) for v in pts[n]) if space == "world" else tuple(int(v) for v in pts[n])
            where = f"world point (x, y, z) {given} mm -> voxel (z, y, x) {tuple(int(v) for v in idx)}" \
                if space == "world" else f"voxel (z, y, x) {given}"
            raise InvalidParameterError(
                f"seed #{n} lies outside the image", parameter=parameter,
                expected=f"indices (z, y, x) within the image size {shape}", found=where,
                fix=("check the point is in LPS mm (x, y, z); RAS coordinates (e.g. from a NIfTI viewer) need x "
                     "and y negated" if space == "world" else
                     "give indices in array order (z, y, x), 0-based, or pass space='world' for mm"),
            )
    return index
