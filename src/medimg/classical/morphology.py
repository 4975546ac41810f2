"""Binary morphology, connected components and per-component statistics on label Images.

Masks (a binary label map of 0/1) and label maps (non-negative integers) are checked by
:func:`medimg.core.checks.require_binary` and :func:`~medimg.core.checks.require_labels`. This module owns the
structuring elements in mm (:func:`ellipsoid`, shared with watershed): a radius in mm becomes an ellipsoid in
voxels, so an operation grows or shrinks an object by the same physical distance along every axis whatever the
spacing. A 2D image (Z == 1) is processed in-plane only. Results are label Images on the input's grid; inputs are
never changed.

Border conventions (the same as ITK's binary filters): dilation treats outside the image as background, erosion
treats it as foreground, so an object that touches the edge of the field of view is not eaten from the edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from medimg.core.checks import per_axis_xyz, require_binary, require_image, require_labels
from medimg.core.enums import Kind
from medimg.core.errors import InvalidParameterError
from medimg.core.image import Image

__all__ = [
    "binary_closing",
    "binary_dilation",
    "binary_erosion",
    "binary_opening",
    "component_stats",
    "connected_components",
    "fill_holes",
    "keep_near",
    "largest_component",
]


# ---- helpers (ellipsoid, to_plane/from_plane, relabel_by_size, label_dtype are shared with watershed) ---------
def _as_label(source: Image, array_zyx: np.ndarray, *, operation: str, params: dict[str, Any]) -> Image:
    """A label Image on ``source``'s grid with the operation recorded."""
    return source.derive(array_zyx[None], operation=operation, params=params, kind=Kind.LABEL)


def _binary_out(source: Image, array_zyx: np.ndarray, *, operation: str, params: dict[str, Any]) -> Image:
    return _as_label(source, array_zyx.astype(np.uint8), operation=operation, params=params)


def _radius_xyz(radius_mm: Any, parameter: str = "radius_mm") -> tuple[float, float, float]:
    """A radius given as one number or (rx, ry, rz) in mm, each >= 0."""
    rx, ry, rz = per_axis_xyz(radius_mm, parameter, allow_zero=True)
    return (rx, ry, rz)


def ellipsoid(radius_mm: Sequence[float], spacing_zyx: Sequence[float]) -> np.ndarray:
    """Boolean structuring element: voxel offsets whose physical length (per-axis radius) is <= 1.

    ``radius_mm`` and ``spacing_zyx`` are in array-axis order; a zero radius gives no extent on that axis.
    """
    half = [int(np.floor(r / s + 1e-9)) if r > 0 else 0 for r, s in zip(radius_mm, spacing_zyx)]
    grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    total = np.zeros(grids[0].shape)
    for g, r, s in zip(grids, radius_mm, spacing_zyx):
        if r > 0:
            total += (g * s / r) ** 2
    return total <= 1.0 + 1e-9


def _structure(mask: Image, radius_mm: Any) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The structuring element (Z, Y, X) of a radius in mm on this mask's grid, and the radius in voxels."""
    rx, ry, rz = _radius_xyz(radius_mm)
    sx, sy, sz = mask.geometry.spacing
    if mask.is_2d:
        rz = 0.0
    se = ellipsoid((rz, ry, rx), (sz, sy, sx))
    return se, (rx / sx, ry / sy, rz / sz)


def _connectivity_structure(ndim: int, connectivity: Any) -> np.ndarray:
    if not isinstance(connectivity, (int, np.integer)) or not 1 <= int(connectivity) <= ndim:
        raise InvalidParameterError(
            "invalid connectivity", parameter="connectivity",
            expected=f"an integer in 1..{ndim} (1 = faces, {ndim} = faces, edges{' and corners' if ndim == 3 else ''})",
            found=repr(connectivity), fix="use connectivity=1 (face neighbours)",
        )
    return ndimage.generate_binary_structure(ndim, int(connectivity))


def to_plane(array_zyx: np.ndarray, is_2d: bool) -> np.ndarray:
    """The array to process: (Y, X) for a 2D image, (Z, Y, X) otherwise."""
    return array_zyx[0] if is_2d else array_zyx


def from_plane(array: np.ndarray, is_2d: bool) -> np.ndarray:
    """The inverse of :func:`to_plane`: a (Y, X) result of a 2D image back to (1, Y, X)."""
    return array[None] if is_2d else array


# ---- binary morphology ----------------------------------------------------------------------------------------
def _dilate(arr: np.ndarray, se: np.ndarray) -> np.ndarray:
    return ndimage.binary_dilation(arr, structure=se, border_value=0) if se.size > 1 else arr.copy()


def _erode(arr: np.ndarray, se: np.ndarray) -> np.ndarray:
    return ndimage.binary_erosion(arr, structure=se, border_value=1) if se.size > 1 else arr.copy()


def _morph(mask: Image, radius_mm: Any, operation: str) -> Image:
    arr = require_binary(mask)
    se3, radius_vox = _structure(mask, radius_mm)
    plane = to_plane(arr, mask.is_2d)
    se = se3[0] if mask.is_2d else se3
    if operation == "binary_dilation":
        out = _dilate(plane, se)
    elif operation == "binary_erosion":
        out = _erode(plane, se)
    elif operation == "binary_opening":
        out = _dilate(_erode(plane, se), se)
    else:  # closing: pad with background so the dilation is not cut at the edge of the image
        pad = [(h // 2, h // 2) for h in se.shape]
        padded = np.pad(plane, pad)
        closed = _erode(_dilate(padded, se), se)
        out = closed[tuple(slice(p, p + n) for (p, _), n in zip(pad, plane.shape))]
    params = {"radius_mm": _radius_xyz(radius_mm), "radius_vox": radius_vox,
              "structure_shape_zyx": se3.shape}
    return _binary_out(mask, from_plane(out, mask.is_2d), operation=operation, params=params)


def binary_dilation(mask: Image, *, radius_mm: float | Sequence[float]) -> Image:
    """Grow a binary mask by ``radius_mm`` (an ellipsoid in voxels that is a ball in mm).

    A voxel joins the mask when some mask voxel lies within ``radius_mm`` of it in physical distance (along the
    voxel grid), so the result equals ``distance_transform_edt(~mask, sampling=spacing_zyx) <= radius_mm``.

    Args:
        mask: binary label Image (0/1), 2D or 3D.
        radius_mm: one radius or (rx, ry, rz) in mm, x first; the z radius is ignored for 2D images.

    Returns:
        A uint8 label Image on the same grid.

    Raises:
        InvalidParameterError: the mask is not a binary label map, or the radius is invalid.

    Example:
        >>> m = np.zeros((1, 5, 5), np.uint8); m[0, 2, 2] = 1
        >>> mask = Image.from_array(m, spacing=(1.0, 2.0, 1.0), kind="label")
        >>> binary_dilation(mask, radius_mm=2.0).array[0].sum(axis=1).tolist()  # rows: y spacing 2 mm
        [0, 1, 5, 1, 0]
    """
    return _morph(mask, radius_mm, "binary_dilation")


def binary_erosion(mask: Image, *, radius_mm: float | Sequence[float]) -> Image:
    """Shrink a binary mask by ``radius_mm`` (ellipsoid structuring element in voxels, a ball in mm).

    Outside the image counts as foreground, so objects are not eroded from the edge of the field of view.
    Arguments and errors as :func:`binary_dilation`.
    """
    return _morph(mask, radius_mm, "binary_erosion")


def binary_opening(mask: Image, *, radius_mm: float | Sequence[float]) -> Image:
    """Erosion then dilation by ``radius_mm``: removes parts thinner than about ``2 * radius_mm``.

    Arguments and errors as :func:`binary_dilation`. The result is always inside the input mask.
    """
    return _morph(mask, radius_mm, "binary_opening")


def binary_closing(mask: Image, *, radius_mm: float | Sequence[float]) -> Image:
    """Dilation then erosion by ``radius_mm``: closes gaps and dents narrower than about ``2 * radius_mm``.

    Computed on a zero-padded array so that objects near the edge close as if the image went on with background.
    Arguments and errors as :func:`binary_dilation`. The result always contains the input mask.
    """
    return _morph(mask, radius_mm, "binary_closing")


def fill_holes(mask: Image, *, per_slice: bool = False) -> Image:
    """Fill background regions that are not connected (by faces) to the image border.

    Args:
        mask: binary label Image (0/1).
        per_slice: fill each Z slice on its own (2D holes, e.g. airways in an axial body mask) instead of 3D
            holes; a 2D image is always filled in-plane.

    Returns:
        A uint8 label Image on the same grid, containing the input mask.

    Example:
        >>> m = np.zeros((1, 5, 5), np.uint8); m[0, 1:4, 1:4] = 1; m[0, 2, 2] = 0
        >>> int(fill_holes(Image.from_array(m, kind="label")).array.sum())
        9
    """
    arr = require_binary(mask)
    if mask.is_2d or per_slice:
        out = np.stack([ndimage.binary_fill_holes(s) for s in arr])
    else:
        out = ndimage.binary_fill_holes(arr)
    return _binary_out(mask, out, operation="fill_holes", params={"per_slice": bool(per_slice)})


# ---- connected components -------------------------------------------------------------------------------------
def _label(arr: np.ndarray, is_2d: bool, connectivity: Any) -> tuple[np.ndarray, int]:
    plane = to_plane(arr, is_2d)
    lab, n = ndimage.label(plane, structure=_connectivity_structure(plane.ndim, connectivity))
    return from_plane(lab, is_2d), int(n)


def relabel_by_size(lab: np.ndarray, n: int, min_size_vox: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels 1..M ordered by size descending (ties: first label first), components < min_size_vox dropped."""
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-sizes, kind="stable")
    order = order[sizes[order] >= max(min_size_vox, 1)]
    lut = np.zeros(n + 1, np.int64)
    lut[order + 1] = np.arange(1, order.size + 1)
    return lut[lab], sizes[order]


def label_dtype(n: int) -> type:
    """The smallest unsigned integer type of a label map with ``n`` labels (uint16, or uint32 beyond 65534)."""
    return np.uint16 if n < np.iinfo(np.uint16).max else np.uint32


def connected_components(mask: Image, *, connectivity: int = 1, min_size_vox: int = 0) -> Image:
    """Instance labels of the connected parts of a binary mask, numbered 1..N by size (largest first).

    Args:
        mask: binary label Image (0/1).
        connectivity: 1 = face neighbours, 2 = also edges, 3 = also corners (3D only).
        min_size_vox: drop components with fewer voxels than this.

    Returns:
        A uint16 (uint32 beyond 65534 components) label Image, 0 background; an empty mask gives all zeros.
        The history records the number of components kept.

    Example:
        >>> m = np.zeros((1, 4, 6), np.uint8); m[0, :2, :2] = 1; m[0, :, 4:] = 1
        >>> connected_components(Image.from_array(m, kind="label")).array[0, 0].tolist()
        [2, 2, 0, 0, 1, 1]
    """
    arr = require_binary(mask)
    if not isinstance(min_size_vox, (int, np.integer)) or min_size_vox < 0:
        raise InvalidParameterError(
            "invalid minimum size", parameter="min_size_vox", expected="an integer >= 0", found=repr(min_size_vox),
            fix="give the smallest component size to keep, in voxels",
        )
    lab, n = _label(arr, mask.is_2d, connectivity)
    out, sizes = relabel_by_size(lab, n, int(min_size_vox))
    params = {"connectivity": int(connectivity), "min_size_vox": int(min_size_vox), "n_components": int(sizes.size)}
    return _as_label(mask, out.astype(label_dtype(sizes.size)), operation="connected_components", params=params)


def largest_component(mask: Image, *, connectivity: int = 1) -> Image:
    """Keep only the largest connected part of a binary mask (ties: the first in array order).

    Args:
        mask: binary label Image (0/1), not empty.
        connectivity: 1 = face neighbours, 2 = also edges, 3 = also corners (3D only).

    Returns:
        A uint8 label Image on the same grid.

    Raises:
        InvalidParameterError: the mask is not binary, or it is empty.
    """
    arr = require_binary(mask)
    lab, n = _label(arr, mask.is_2d, connectivity)
    if n == 0:
        raise InvalidParameterError(
            "the mask is empty: there is no component to keep", parameter="mask",
            expected="at least one foreground voxel", found="0 voxels",
            fix="check the threshold or seeds that made the mask",
        )
    sizes = np.bincount(lab.ravel())[1:]
    keep = int(np.argmax(sizes)) + 1
    params = {"connectivity": int(connectivity), "n_components": n, "kept_voxels": int(sizes[keep - 1])}
    return _binary_out(mask, lab == keep, operation="largest_component", params=params)


def keep_near(
    mask: Image, reference: Image, *, max_distance_mm: float, per_component: bool = False
) -> Image:
    """Keep the parts of a mask within ``max_distance_mm`` of a reference mask (a distance prior).

    Distances are Euclidean in mm, from ``scipy.ndimage.distance_transform_edt(~reference,
    sampling=spacing_zyx)``: voxel centres, so a voxel of the reference is at distance 0.

    Args:
        mask: binary label Image (0/1).
        reference: binary label Image (0/1) on the same grid, not empty.
        max_distance_mm: largest distance kept (mm), >= 0.
        per_component: keep whole connected components (faces) of the mask that come within the distance,
            instead of cutting the mask voxel by voxel.

    Returns:
        A uint8 label Image on the grid of ``mask``.

    Raises:
        InvalidParameterError: a mask is not binary, the reference is empty, or the distance is invalid.
        GeometryMismatchError: the reference is on another grid.
    """
    arr = require_binary(mask)
    ref = require_binary(reference, "reference")
    mask.check_same_grid(reference, what="mask and reference")
    if not np.isfinite(max_distance_mm) or max_distance_mm < 0:
        raise InvalidParameterError(
            "invalid distance", parameter="max_distance_mm", expected="a finite number >= 0 (mm)",
            found=repr(max_distance_mm), fix="give the largest allowed distance in mm",
        )
    if not ref.any():
        raise InvalidParameterError(
            "the reference mask is empty: distances to it are undefined", parameter="reference",
            expected="at least one foreground voxel", found="0 voxels", fix="check how the reference was made",
        )
    spacing = mask.geometry.spacing_zyx
    plane_ref = to_plane(ref, mask.is_2d)
    sampling = spacing[1:] if mask.is_2d else spacing
    dist = from_plane(ndimage.distance_transform_edt(~plane_ref, sampling=sampling), mask.is_2d)
    near = dist <= max_distance_mm
    if per_component:
        lab, n = _label(arr, mask.is_2d, 1)
        hit = np.unique(lab[near & arr])
        out = np.isin(lab, hit[hit > 0])
    else:
        out = arr & near
    params = {"max_distance_mm": float(max_distance_mm), "per_component": bool(per_component)}
    return _binary_out(mask, out, operation="keep_near", params=params)


# ---- statistics -----------------------------------------------------------------------------------------------
def component_stats(labels: Image, *, intensity: Image | None = None) -> list[dict[str, Any]]:
    """Size, position and intensity of each label (or instance) of a label map, in physical units.

    Args:
        labels: label Image of non-negative integers (0 = background), e.g. from :func:`connected_components`.
        intensity: optional single-channel image on the same grid; adds intensity statistics.

    Returns:
        One dict per label present, in increasing label order, with keys: ``label``, ``voxels``, ``volume_ml``
        (3D) or ``area_mm2`` (2D), ``centroid_mm`` (x, y, z) in LPS, ``centroid_zyx_vox`` (array order),
        ``bbox_start_zyx`` and ``bbox_stop_zyx`` (voxel indices, stop exclusive), and with ``intensity``:
        ``intensity_mean``, ``intensity_std``, ``intensity_min``, ``intensity_max``. An empty map gives [].

    Raises:
        InvalidParameterError: ``labels`` is not a label map.
        GeometryMismatchError: ``intensity`` is on another grid.

    Example:
        >>> lab = np.zeros((2, 3, 3), np.uint8); lab[:, 1, 1] = 1
        >>> s = component_stats(Image.from_array(lab, spacing=(1.0, 1.0, 2.0), kind="label"))
        >>> s[0]["voxels"], s[0]["volume_ml"]
        (2, 0.004)
    """
    lab = require_labels(labels)
    values = None
    if intensity is not None:
        require_image(intensity, "intensity")
        labels.check_same_grid(intensity, what="labels and intensity")
        values = intensity.array.astype(np.float64)
    ids = np.unique(lab)
    ids = ids[ids > 0]
    if ids.size == 0:
        return []
    slices = ndimage.find_objects(lab, max_label=int(ids.max()))
    counts = ndimage.sum_labels(np.ones(lab.shape), lab, ids)
    centroids = np.atleast_2d(np.array(ndimage.center_of_mass(np.ones(lab.shape), lab, ids), dtype=float))
    xyz = centroids[:, ::-1]
    centroid_mm = labels.geometry.index_to_physical(xyz)
    voxel_mm3 = labels.voxel_volume_mm3
    area_mm2 = labels.geometry.spacing[0] * labels.geometry.spacing[1]
    if values is not None:
        means = ndimage.mean(values, lab, ids)
        stds = ndimage.standard_deviation(values, lab, ids)
        mins = ndimage.minimum(values, lab, ids)
        maxs = ndimage.maximum(values, lab, ids)
    out = []
    for n, k in enumerate(ids):
        sl = slices[int(k) - 1]
        rec: dict[str, Any] = {"label": int(k), "voxels": int(counts[n])}
        if labels.is_2d:
            rec["area_mm2"] = float(counts[n] * area_mm2)
        else:
            rec["volume_ml"] = float(counts[n] * voxel_mm3 / 1000.0)
        rec["centroid_mm"] = tuple(float(v) for v in centroid_mm[n])
        rec["centroid_zyx_vox"] = tuple(float(v) for v in centroids[n])
        rec["bbox_start_zyx"] = tuple(int(s.start) for s in sl)
        rec["bbox_stop_zyx"] = tuple(int(s.stop) for s in sl)
        if values is not None:
            rec["intensity_mean"] = float(means[n])
            rec["intensity_std"] = float(stds[n])
            rec["intensity_min"] = float(mins[n])
            rec["intensity_max"] = float(maxs[n])
        out.append(rec)
    return out
