"""Validation helpers shared by operations and readers: per-axis parameters given as one number or (x, y, z),
the one memory budget every reader checks declared sizes against before allocating, and the input checks every
operation applies to its Images (an Image of one channel, a binary mask, a label map, an intensity image with finite
voxels, a mask on the image's grid), each raising one InvalidParameterError with a fix."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from medimg.core.enums import Kind
from medimg.core.errors import ImageReadError, InvalidParameterError
from medimg.core.image import Image

__all__ = ["per_axis_xyz", "memory_budget_bytes", "check_memory_budget", "declared_nbytes", "MEMORY_BUDGET_ENV",
           "check_voxels", "require_image", "require_binary", "require_labels", "require_intensity",
           "require_finite", "intensity_voxels", "mask_array"]


def per_axis_xyz(value: Any, name: str, *, allow_zero: bool = False, integer: bool = False) -> tuple[float, ...]:
    """A scalar or an (x, y, z) triple as three numbers (x first), validated; errors name ``name``.

    Two values (x, y) get z = 0 when ``allow_zero`` else z = y (2D images).

    >>> per_axis_xyz(2.0, "radius_mm")
    (2.0, 2.0, 2.0)
    """
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            "not a number or a list of numbers", parameter=name, expected="a number or (x, y, z)",
            found=repr(value), fix=f"give {name} as one number or three numbers, x first",
        ) from exc
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    elif arr.size == 2:
        arr = np.append(arr, 0.0 if allow_zero else arr[-1])
    if arr.size != 3 or not np.all(np.isfinite(arr)):
        raise InvalidParameterError(
            "wrong number of values", parameter=name, expected="1 or 3 finite values (x, y, z)",
            found=repr(value), fix=f"give {name} as one number or three numbers, x first",
        )
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad) or (integer and not np.all(arr == np.round(arr))):
        raise InvalidParameterError(
            "invalid value", parameter=name,
            expected=("non-negative" if allow_zero else "positive") + (" integers" if integer else " numbers"),
            found=tuple(arr), fix=f"give {name} with {'values >= 0' if allow_zero else 'values > 0'}",
        )
    return tuple(float(v) for v in arr)


#: Environment variable that sets :func:`memory_budget_bytes` (a number of bytes; suffixes K, M, G allowed).
MEMORY_BUDGET_ENV = "MEDIMG_MAX_BYTES"
_DEFAULT_BUDGET_CAP = 8 * 1024**3


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None


def memory_budget_bytes() -> int:
    """The most bytes one image may take in memory when a reader decodes or decompresses it.

    Default: the smaller of 8 GiB and half of the physical memory. The environment variable ``MEDIMG_MAX_BYTES``
    overrides it (bytes, or with a K/M/G suffix, e.g. ``MEDIMG_MAX_BYTES=32G``); it is read on every call, so a
    running process can change it. Every reader checks the size a file *declares* against this budget (and
    against the bytes actually present) before allocating, so a 100-byte header declaring a terabyte array or
    a gzip bomb fails with one line instead of exhausting memory.

    >>> import os; os.environ["MEDIMG_MAX_BYTES"] = "1M"; memory_budget_bytes()
    1048576
    >>> del os.environ["MEDIMG_MAX_BYTES"]
    """
    raw = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if raw:
        scale = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}.get(raw[-1].upper(), 1)
        number = raw[:-1] if scale > 1 else raw
        try:
            value = int(float(number) * scale)
        except ValueError:
            value = -1
        if value <= 0:
            raise InvalidParameterError(
                "invalid memory budget", parameter=MEMORY_BUDGET_ENV, expected="a positive number of bytes, "
                "e.g. 8G or 8589934592", found=repr(raw), fix=f"set {MEMORY_BUDGET_ENV} to e.g. 16G, or unset it",
            )
        return value
    physical = _physical_memory()
    return min(_DEFAULT_BUDGET_CAP, physical // 2) if physical else _DEFAULT_BUDGET_CAP


def _human(n: int) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def check_memory_budget(
    nbytes: int | float, *, path: str | os.PathLike[str] | None = None, what: str = "image",
    detail: str | None = None, error: type[ImageReadError] = ImageReadError,
) -> None:
    """Refuse, before allocating, an object of ``nbytes`` bytes larger than :func:`memory_budget_bytes`.

    Args:
        nbytes: the size the file declares (decoded, uncompressed), e.g. ``prod(shape) * itemsize``; may be a
            Python int far beyond 64 bits (a hostile header), it is never allocated.
        path: the file, named in the message.
        what: what is being sized, for the message ("image", "decompressed stream", ...).
        detail: how the size was reached (e.g. "512x512 x 1e8 frames"), put before the total in the message.
        error: the ImageReadError subclass to raise (DicomError for DICOM).

    Raises:
        ImageReadError: ``nbytes`` exceeds the budget (one line: file, declared size, budget, fix).
    """
    budget = memory_budget_bytes()
    if nbytes > budget:
        raise error(
            f"declared {what} size exceeds the memory budget", path=path,
            expected=f"at most {_human(budget)} ({MEMORY_BUDGET_ENV}={budget})",
            found=(f"{detail} = " if detail else "") + f"{_human(int(nbytes))} declared ({int(nbytes)} bytes)",
            fix=f"if this is a real image, raise {MEMORY_BUDGET_ENV} (e.g. {MEMORY_BUDGET_ENV}=32G) on a machine "
                "with enough memory; otherwise the file header is damaged or hostile",
        )


def declared_nbytes(shape: Any, itemsize: int) -> int:
    """``prod(shape) * itemsize`` in exact Python integers (no overflow on hostile headers); negative sizes
    count as 0."""
    n = int(itemsize)
    for s in shape:
        n *= max(int(s), 0)
    return n


def check_voxels(voxels: Any, *, path: str | os.PathLike[str] | None = None) -> None:
    """Refuse voxel arrays no reader should hand on: complex numbers, and NaN or Inf values.

    Every reader calls this once on what it decoded, so a NaN written by another tool is refused at read time with
    the file named (and never carried into a NIfTI that medimg's own reader would then refuse).

    Raises:
        ImageReadError: complex voxels, or non-finite values (the count is given).
    """
    arr = np.asarray(voxels)
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ImageReadError(
            "complex voxels", path=path, expected="real numbers (integer or float voxels)", found=str(arr.dtype),
            fix="save the magnitude (numpy.abs) or the real and imaginary parts as separate real-valued images",
        )
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ImageReadError(
                "voxel data contain non-finite values", path=path, expected="finite numbers",
                found=f"{bad} NaN/Inf voxels of {arr.size}",
                fix="replace them first, e.g. numpy.nan_to_num on the array, or mask them out in the "
                    "tool that wrote the file",
            )


# ---- input checks of operations on Images ---------------------------------------------------------------------
def require_image(value: Any, parameter: str) -> Image:
    """``value`` itself when it is a single-channel Image; raises with a fix otherwise."""
    if not isinstance(value, Image):
        raise InvalidParameterError(
            "not an Image", parameter=parameter, expected="medimg.core.Image", found=type(value).__name__,
            fix="build one with Image.from_array or read it with medimg.io.read",
        )
    if value.n_channels != 1:
        raise InvalidParameterError(
            "image has several channels", parameter=parameter, expected="1 channel",
            found=f"{value.n_channels} channels",
            fix="pick one channel, e.g. image.replace(voxels=image.voxels[:1]), or convert to grayscale",
        )
    return value


def require_binary(mask: Any, parameter: str = "mask") -> np.ndarray:
    """The (Z, Y, X) boolean array of a binary label Image; raises with a fix otherwise."""
    mask = require_image(mask, parameter)
    if mask.kind != Kind.LABEL:
        raise InvalidParameterError(
            "expected a binary mask (0/1) of kind label", parameter=parameter,
            expected="a label Image with values in {0, 1}", found=f"kind {mask.kind.value}",
            fix="use threshold() first (or image.replace(kind='label') if it already is a 0/1 mask)",
        )
    arr = mask.array
    if arr.dtype == bool:
        return arr
    values = np.unique(arr)
    if not np.all(np.isin(values, (0, 1))):
        shown = values[:6].tolist() + (["..."] if values.size > 6 else [])
        raise InvalidParameterError(
            "expected a binary mask (0/1)", parameter=parameter, expected="values in {0, 1}",
            found=f"values {shown}",
            fix="use threshold() first, e.g. threshold(labels, lower=1) for 'any label', or labels == k",
        )
    return arr.astype(bool)


def require_labels(labels: Any, parameter: str = "labels") -> np.ndarray:
    """The (Z, Y, X) integer array of a label map (non-negative integers); raises with a fix otherwise."""
    labels = require_image(labels, parameter)
    if labels.kind != Kind.LABEL:
        raise InvalidParameterError(
            "expected a label map", parameter=parameter, expected="an Image of kind label",
            found=f"kind {labels.kind.value}",
            fix="segment the image first (threshold(), connected_components()), or read it with kind='label'",
        )
    arr = labels.array
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InvalidParameterError(
                "label map has non-integer values", parameter=parameter, expected="integer labels",
                found=str(arr.dtype), fix="round or cast the labels to an integer type",
            )
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise InvalidParameterError(
            "label map has negative values", parameter=parameter, expected="labels >= 0", found=int(out.min()),
            fix="use 0 for background and 1..N for structures",
        )
    return out


def require_intensity(image: Image, operation: str) -> None:
    """Raise when an intensity-only operation is asked of a label map."""
    if not isinstance(image, Image):
        raise InvalidParameterError(
            "not an Image", parameter="image", expected="medimg.core.Image", found=type(image).__name__,
            fix="build one with Image.from_array or read it with medimg.io.read",
        )
    if image.kind == Kind.LABEL:
        raise InvalidParameterError(
            f"{operation} is an intensity operation and cannot be applied to a label map",
            parameter="image", expected="kind intensity or probability", found="kind label",
            fix=f"apply {operation} to the intensity image, not to its segmentation",
        )


def require_finite(voxels: np.ndarray, operation: str) -> None:
    """Raise when float voxels hold NaN or infinite values (``operation`` is named in the message)."""
    if np.issubdtype(voxels.dtype, np.floating) and not np.all(np.isfinite(voxels)):
        n_bad = int(np.count_nonzero(~np.isfinite(voxels)))
        raise InvalidParameterError(
            f"{operation} needs finite voxel values", parameter="image", expected="no NaN or infinite voxels",
            found=f"{n_bad} non-finite voxels", fix="replace NaN/inf first (e.g. np.nan_to_num) or mask them out",
        )


def intensity_voxels(image: Image, operation: str) -> np.ndarray:
    """The (Z, Y, X) voxels of a single-channel intensity image, checked finite."""
    require_image(image, "image")
    if image.kind == Kind.LABEL:
        raise InvalidParameterError(
            f"{operation} is computed from intensities and cannot be applied to a label map",
            parameter="image", expected="kind intensity or probability", found="kind label",
            fix=f"apply {operation} to the intensity image, or use threshold() on the label map",
        )
    arr = image.array
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise InvalidParameterError(
            f"{operation} needs finite voxel values", parameter="image", expected="no NaN or infinite voxels",
            found=f"{int(np.count_nonzero(~np.isfinite(arr)))} non-finite voxels",
            fix="replace NaN/inf first (e.g. np.nan_to_num)",
        )
    return arr


def mask_array(image: Image, mask: Image | np.ndarray | None) -> np.ndarray | None:
    """The mask as a boolean (Z, Y, X) array on the image's grid, or None."""
    if mask is None:
        return None
    if isinstance(mask, Image):
        image.check_same_grid(mask, what="image and mask")
        if mask.n_channels != 1:
            raise InvalidParameterError(
                "mask has several channels", parameter="mask", expected="1 channel",
                found=f"{mask.n_channels} channels", fix="pass a single-channel mask",
            )
        arr = np.asarray(mask.voxels[0]) != 0
    else:
        arr = np.asarray(mask)
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.shape == image.spatial_shape[1:] and image.is_2d:
            arr = arr[None]
        if arr.shape != image.spatial_shape:
            raise InvalidParameterError(
                "mask shape does not match the image", parameter="mask",
                expected=f"(Z, Y, X) = {image.spatial_shape}", found=arr.shape,
                fix="pass a mask on the image's grid (resample it with resample_to)",
            )
        arr = arr != 0
    if not arr.any():
        raise InvalidParameterError(
            "mask is empty", parameter="mask", expected="at least one foreground voxel", found="0 voxels",
            fix="check the mask, or pass mask=None to use every voxel",
        )
    return arr
