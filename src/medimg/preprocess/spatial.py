"""Spatial operations: resampling, reorientation, cropping and padding.

Every operation here returns an image whose geometry keeps each voxel's physical position consistent:

* :func:`resample` keeps the physical field of view and its centre (the voxel *edges* of the old and new grids
  span the same extent, as SimpleITK/nnU-Net resizing does); :func:`resample_to` uses another image's grid.
* :func:`reorient` only permutes and flips axes (no interpolation), like SimpleITK's DICOMOrientImageFilter.
* :func:`crop`, :func:`crop_to_foreground` and :func:`pad_to_shape` move the origin so that kept voxels stay put.

Per-axis physical quantities (``spacing_mm``, ``margin_mm``) are given x first like ``Geometry.spacing``;
array indices and shapes (``shape``, ``start``, ``stop``) are in array order (Z, Y, X).
Label maps are only interpolated with "nearest" or "onehot_linear".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from medimg.core.checks import per_axis_xyz
from medimg.core.enums import Kind, Space
from medimg.core.errors import InvalidParameterError
from medimg.core.geometry import Geometry, orientation_code
from medimg.core.image import Image

__all__ = ["INTERPOLATIONS", "crop", "crop_to_foreground", "pad_to_shape", "reorient", "resample", "resample_to"]

#: interpolation name -> SimpleITK interpolator ("onehot_linear" is linear per one-hot label channel + argmax)
INTERPOLATIONS: dict[str, int] = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
    "onehot_linear": sitk.sitkLinear,
}
_LABEL_INTERPOLATIONS = ("nearest", "onehot_linear")


# ---- helpers ---------------------------------------------------------------------------------------------------
def _check_image(image: Any, parameter: str = "image") -> None:
    if not isinstance(image, Image):
        raise InvalidParameterError(
            "not an Image", parameter=parameter, expected="medimg.core.Image", found=type(image).__name__,
            fix="build one with Image.from_array or read it with medimg.io.read",
        )
    if image.geometry.space != Space.LPS:
        raise InvalidParameterError(
            "image is not in LPS space", parameter=parameter, expected="LPS", found=image.geometry.space.value,
            fix="keep images in LPS inside the library (medimg.io converts at the file boundary)",
        )


def _shape_zyx(value: Any, image: Image, name: str) -> tuple[int, int, int]:
    try:
        shp = tuple(int(v) for v in value)
        ok = all(float(v) == int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            "not a shape", parameter=name, expected="(Z, Y, X) integers", found=repr(value),
            fix=f"give {name} as (Z, Y, X), e.g. (32, 64, 64)",
        ) from exc
    if len(shp) == 2 and image.is_2d:
        shp = (1,) + shp
    if len(shp) != 3 or not ok or min(shp) < 1:
        raise InvalidParameterError(
            "invalid shape", parameter=name, expected="three positive integers (Z, Y, X)", found=repr(value),
            fix=f"give {name} as (Z, Y, X), e.g. (32, 64, 64)",
        )
    return shp  # type: ignore[return-value]


def _default_interpolation(image: Image, interpolation: str | None) -> str:
    if interpolation is None:
        return "nearest" if image.kind == Kind.LABEL else "linear"
    if interpolation not in INTERPOLATIONS:
        raise InvalidParameterError(
            "unknown interpolation", parameter="interpolation", expected=", ".join(INTERPOLATIONS),
            found=repr(interpolation), fix="pick one of the listed interpolations",
        )
    if image.kind == Kind.LABEL and interpolation not in _LABEL_INTERPOLATIONS:
        raise InvalidParameterError(
            "label maps cannot be interpolated with intensity interpolation", parameter="interpolation",
            expected="'nearest' or 'onehot_linear' for a label map", found=repr(interpolation),
            fix="use interpolation='nearest' (or 'onehot_linear' for smoother label boundaries)",
        )
    if image.kind != Kind.LABEL and interpolation == "onehot_linear":
        raise InvalidParameterError(
            "'onehot_linear' is only for label maps", parameter="interpolation",
            expected="'nearest', 'linear' or 'bspline' for an intensity image", found="'onehot_linear'",
            fix="use interpolation='linear', or mark the image as Kind.LABEL if it is a label map",
        )
    return interpolation


def _reference(shape_zyx: tuple[int, int, int], geometry: Geometry, two_d: bool) -> sitk.Image:
    """An empty SimpleITK image describing a target grid (2D when ``two_d``)."""
    d = geometry.direction_matrix
    if two_d:
        ref = sitk.Image([int(shape_zyx[2]), int(shape_zyx[1])], sitk.sitkUInt8)
        ref.SetSpacing(geometry.spacing[:2])
        ref.SetOrigin(geometry.origin[:2])
        ref.SetDirection(tuple(d[:2, :2].ravel()))
        return ref
    ref = sitk.Image([int(shape_zyx[2]), int(shape_zyx[1]), int(shape_zyx[0])], sitk.sitkUInt8)
    ref.SetSpacing(geometry.spacing)
    ref.SetOrigin(geometry.origin)
    ref.SetDirection(tuple(d.ravel()))
    return ref


def _channel_sitk(array_zyx: np.ndarray, geometry: Geometry, two_d: bool) -> sitk.Image:
    arr = np.ascontiguousarray(array_zyx[0] if two_d else array_zyx)
    img = sitk.GetImageFromArray(arr)
    d = geometry.direction_matrix
    if two_d:
        img.SetSpacing(geometry.spacing[:2])
        img.SetOrigin(geometry.origin[:2])
        img.SetDirection(tuple(d[:2, :2].ravel()))
    else:
        img.SetSpacing(geometry.spacing)
        img.SetOrigin(geometry.origin)
        img.SetDirection(tuple(d.ravel()))
    return img


def _sitk_array(img: sitk.Image, two_d: bool) -> np.ndarray:
    arr = sitk.GetArrayFromImage(img)
    return arr[None] if two_d else arr


def _resample_voxels(image: Image, shape_zyx: tuple[int, int, int], geometry: Geometry, interpolation: str,
                     default_value: float | None) -> np.ndarray:
    """Voxels of ``image`` resampled onto (shape, geometry), channel by channel, as (C, Z, Y, X)."""
    two_d = image.is_2d and shape_zyx[0] == 1
    ref = _reference(shape_zyx, geometry, two_d)
    vox = image.voxels
    if vox.dtype == bool:
        vox = vox.astype(np.uint8)
    is_label = image.kind == Kind.LABEL
    if default_value is None:
        default_value = 0.0 if is_label else float(vox.min())
    out = []
    for c in range(vox.shape[0]):
        if interpolation == "onehot_linear":
            values = np.unique(vox[c])
            best = np.full(shape_zyx, -1.0, np.float32)
            arg = np.zeros(shape_zyx, np.intp)
            fill = int(np.argmin(np.abs(values - default_value))) if values.size else 0
            for n, v in enumerate(values):
                one = _channel_sitk((vox[c] == v).astype(np.float32), image.geometry, two_d)
                res = sitk.Resample(one, ref, sitk.Transform(), sitk.sitkLinear, 1.0 if n == fill else 0.0,
                                    sitk.sitkFloat32)
                prob = _sitk_array(res, two_d)
                better = prob > best
                best[better] = prob[better]
                arg[better] = n
            out.append(values[arg].astype(vox.dtype))
            continue
        src = vox[c]
        float_out = not is_label and interpolation != "nearest"
        if float_out and not np.issubdtype(src.dtype, np.floating):
            src = src.astype(np.float32)
        one = _channel_sitk(src, image.geometry, two_d)
        res = sitk.Resample(one, ref, sitk.Transform(), INTERPOLATIONS[interpolation], float(default_value))
        out.append(_sitk_array(res, two_d))
    return np.stack(out)


# ---- resampling ------------------------------------------------------------------------------------------------
def resample(
    image: Image,
    *,
    spacing_mm: float | Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
    interpolation: str | None = None,
) -> Image:
    """Resample to a new spacing or a new shape over the same physical field of view.

    The new grid keeps the direction and the centre of the field of view. With ``shape``, the new voxel edges
    span exactly the old extent (spacing = old extent / new shape). With ``spacing_mm``, the size is
    ``round(old extent / new spacing)`` (at least 1) and the grid is centred on the old one.

    Args:
        image: (C, Z, Y, X) image; a 2D image (Z == 1) stays 2D.
        spacing_mm: target spacing (sx, sy, sz) in mm, or one number for all axes (sz ignored for 2D).
        shape: target (Z, Y, X) size instead of a spacing ((Y, X) accepted for 2D).
        interpolation: "linear" (default for intensity), "bspline", "nearest" (default for labels), or
            "onehot_linear" (labels only: linear interpolation of each label's one-hot map, then argmax).

    Returns:
        The resampled image. Linear/B-spline interpolation of an integer image gives float32 (values are not
        rescaled or rounded); nearest and label interpolation keep the dtype.

    Raises:
        InvalidParameterError: neither or both of spacing_mm/shape, invalid values, intensity interpolation of
        a label map.

    Example:
        >>> img = Image.from_array(np.zeros((4, 6, 8), np.float32), spacing=(1.0, 1.0, 2.0))
        >>> resample(img, spacing_mm=2.0).spatial_shape
        (4, 3, 4)
    """
    _check_image(image)
    if (spacing_mm is None) == (shape is None):
        raise InvalidParameterError(
            "give exactly one of spacing_mm and shape", parameter="spacing_mm" if spacing_mm is None else "shape",
            expected="either a target spacing or a target shape", found=f"spacing_mm={spacing_mm}, shape={shape}",
            fix="e.g. resample(image, spacing_mm=(1, 1, 1)) or resample(image, shape=(32, 64, 64))",
        )
    interp = _default_interpolation(image, interpolation)
    geo = image.geometry
    old_sp = np.asarray(geo.spacing)
    old_size = np.asarray(image.spatial_shape[::-1], dtype=float)  # x, y, z
    if shape is not None:
        new_shape = _shape_zyx(shape, image, "shape")
        if image.is_2d and new_shape[0] != 1:
            raise InvalidParameterError(
                "a 2D image keeps one slice", parameter="shape", expected="(1, Y, X) or (Y, X)", found=new_shape,
                fix="give the target shape of the slice",
            )
        new_size = np.asarray(new_shape[::-1], dtype=float)
        new_sp = old_sp * old_size / new_size
    else:
        new_sp = np.asarray(per_axis_xyz(spacing_mm, "spacing_mm"))
        if image.is_2d:
            new_sp[2] = old_sp[2]
        new_size = np.maximum(1, np.round(old_size * old_sp / new_sp))
        new_shape = tuple(int(v) for v in new_size[::-1])  # type: ignore[assignment]
    if image.is_2d:
        new_sp[2], new_size[2] = old_sp[2], 1.0
        new_shape = (1,) + tuple(new_shape[1:])  # type: ignore[assignment]
    d = geo.direction_matrix
    centre = np.asarray(geo.origin) + d @ (old_sp * (old_size - 1) / 2.0)
    new_origin = centre - d @ (new_sp * (new_size - 1) / 2.0)
    new_geo = geo.replace(spacing=tuple(new_sp), origin=tuple(new_origin))
    vox = _resample_voxels(image, new_shape, new_geo, interp, None)  # type: ignore[arg-type]
    params = {"spacing_mm": tuple(new_sp), "shape": new_shape, "interpolation": interp,
              "from_spacing_mm": geo.spacing, "from_shape": image.spatial_shape}
    return image.derive(vox, operation="resample", params=params, geometry=new_geo)


def resample_to(image: Image, reference: Image, *, interpolation: str | None = None) -> Image:
    """Resample ``image`` onto the voxel grid (shape, spacing, origin, direction) of ``reference``.

    Points of the reference grid outside ``image`` get the image minimum (intensity) or 0 (labels).

    Args:
        image: the image to move, (C, Z, Y, X).
        reference: the image whose grid is used (its voxels are not read).
        interpolation: as in :func:`resample`.

    Returns:
        An image with ``image``'s channels, kind and metadata on ``reference``'s grid.
    """
    _check_image(image)
    _check_image(reference, "reference")
    interp = _default_interpolation(image, interpolation)
    if image.is_2d != reference.is_2d:
        raise InvalidParameterError(
            "cannot resample between 2D and 3D grids", parameter="reference",
            expected="2D" if image.is_2d else "3D", found="3D" if image.is_2d else "2D",
            fix="give a reference with the same number of spatial dimensions",
        )
    vox = _resample_voxels(image, reference.spatial_shape, reference.geometry, interp, None)
    params = {"reference_shape": reference.spatial_shape, "reference_spacing_mm": reference.geometry.spacing,
              "reference_origin": reference.geometry.origin, "interpolation": interp}
    return image.derive(vox, operation="resample_to", params=params, geometry=reference.geometry)


# ---- reorientation ---------------------------------------------------------------------------------------------
_LETTER_AXIS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}


def _parse_orientation(code: Any) -> str:
    text = str(code).strip().upper() if isinstance(code, str) else ""
    if len(text) != 3 or any(c not in _LETTER_AXIS for c in text) or \
            len({_LETTER_AXIS[c][0] for c in text}) != 3:
        raise InvalidParameterError(
            "invalid orientation code", parameter="orientation",
            expected="three letters, one of R/L, one of A/P, one of I/S (ITK convention, e.g. 'LPS', 'RAS')",
            found=repr(code), fix="use e.g. orientation='LPS' or 'RAS'",
        )
    return text


def reorient(image: Image, orientation: str = "LPS") -> Image:
    """Permute and flip the voxel axes so the index axes point to ``orientation`` (no interpolation).

    The code follows ITK/SimpleITK ``DICOMOrientImageFilter``: each letter is the patient direction (LPS space)
    that the i, j, k index axis points *to*; the identity direction is "LPS", NIfTI's usual layout is "RAS".
    Geometry is updated so every voxel keeps its physical position; oblique axes are matched to the closest
    patient axis.

    Example:
        >>> img = Image.from_array(np.arange(24).reshape(2, 3, 4))
        >>> reorient(img, "RAS").geometry.orientation
        'RAS'
    """
    _check_image(image)
    target = _parse_orientation(orientation)
    geo = image.geometry
    d = geo.direction_matrix
    current = orientation_code(d, geo.space)
    size_xyz = image.spatial_shape[::-1]
    src_axes = []  # for each target index axis: (source axis, flip)
    for letter in target:
        patient_axis, sign = _LETTER_AXIS[letter]
        for a, cur in enumerate(current):
            if _LETTER_AXIS[cur][0] == patient_axis:
                src_axes.append((a, _LETTER_AXIS[cur][1] != sign))
                break
    vox = image.voxels
    # array axis of index axis a is 3 - a (x -> 3, y -> 2, z -> 1)
    for a, flip in src_axes:
        if flip:
            vox = np.flip(vox, axis=3 - a)
    perm_xyz = [a for a, _ in src_axes]  # target axis t comes from source axis perm_xyz[t]
    axes = [0] + [3 - perm_xyz[t] for t in (2, 1, 0)]
    vox = np.ascontiguousarray(np.transpose(vox, axes))
    first = np.zeros(3)
    for a, flip in src_axes:
        if flip:
            first[a] = size_xyz[a] - 1
    new_origin = geo.index_to_physical(first)
    new_dir = np.stack([d[:, a] * (-1.0 if flip else 1.0) for a, flip in src_axes], axis=1)
    new_sp = tuple(geo.spacing[a] for a, _ in src_axes)
    new_geo = geo.replace(spacing=new_sp, origin=tuple(new_origin), direction=new_dir)
    params = {"orientation": target, "from_orientation": current}
    return image.derive(vox, operation="reorient", params=params, geometry=new_geo)


# ---- cropping and padding --------------------------------------------------------------------------------------
def _crop_voxels(image: Image, start: Sequence[int], stop: Sequence[int]) -> tuple[np.ndarray, Geometry]:
    sz, sy, sx = start
    ez, ey, ex = stop
    vox = np.ascontiguousarray(image.voxels[:, sz:ez, sy:ey, sx:ex])
    origin = image.geometry.index_to_physical([sx, sy, sz])
    return vox, image.geometry.replace(origin=tuple(origin))


def crop(image: Image, start: Sequence[int], stop: Sequence[int]) -> Image:
    """Keep voxels ``start <= (z, y, x) < stop`` (array order); the origin moves to the first kept voxel.

    Example:
        >>> img = Image.from_array(np.zeros((4, 5, 6)))
        >>> crop(img, (1, 0, 2), (3, 5, 6)).spatial_shape
        (2, 5, 4)
    """
    _check_image(image)
    shp = image.spatial_shape
    try:
        st = tuple(int(v) for v in start)
        sp = tuple(int(v) for v in stop)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            "start/stop are not integer indices", parameter="start", expected="(z, y, x) integers",
            found=f"start={start!r}, stop={stop!r}", fix="give voxel indices in array order (z, y, x)",
        ) from exc
    if len(st) != 3 or len(sp) != 3 or any(not 0 <= a < b <= n for a, b, n in zip(st, sp, shp)):
        raise InvalidParameterError(
            "crop box outside the image or empty", parameter="start" if len(st) != 3 else "stop",
            expected=f"0 <= start < stop <= {shp} (z, y, x)", found=f"start={st}, stop={sp}",
            fix="give start and stop inside the image, stop exclusive",
        )
    vox, geo = _crop_voxels(image, st, sp)
    return image.derive(vox, operation="crop", params={"start": st, "stop": sp}, geometry=geo)


def crop_to_foreground(
    image: Image,
    *,
    threshold: float | None = None,
    mask: Image | np.ndarray | None = None,
    margin_mm: float | Sequence[float] = 0.0,
) -> Image:
    """Crop to the bounding box of the foreground plus a margin.

    Foreground is, in order of precedence: ``mask != 0`` (a (Z, Y, X) array or single-channel Image on the same
    grid); voxels ``> threshold`` in any channel; for a label map, voxels != 0; otherwise voxels above the Otsu
    threshold of the image (any channel).

    Args:
        image: (C, Z, Y, X) image.
        threshold: intensity threshold (image units).
        mask: explicit foreground mask.
        margin_mm: margin added on each side, one number or (x, y, z) in mm; rounded up to whole voxels and
            clipped at the image border.

    Returns:
        The cropped image; ``params["start"]``/``["stop"]`` in the history hold the box (z, y, x).

    Raises:
        InvalidParameterError: empty foreground, negative margin, mask on another grid.
    """
    _check_image(image)
    margin = per_axis_xyz(margin_mm, "margin_mm", allow_zero=True)
    if mask is not None:
        from medimg.core.checks import mask_array

        fg = mask_array(image, mask)
        source = "mask"
    elif threshold is not None:
        if not isinstance(threshold, (int, float, np.number)) or not np.isfinite(threshold):
            raise InvalidParameterError(
                "invalid threshold", parameter="threshold", expected="a finite number (image units)",
                found=repr(threshold), fix="give e.g. threshold=-500 for CT body, or leave it None for Otsu",
            )
        fg = np.any(image.voxels > float(threshold), axis=0)
        source = f"threshold {float(threshold)}"
    elif image.kind == Kind.LABEL:
        fg = np.any(image.voxels != 0, axis=0)
        source = "label != 0"
    else:
        from skimage.filters import threshold_otsu

        vox = image.voxels.astype(np.float64)
        t = float(threshold_otsu(vox)) if vox.min() < vox.max() else float(vox.max())
        fg = np.any(vox > t, axis=0)
        source = f"otsu {t:.6g}"
    if fg is None or not fg.any():
        raise InvalidParameterError(
            "no foreground voxels", parameter="threshold" if mask is None else "mask",
            expected="at least one foreground voxel", found=f"none ({source})",
            fix="lower the threshold or pass a mask",
        )
    idx = np.nonzero(fg)
    m_zyx = [math.ceil(m / s - 1e-9) for m, s in zip(margin[::-1], image.geometry.spacing_zyx)]
    shp = image.spatial_shape
    start = tuple(max(0, int(i.min()) - m) for i, m in zip(idx, m_zyx))
    stop = tuple(min(n, int(i.max()) + 1 + m) for i, m, n in zip(idx, m_zyx, shp))
    vox, geo = _crop_voxels(image, start, stop)
    params = {"start": start, "stop": stop, "margin_mm": margin, "foreground": source,
              "from_shape": shp}
    return image.derive(vox, operation="crop_to_foreground", params=params, geometry=geo)


def pad_to_shape(
    image: Image,
    shape: Sequence[int],
    *,
    value: float | None = None,
    mode: str = "constant",
    where: str = "center",
) -> Image:
    """Pad to ``shape`` (Z, Y, X); the origin moves so existing voxels keep their physical position.

    Args:
        image: (C, Z, Y, X) image; every axis must be <= the target (this never crops: use :func:`crop`).
        shape: target (Z, Y, X) size ((Y, X) accepted for 2D).
        value: fill value for mode "constant"; default the image minimum (0 for a label map).
        mode: "constant" or "edge" (repeat the border voxel).
        where: "center" (split the padding, the extra voxel at the end) or "end" (pad after the data only).

    Example:
        >>> img = Image.from_array(np.ones((2, 3, 4)))
        >>> pad_to_shape(img, (4, 5, 6)).geometry.origin
        (-1.0, -1.0, -1.0)
    """
    _check_image(image)
    target = _shape_zyx(shape, image, "shape")
    shp = image.spatial_shape
    if any(t < n for t, n in zip(target, shp)):
        raise InvalidParameterError(
            "target shape is smaller than the image", parameter="shape", expected=f"every axis >= {shp}",
            found=target, fix="crop first (crop or crop_to_foreground), or give a larger shape",
        )
    if mode not in ("constant", "edge"):
        raise InvalidParameterError(
            "unknown padding mode", parameter="mode", expected="'constant' or 'edge'", found=repr(mode),
            fix="use mode='constant' or mode='edge'",
        )
    if where not in ("center", "end"):
        raise InvalidParameterError(
            "unknown padding position", parameter="where", expected="'center' or 'end'", found=repr(where),
            fix="use where='center' or where='end'",
        )
    total = [t - n for t, n in zip(target, shp)]
    before = [p // 2 if where == "center" else 0 for p in total]
    pads = [(0, 0)] + [(b, p - b) for b, p in zip(before, total)]
    if mode == "constant":
        if value is None:
            value = 0 if image.kind == Kind.LABEL else image.voxels.min()
        if not np.isfinite(float(value)):
            raise InvalidParameterError(
                "padding value is not finite", parameter="value", expected="a finite number", found=value,
                fix="give a finite fill value",
            )
        vox = np.pad(image.voxels, pads, mode="constant", constant_values=np.asarray(value).astype(image.dtype))
    else:
        vox = np.pad(image.voxels, pads, mode="edge")
    origin = image.geometry.index_to_physical([-before[2], -before[1], -before[0]])
    params = {"shape": target, "before": tuple(before), "mode": mode, "where": where,
              "value": None if mode == "edge" else float(value)}  # type: ignore[arg-type]
    return image.derive(vox, operation="pad_to_shape", params=params,
                        geometry=image.geometry.replace(origin=tuple(origin)))
