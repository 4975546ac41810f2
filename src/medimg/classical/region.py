"""Region growing from seed points: connected threshold and confidence connected (SimpleITK underneath).

Both grow a region of face-connected voxels from the seeds and return a binary label Image on the input grid.
Seeds are voxel indices (z, y, x) or world points (LPS mm), see :func:`medimg.classical.seeds.seeds_to_index`.
Combine with the morphological priors of :mod:`medimg.classical.morphology` (opening, hole filling, largest
component, distance to a reference) to clean the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from medimg.classical.seeds import seeds_to_index
from medimg.core.checks import intensity_voxels
from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image

__all__ = ["confidence_connected", "connected_threshold"]


def _sitk_plane(image: Image, arr: np.ndarray) -> sitk.Image:
    """The voxels as a 2D (Z == 1) or 3D SimpleITK image with the image's spacing (direction plays no role)."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:  # not a SimpleITK pixel type
        arr = arr.astype(np.float32)
    if image.is_2d:
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr[0]))
        img.SetSpacing(image.geometry.spacing[:2])
    else:
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        img.SetSpacing(image.geometry.spacing)
    return img


def _sitk_seeds(image: Image, index_zyx: np.ndarray) -> list[tuple[int, ...]]:
    """SimpleITK seed indices: (x, y, z), or (x, y) for 2D."""
    out = [tuple(int(v) for v in idx[::-1]) for idx in index_zyx]
    return [s[:2] for s in out] if image.is_2d else out


def _result(image: Image, region: sitk.Image, operation: str, params: dict[str, Any]) -> Image:
    arr = sitk.GetArrayFromImage(region).astype(np.uint8)
    if image.is_2d:
        arr = arr[None]
    params["voxels"] = int(arr.sum())
    return image.derive(arr[None], operation=operation, params=params, kind=Kind.LABEL)


def connected_threshold(
    image: Image, *, seeds: Any, lower: float, upper: float, seed_space: str = "voxel"
) -> Image:
    """Voxels with ``lower <= value <= upper`` that are face-connected to a seed.

    Computed with ``SimpleITK.ConnectedThreshold``.

    Args:
        image: single-channel intensity image, 2D or 3D.
        seeds: one point or a list (see :func:`~medimg.classical.seeds.seeds_to_index`).
        lower, upper: inclusive intensity bounds in image units.
        seed_space: "voxel" (z, y, x) indices or "world" LPS mm (x, y, z).

    Returns:
        A uint8 label Image (0/1) on the same grid; the seeds (as voxel indices) are in the history.

    Raises:
        InvalidParameterError: seeds outside the image, ``lower > upper``, or no seed whose value lies in
            ``[lower, upper]`` (the region would be empty).

    Example:
        >>> a = np.zeros((1, 3, 5)); a[0, :, :2] = 10; a[0, :, 4] = 10
        >>> out = connected_threshold(Image.from_array(a), seeds=(0, 1, 0), lower=5, upper=20)
        >>> out.array[0, 0].tolist()
        [1, 1, 0, 0, 0]
    """
    arr = intensity_voxels(image, "connected_threshold")
    if not (np.isfinite(float(lower)) and np.isfinite(float(upper))) or lower > upper:
        raise InvalidParameterError(
            "invalid intensity range", parameter="lower", expected="finite bounds with lower <= upper",
            found=(lower, upper), fix="give lower <= upper in image units",
        )
    index = seeds_to_index(image, seeds, space=seed_space)
    seed_values = arr[tuple(index.T)]
    if not np.any((seed_values >= lower) & (seed_values <= upper)):
        raise InvalidParameterError(
            "no seed has a value inside [lower, upper]: the region would be empty", parameter="seeds",
            expected=f"a seed value within [{lower}, {upper}]", found=f"seed values {seed_values.tolist()}",
            fix="move the seeds into the structure or widen the range",
        )
    region = sitk.ConnectedThreshold(
        _sitk_plane(image, arr), seedList=_sitk_seeds(image, index), lower=float(lower), upper=float(upper),
        replaceValue=1,
    )
    params = {"seeds_zyx": index.tolist(), "lower": float(lower), "upper": float(upper), "seed_space": seed_space}
    return _result(image, region, "connected_threshold", params)


def confidence_connected(
    image: Image,
    *,
    seeds: Any,
    multiplier: float = 2.5,
    iterations: int = 4,
    radius_vox: int = 1,
    seed_space: str = "voxel",
) -> Image:
    """Region growing with an adaptive range ``mean +- multiplier * std`` of the region (SimpleITK).

    ``SimpleITK.ConfidenceConnected``: the range starts from the statistics of a box of ``radius_vox`` voxels
    around each seed, then is re-estimated from the grown region ``iterations`` times.

    Args:
        image: single-channel intensity image, 2D or 3D.
        seeds: one point or a list (see :func:`~medimg.classical.seeds.seeds_to_index`).
        multiplier: width of the range in standard deviations, > 0.
        iterations: number of re-estimations, >= 0.
        radius_vox: radius in voxels of the initial neighbourhood around each seed, >= 0.
        seed_space: "voxel" (z, y, x) indices or "world" LPS mm (x, y, z).

    Returns:
        A uint8 label Image (0/1) on the same grid; seeds and parameters are in the history.

    Raises:
        InvalidParameterError: seeds outside the image or invalid parameters.
    """
    arr = intensity_voxels(image, "confidence_connected")
    if not np.isfinite(float(multiplier)) or multiplier <= 0:
        raise InvalidParameterError(
            "invalid multiplier", parameter="multiplier", expected="a finite number > 0", found=repr(multiplier),
            fix="use multiplier=2.5",
        )
    for name, value in (("iterations", iterations), ("radius_vox", radius_vox)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise InvalidParameterError(
                f"invalid {name}", parameter=name, expected="an integer >= 0", found=repr(value),
                fix=f"give {name} as a non-negative integer",
            )
    index = seeds_to_index(image, seeds, space=seed_space)
    region = sitk.ConfidenceConnected(
        _sitk_plane(image, arr), seedList=_sitk_seeds(image, index), numberOfIterations=int(iterations),
        multiplier=float(multiplier), initialNeighborhoodRadius=int(radius_vox), replaceValue=1,
    )
    params = {"seeds_zyx": index.tolist(), "multiplier": float(multiplier), "iterations": int(iterations),
              "radius_vox": int(radius_vox), "seed_space": seed_space}
    return _result(image, region, "confidence_connected", params)
