"""Input checks and conversions of classical registration: one-channel finite images of the same dimension, masks
and label maps on their image's grid, option values, multi-resolution levels, and whether the fixed and moving
fields of view overlap (:class:`NoOverlapError`). Shared by :mod:`medimg.classical.registration`, atlas
segmentation and learned registration."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image
from medimg.io.sitk_bridge import to_sitk

__all__ = ["check_image", "check_same_dim", "check_on_grid", "choice", "check_levels", "float_sitk", "mask_sitk",
           "check_overlap", "NoOverlapError", "raise_no_overlap", "is_outside_error"]


# ---- input checks ----------------------------------------------------------------------------------------------
def check_image(image: Any, parameter: str) -> Image:
    if not isinstance(image, Image):
        raise InvalidParameterError(
            "not an Image", parameter=parameter, expected="medimg.Image", found=type(image).__name__,
            fix="read the file with medimg.io.read or build one with Image.from_array",
        )
    if image.n_channels != 1:
        raise InvalidParameterError(
            "registration works on one channel", parameter=parameter, expected="1 channel",
            found=f"{image.n_channels} channels",
            fix=f"pick one channel first, e.g. {parameter}.replace(voxels={parameter}.voxels[:1])",
        )
    arr = image.voxels
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise InvalidParameterError(
            "image has non-finite voxels", parameter=parameter, expected="no NaN or infinite voxels",
            found=f"{int(np.count_nonzero(~np.isfinite(arr)))} NaN/inf voxels",
            fix="replace them first (e.g. np.nan_to_num) or crop them away",
        )
    return image


def check_same_dim(a: Image, b: Image, name_a: str, name_b: str) -> None:
    if a.is_2d != b.is_2d:
        dim = lambda im: "2D" if im.is_2d else "3D"  # noqa: E731
        raise InvalidParameterError(
            f"{name_a} and {name_b} have a different number of dimensions", parameter=name_b,
            expected=f"{dim(a)} like {name_a} {a.spatial_shape}", found=f"{dim(b)} {b.spatial_shape}",
            fix="give two 2D or two 3D images (extract the matching slice of the 3D one)",
        )


def check_on_grid(image: Image, other: Image | None, image_name: str, parameter: str) -> Image | None:
    """``other`` (a mask or label map) must lie on ``image``'s voxel grid."""
    if other is None:
        return None
    if not isinstance(other, Image):
        raise InvalidParameterError(
            "not an Image", parameter=parameter, expected="medimg.Image", found=type(other).__name__,
            fix="read the file with medimg.io.read(path, kind='label')",
        )
    if other.n_channels != 1:
        raise InvalidParameterError(
            "expected one channel", parameter=parameter, expected="1 channel", found=f"{other.n_channels}",
            fix="give a single-channel mask or label map",
        )
    diffs = [] if image.spatial_shape == other.spatial_shape else [
        f"size {other.spatial_shape} instead of {image.spatial_shape}"]
    if not diffs:
        diffs = image.geometry.differences(other.geometry)
    if diffs:
        raise InvalidParameterError(
            f"{parameter} is not on the {image_name} image's voxel grid", parameter=parameter,
            expected=f"the grid of {image_name}", found="; ".join(diffs),
            fix=f"resample it onto {image_name} with nearest neighbour "
            f"(medimg.preprocess.resample_to(..., interpolation='nearest'))",
        )
    return other


def choice(value: str, options: Sequence[str], parameter: str) -> str:
    v = str(value).lower().replace("-", "_")
    if v not in options:
        raise InvalidParameterError(
            "unknown value", parameter=parameter, expected=f"one of {', '.join(options)}", found=repr(value),
            fix=f"choose one of {', '.join(options)}",
        )
    return v


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(f) for f in levels)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError("invalid levels", parameter="levels", expected="shrink factors, e.g. (4, 2, 1)",
                                    found=repr(levels), fix="give integers >= 1, coarsest first") from exc
    if not out or any(f < 1 for f in out) or any(a < b for a, b in zip(out, out[1:])):
        raise InvalidParameterError("invalid levels", parameter="levels",
                                    expected="non-empty, integers >= 1, non-increasing, e.g. (4, 2, 1)",
                                    found=out, fix="give the shrink factors coarsest first, ending with 1")
    return out


# ---- conversions -----------------------------------------------------------------------------------------------
def float_sitk(image: Image) -> sitk.Image:
    return sitk.Cast(to_sitk(image), sitk.sitkFloat32)


def mask_sitk(mask: Image | None) -> sitk.Image | None:
    if mask is None:
        return None
    m = mask.voxels != 0
    if not m.any():
        raise InvalidParameterError("mask is empty", parameter="mask", expected="at least one non-zero voxel",
                                    found="0 voxels", fix="give a non-empty mask or none")
    return to_sitk(mask.replace(voxels=m.astype(np.uint8)))


def _bounds(img: sitk.Image) -> np.ndarray:
    """(2^D, D) physical corners of the image's voxel-centre box, widened by half a voxel."""
    size = np.array(img.GetSize())
    d = img.GetDimension()
    corners = []
    for bits in range(2**d):
        idx = [(-0.5 if (bits >> k) & 1 == 0 else size[k] - 0.5) for k in range(d)]
        corners.append(img.TransformContinuousIndexToPhysicalPoint(idx))
    return np.asarray(corners, float)


def check_overlap(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, init: str) -> None:
    """Raise when the fixed field of view, mapped by ``transform``, misses the moving one entirely."""
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in _bounds(fixed)])
    mov = _bounds(moving)
    lo_a, hi_a = mapped.min(0), mapped.max(0)
    lo_b, hi_b = mov.min(0), mov.max(0)
    if np.any(hi_a < lo_b) or np.any(hi_b < lo_a):
        raise_no_overlap(init, f"fixed box mapped to {np.round(lo_a, 1).tolist()}..{np.round(hi_a, 1).tolist()} "
                          f"mm, moving box {np.round(lo_b, 1).tolist()}..{np.round(hi_b, 1).tolist()} mm")


class NoOverlapError(InvalidParameterError):
    """The fixed and moving fields of view do not overlap (after initialisation, or during optimisation)."""


def raise_no_overlap(init: str, found: str, cause: BaseException | None = None) -> None:
    fix = ("use init='moments' (CLI: --init moments) to align the centres of mass"
           if init != "moments" else "check the origins and directions of both images (medimg info)")
    raise NoOverlapError(
        f"fixed and moving fields of view do not overlap after initialisation (init={init!r})", parameter="moving",
        expected="overlapping physical extents", found=found, fix=fix,
    ) from cause


def is_outside_error(exc: BaseException) -> bool:
    msg = str(exc)
    return "samples map outside moving image buffer" in msg or "outside moving image" in msg

