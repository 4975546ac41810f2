"""Conversion between :class:`medimg.Image` and ``SimpleITK.Image``.

Both use LPS physical space and the same spacing/origin/direction conventions, so conversion copies voxels and
geometry without flips. A multi-channel Image maps to a vector SimpleITK image (components = channels).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import SimpleITK as sitk

from medimg.core.enums import Kind, Space
from medimg.core.errors import InvalidParameterError
from medimg.core.geometry import Geometry
from medimg.core.image import Image

__all__ = ["to_sitk", "from_sitk", "geometry_from_sitk"]

_SITK_UNSUPPORTED = {np.dtype(bool): np.uint8, np.dtype(np.float16): np.float32}


def to_sitk(image: Image, *, channel: int | None = None, keep_3d: bool = False) -> sitk.Image:
    """SimpleITK image with the same voxels and geometry (LPS).

    Args:
        image: the image; a 2D image (Z == 1) becomes a 2D SimpleITK image unless ``keep_3d``.
        channel: pick one channel; by default a multi-channel image becomes a vector image.
        keep_3d: give a single-slice image as 3D with one slice (keeps an oblique or off-origin plane).
    """
    geo = image.geometry
    if geo.space != Space.LPS:
        raise InvalidParameterError(
            "image is not in LPS space", parameter="image", expected="LPS", found=geo.space.value,
            fix="keep images in LPS inside the library (medimg.io converts at the file boundary)",
        )
    vox = image.voxels if channel is None else image.voxels[channel : channel + 1]
    target = _SITK_UNSUPPORTED.get(vox.dtype)
    if target is not None:
        vox = vox.astype(target)
    if image.is_2d and not keep_3d:
        arr = vox[:, 0]  # C, Y, X
        if arr.shape[0] == 1:
            out = sitk.GetImageFromArray(np.ascontiguousarray(arr[0]))
        else:
            out = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(arr, 0, -1)), isVector=True)
        out.SetSpacing(geo.spacing[:2])
        out.SetOrigin(geo.origin[:2])
        d = geo.direction_matrix
        out.SetDirection(tuple(d[:2, :2].ravel()))
        return out
    if vox.shape[0] == 1:
        out = sitk.GetImageFromArray(np.ascontiguousarray(vox[0]))
    else:
        out = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(vox, 0, -1)), isVector=True)
    out.SetSpacing(geo.spacing)
    out.SetOrigin(geo.origin)
    out.SetDirection(tuple(geo.direction_matrix.ravel()))
    return out


def geometry_from_sitk(img: sitk.Image) -> Geometry:
    """Geometry of a 2D or 3D SimpleITK image (2D gets sz = 1 and a 3x3 direction with k = +z)."""
    dim = img.GetDimension()
    if dim == 2:
        d2 = np.array(img.GetDirection(), dtype=float).reshape(2, 2)
        d = np.eye(3)
        d[:2, :2] = d2
        sx, sy = img.GetSpacing()
        ox, oy = img.GetOrigin()
        return Geometry(spacing=(sx, sy, 1.0), origin=(ox, oy, 0.0), direction=d)
    if dim == 3:
        return Geometry(
            spacing=img.GetSpacing(), origin=img.GetOrigin(),
            direction=np.array(img.GetDirection(), dtype=float).reshape(3, 3),
        )
    raise InvalidParameterError(
        "unsupported number of dimensions", parameter="image", expected="2D or 3D", found=f"{dim}D",
        fix="split 4D data into channels first",
    )


def from_sitk(
    img: sitk.Image,
    *,
    kind: Kind | str = Kind.INTENSITY,
    metadata: Mapping[str, Any] | None = None,
    history: tuple = (),
) -> Image:
    """An Image with the voxels and geometry of a 2D or 3D (vector) SimpleITK image."""
    geometry = geometry_from_sitk(img)
    arr = sitk.GetArrayFromImage(img)
    ncomp = img.GetNumberOfComponentsPerPixel()
    if img.GetDimension() == 2:
        arr = arr[None]  # Z=1
    if ncomp > 1:
        arr = np.moveaxis(arr, -1, 0)
    else:
        arr = arr[None]
    return Image(voxels=arr, geometry=geometry, kind=Kind(kind), metadata=dict(metadata or {}), history=history)
