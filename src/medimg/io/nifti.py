"""NIfTI-1/NIfTI-2 reading and writing (``.nii``, ``.nii.gz``) through nibabel.

This module owns the RAS<->LPS flip for NIfTI: NIfTI affines map voxel indices to RAS mm, the library works in
LPS, so ``LPS affine = diag(-1, -1, 1, 1) @ RAS affine``. NIfTI data are indexed ``(i, j, k[, t])`` = x, y, z,
so the reader transposes to the library's ``(C, Z, Y, X)`` (a 4th axis becomes channels) and the writer
transposes back.

Which affine is used (the same choice as nibabel's ``get_best_affine``; the one used is recorded in
``metadata["affine_source"]``):

1. the sform when ``sform_code > 0`` and its 3x3 part has orthogonal columns;
2. otherwise the qform when ``qform_code > 0`` (a quaternion: orthogonal by construction; this is also what
   ITK does with a sheared sform);
3. otherwise a sheared sform whose columns deviate from orthogonal by at most ``SHEAR_TOLERANCE`` (rounding
   by other tools) is projected onto the nearest orthonormal direction (polar decomposition), with a warning;
   a larger shear is refused with :class:`ImageReadError`, since an Image's direction must be orthonormal;
4. with neither code set, nibabel's fall-back affine from ``pixdim`` (recorded as ``"pixdim"``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import zlib
from pathlib import Path
from typing import Any, Iterator

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError, HeaderTypeError

from medimg.core.checks import check_memory_budget, check_voxels, declared_nbytes
from medimg.core.enums import Kind, Space
from medimg.core.errors import ImageReadError, ImageWriteError
from medimg.core.geometry import Geometry
from medimg.core.image import Image
from medimg.io.files import check_input, compound_suffix, read_gzip_bounded

logger = logging.getLogger(__name__)

__all__ = ["NIFTI_EXTENSIONS", "SHEAR_TOLERANCE", "read_nifti", "write_nifti"]

#: Largest deviation of the normalised affine columns from orthonormal that is projected away (see module doc).
SHEAR_TOLERANCE = 1e-3
#: File extensions :func:`write_nifti` accepts.
NIFTI_EXTENSIONS = (".nii", ".nii.gz")

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_INTENT_LABEL = 1002  # NIFTI_INTENT_LABEL
_INTENT_VECTORS = {1006: "displacement_vector", 1007: "vector"}  # NIFTI_INTENT_DISPVECT, NIFTI_INTENT_VECTOR
_READ_ERRORS = (ImageFileError, HeaderDataError, HeaderTypeError, OSError, EOFError, zlib.error, ValueError, TypeError,
                MemoryError, OverflowError)


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """Silence nibabel's header-repair messages ("setting 0 dims to 1", ...), which it prints on stderr even
    through its own LoggingOutputSuppressor (Python's last-resort handler); the checks here cover them."""
    nib_logger = logging.getLogger("nibabel.global")
    previous = nib_logger.disabled
    nib_logger.disabled = True
    try:
        yield
    finally:
        nib_logger.disabled = previous


def _head(path: Path, gz: bool) -> bytes:
    """The first bytes of the (uncompressed) file: enough for a NIfTI-1 or NIfTI-2 header."""
    if gz:
        return read_gzip_bounded(path, 544)
    with open(path, "rb") as fh:
        return fh.read(544)


def _parse_header(klass: Any, head: bytes, path: Path) -> Any:
    """The header, parsed without nibabel's silent repairs, and checked so that nothing later can raise outside
    :class:`ImageReadError`: dimension count, dimensions, data type, voxel offset and declared size (against the
    bytes present and the memory budget)."""
    size = klass.header_class.sizeof_hdr
    try:
        hdr = klass.header_class(head[:size], check=False)
        ndim = int(hdr["dim"][0])
        if not 1 <= ndim <= 7:
            raise HeaderDataError(f"dim[0] is {ndim}; NIfTI allows 1 to 7 dimensions")
        shape = [int(v) for v in hdr["dim"][1 : ndim + 1]]
        if min(shape) < 1:
            raise HeaderDataError(f"dimension sizes {tuple(shape)} must all be at least 1")
        dtype = hdr.get_data_dtype()
        offset = int(hdr["vox_offset"])
    except (HeaderDataError, HeaderTypeError, ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ImageReadError(
            "invalid NIfTI header", path=path, expected="a NIfTI header with 1-7 dimensions of size >= 1 and a "
            "known data type", found=f"{type(exc).__name__}: {exc}",
            fix="the header is damaged; export the image again from the source",
        ) from exc
    rgb = dtype.fields is not None and all(dtype.fields[n][0] == np.uint8 for n in dtype.names or ())
    if np.issubdtype(dtype, np.complexfloating) or (dtype.fields is not None and not rgb):
        raise ImageReadError(
            "unsupported NIfTI voxel type", path=path, expected="real numbers (integer or float voxels)",
            found=f"{dtype} voxels", fix="save the magnitude (numpy.abs) or the real and imaginary parts as "
            "separate real-valued images",
        )
    total = max(offset, size) + declared_nbytes(shape, dtype.itemsize)
    check_memory_budget(total, path=path, what="image")
    pixdim = [float(v) for v in hdr["pixdim"][1 : min(ndim, 3) + 1]]
    negative = [i for i, d in enumerate(pixdim) if d < 0]
    if negative and int(hdr["qform_code"]) == 0 and int(hdr["sform_code"]) == 0:
        # nibabel takes |pixdim| and says so only in a log record: with no qform/sform an axis may flip unnoticed
        raise ImageReadError(
            "negative voxel size in the NIfTI header", path=path,
            expected="pixdim[1..3] > 0, or a qform/sform that states the orientation",
            found="a negative pixdim for axis " + ", ".join("xyz"[i] for i in negative) + " and no qform/sform",
            fix="set positive voxel sizes and the orientation in a qform/sform (e.g. with nibabel: "
                "img.set_qform(affine, code=1)), or convert from the original data",
        )
    zero_axes = [i for i, (n, d) in enumerate(zip(shape, pixdim)) if n > 1 and not (np.isfinite(d) and d != 0)]
    return zero_axes, total


def _load(path: Path) -> tuple[Any, list[int]]:
    """The nibabel image and the spatial axes (0 = x) whose pixdim is 0 or not finite in the stored header."""
    if compound_suffix(path) in (".hdr", ".img"):  # NIfTI-1 pair: nibabel finds the partner file itself
        try:
            with _quiet_nibabel():
                return nib.load(path), []
        except _READ_ERRORS as exc:
            raise ImageReadError(
                "unreadable NIfTI header/image pair", path=path, found=f"{type(exc).__name__}: {exc}",
                fix="check both the .hdr and the .img file are present and complete",
            ) from exc
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    head = _head(path, gz)
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        klass: Any = nib.Nifti1Image
    elif len(head) >= 540 and head[4:8] == b"n+2\x00":
        klass = nib.Nifti2Image
    else:
        raise ImageReadError(
            "not a NIfTI file", path=path, expected="a NIfTI-1 or NIfTI-2 header (magic 'n+1' or 'n+2')",
            found=f"{len(head)} bytes without a NIfTI magic string",
            fix="check the file is really NIfTI (read it with medimg.io.read to detect the format)",
        )
    zero_axes, total = _parse_header(klass, head, path)
    if not gz and path.stat().st_size < total:
        raise ImageReadError(
            "file is shorter than its header declares", path=path,
            expected=f"{total} bytes (header, then the voxel data its dimensions declare)",
            found=f"{path.stat().st_size} bytes",
            fix="the file was probably cut short during copy or download, or its header is damaged; copy it again",
        )
    if gz:
        data = read_gzip_bounded(path, total)  # never inflates more than the header declares
    else:
        with open(path, "rb") as fh:
            data = fh.read(total)
    if len(data) < total:
        raise ImageReadError(
            "file is shorter than its header declares", path=path,
            expected=f"{total} bytes (header, then the voxel data its dimensions declare)",
            found=f"{len(data)} bytes" + (" after decompression" if gz else ""),
            fix="the file was probably cut short during copy or download, or its header is damaged; copy it again",
        )
    try:
        with _quiet_nibabel():  # nibabel prints header repairs on stderr; the checks above cover them
            return klass.from_bytes(data), zero_axes
    except _READ_ERRORS as exc:
        raise ImageReadError(
            "unreadable NIfTI header", path=path, found=f"{type(exc).__name__}: {exc}",
            fix="the file is damaged; export it again from the source",
        ) from exc


def _geometry(nimg: Any, path: Path) -> tuple[Geometry, str]:
    """LPS Geometry of a nibabel image and which affine it came from."""
    hdr = nimg.header
    sform, scode = hdr.get_sform(coded=True)
    qform, qcode = hdr.get_qform(coded=True)
    candidates: list[tuple[str, np.ndarray]] = []
    if sform is not None and int(scode) > 0:
        candidates.append(("sform", sform))
    if qform is not None and int(qcode) > 0:
        candidates.append(("qform", qform))
    if not candidates:
        candidates.append(("pixdim", hdr.get_base_affine()))

    sheared: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]] = []
    for source, ras in candidates:
        lps = _LPS_FROM_RAS @ np.asarray(ras, dtype=float)
        m = lps[:3, :3]
        spacing = np.linalg.norm(m, axis=0)
        if not np.all(np.isfinite(lps)) or np.any(spacing <= 0):
            raise ImageReadError(
                f"degenerate {source} affine", path=path, expected="finite, non-zero voxel sizes",
                found=np.round(ras, 4).tolist(), fix="repair the header (e.g. with nibabel or fslorient)",
            )
        direction = m / spacing
        deviation = float(np.abs(direction.T @ direction - np.eye(3)).max())
        if deviation <= 1e-5:
            return Geometry(spacing=spacing, origin=lps[:3, 3], direction=direction), source
        sheared.append((source, lps, spacing, direction, deviation))
    source, lps, spacing, direction, deviation = sheared[0]
    if deviation <= SHEAR_TOLERANCE:
        u, _, vt = np.linalg.svd(direction)
        logger.warning(
            "%s: %s affine is slightly non-orthogonal (max deviation %.2g); projected onto the nearest "
            "orthonormal direction", path, source, deviation,
        )
        return Geometry(spacing=spacing, origin=lps[:3, 3], direction=u @ vt), source + "_projected"
    raise ImageReadError(
        f"{source} affine has shear (axes not orthogonal)", path=path,
        expected=f"orthogonal voxel axes (deviation <= {SHEAR_TOLERANCE:g})", found=f"deviation {deviation:.3g}",
        fix="resample the image onto an orthogonal grid (e.g. with nibabel.processing.resample_from_to), "
            "or set a valid qform",
    )


def _smallest_int_dtype(values: np.ndarray) -> np.dtype:
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for dt in (np.uint8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)  # pragma: no cover - the loop ends with int64


def read_nifti(path: str | os.PathLike[str], *, kind: Kind | str | None = None) -> Image:
    """Read a NIfTI file (.nii, .nii.gz; NIfTI-1 or -2) as an LPS :class:`Image`.

    Args:
        path: the file. Gzip compression is detected from the content, not the name.
        kind: "intensity", "label" or "probability". By default "label" when the header's intent code is
            NIFTI_INTENT_LABEL, else "intensity". A label image stored as floats with whole values is
            converted to the smallest integer type that holds them.

    Returns:
        Image of shape (C, Z, Y, X): a 2D/3D file gives C = 1 (an RGB24/RGBA32 file C = 3/4, uint8), a 4D
        file (x, y, z, t) gives C = t, and a
        vector image (x, y, z, 1, c), as ITK writes displacement fields (``medimg register``'s
        ``displacement.nii.gz``), gives C = c, the components as stored (no LPS/RAS flip of the vector values:
        ITK and ANTs store physical LPS components; metadata ``vector_components`` and ``intent``).
        ``scl_slope``/``scl_inter`` are applied (the dtype becomes float when they are set).
        Metadata: source_format "nifti", source_path, spacing_source "header", affine_source.

    Raises:
        ImageReadError: missing/empty/corrupt/truncated file, not NIfTI, 5 or more dimensions (other than
            one time point of vectors), NaN or Inf voxels, complex voxels, a sheared affine; an invalid header
            (dim[0] outside 1..7, unknown datatype); a declared size above the memory budget
            (:func:`medimg.core.checks.memory_budget_bytes`) or above the bytes present (checked before anything
            is allocated; .nii.gz is inflated only up to the declared size); a zero voxel size (pixdim) when the
            geometry comes from the qform or pixdim (nibabel would silently assume 1 mm).

    Example:
        >>> import tempfile, pathlib
        >>> from medimg.testing import phantom
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.nii.gz"
        >>> write_nifti(phantom((4, 5, 6)), p)
        >>> read_nifti(p).shape
        (1, 4, 5, 6)
    """
    p = check_input(path, allow_dir=False)
    nimg, zero_axes = _load(p)
    hdr = nimg.header
    shape = tuple(int(s) for s in nimg.shape)
    # Trailing singleton axes beyond the 4th (e.g. x, y, z, 1, 1) carry nothing.
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    intent = int(hdr.get("intent_code", 0)) if "intent_code" in hdr else 0
    vector = len(shape) == 5 and shape[3] == 1
    if vector:
        # (x, y, z, 1, c): one vector per voxel in the 5th axis (NIfTI's place for vector values, as ITK writes
        # displacement fields and other vector images): the components become channels.
        shape = shape[:3] + shape[4:]
    if not 2 <= len(shape) <= 4:
        raise ImageReadError(
            "unsupported number of dimensions", path=p,
            expected="2-4 dims (x, y[, z[, t/channels]]), or 5 with one time point (x, y, z, 1, vector)",
            found=f"{len(nimg.shape)} dims, shape {tuple(nimg.shape)}",
            fix="split the extra dimensions into separate files (e.g. with nibabel or fslsplit)",
        )
    try:
        with _quiet_nibabel():
            geometry, affine_source = _geometry(nimg, p)
    except _READ_ERRORS as exc:  # e.g. a qform quaternion nibabel cannot complete (ValueError in fillpositive)
        raise ImageReadError(
            "invalid orientation in the NIfTI header", path=p, expected="a valid qform/sform",
            found=f"{type(exc).__name__}: {exc}", fix="repair the header (e.g. with nibabel or fslorient) or "
            "export the image again",
        ) from exc
    if zero_axes and not affine_source.startswith("sform"):
        # nibabel silently turns a zero pixdim into 1 mm; a guessed voxel size would make every measurement wrong
        raise ImageReadError(
            "voxel size missing in the NIfTI header", path=p,
            expected="pixdim[1..3] > 0 (the voxel size in mm) for every axis with more than one voxel",
            found="a zero or non-finite pixdim for axis " + ", ".join("xyz"[i] for i in zero_axes)
            + f" (geometry from the {affine_source.split('_')[0]}; nibabel would assume 1 mm)",
            fix="set the voxel size in the header (e.g. with nibabel: img.header.set_zooms(...), or fslchpixdim), "
                "or convert from the original data",
        )
    check_memory_budget(declared_nbytes(nimg.shape, nimg.get_data_dtype().itemsize), path=p, what="image")
    try:
        data = np.asanyarray(nimg.dataobj)
    except _READ_ERRORS as exc:
        raise ImageReadError(
            "cannot read the voxel data (file truncated or damaged?)", path=p,
            found=f"{type(exc).__name__}: {exc}", fix="copy or export the file again",
        ) from exc
    data = np.asarray(data).reshape(shape)
    rgb = data.dtype.fields is not None  # RGB24 / RGBA32: one uint8 channel per field
    if rgb and data.ndim > 3:
        raise ImageReadError(
            "RGB NIfTI with a 4th dimension", path=p, expected="a 2D or 3D RGB(A) image",
            found=f"shape {tuple(nimg.shape)}", fix="split the time points into separate files",
        )
    if not rgb:
        check_voxels(data, path=p)
    if data.ndim == 2:
        data = data[:, :, None]
    if rgb:
        voxels = np.stack([data[name].transpose(2, 1, 0) for name in data.dtype.names])
    elif data.ndim == 3:
        voxels = data.transpose(2, 1, 0)[None]
    else:  # (x, y, z, t) -> (t, z, y, x)
        voxels = data.transpose(3, 2, 1, 0)
    voxels = np.ascontiguousarray(voxels)

    if kind is None:
        kind = Kind.LABEL if intent == _INTENT_LABEL else Kind.INTENSITY
    kind = Kind(kind)
    if kind == Kind.LABEL and np.issubdtype(voxels.dtype, np.floating):
        if np.all(voxels == np.round(voxels)):
            voxels = voxels.astype(_smallest_int_dtype(voxels))
        else:
            logger.warning("%s: label image has non-integer values; kept as %s", p, voxels.dtype)
    metadata: dict[str, Any] = {
        "source_format": "nifti",
        "source_path": str(p),
        "spacing_source": "header",
        "affine_source": affine_source,
    }
    if vector:
        metadata["vector_components"] = int(voxels.shape[0])
        if intent in _INTENT_VECTORS:
            metadata["intent"] = _INTENT_VECTORS[intent]
    descrip = bytes(np.asarray(hdr["descrip"]).tobytes()).split(b"\x00")[0].decode("latin-1").strip()
    if descrip:
        metadata["description"] = descrip
    logger.debug("read NIfTI %s: shape %s, %s, affine from %s", p, voxels.shape, voxels.dtype, affine_source)
    return Image(voxels=voxels, geometry=geometry, kind=kind, metadata=metadata)


def _nifti_array(image: Image, path: Path) -> np.ndarray:
    """Voxels in NIfTI order (x, y, z[, c]) with a dtype NIfTI and common readers accept."""
    vox = np.asarray(image.voxels)
    if vox.dtype == bool:
        vox = vox.astype(np.uint8)
    elif vox.dtype == np.float16:
        vox = vox.astype(np.float32)
    elif np.issubdtype(vox.dtype, np.complexfloating):
        raise ImageWriteError(
            "complex voxels", path=path, expected="real numbers", found=str(vox.dtype),
            fix="write the magnitude (numpy.abs) or real and imaginary parts as separate images",
        )
    if image.kind == Kind.LABEL and np.issubdtype(vox.dtype, np.floating):
        if not np.all(vox == np.round(vox)):
            raise ImageWriteError(
                "label image has non-integer values", path=path, expected="whole-number labels",
                found=f"{vox.dtype} values with fractions", fix="round the labels or set kind='intensity'",
            )
        vox = vox.astype(_smallest_int_dtype(vox))
    if vox.dtype in (np.int64, np.uint64) and vox.size:
        # Most tools read 32-bit integers more happily than 64-bit ones; keep 64 bits only when needed.
        smaller = _smallest_int_dtype(vox) if int(vox.max()) <= np.iinfo(np.int64).max else vox.dtype
        if smaller != np.int64 and smaller != vox.dtype:
            vox = vox.astype(smaller)
    if vox.shape[0] == 1:
        return np.ascontiguousarray(vox[0].transpose(2, 1, 0))
    return np.ascontiguousarray(vox.transpose(3, 2, 1, 0))


def write_nifti(image: Image, path: str | os.PathLike[str]) -> None:
    """Write an Image to exactly ``path`` as NIfTI-1 (.nii, or gzip-compressed .nii.gz).

    Both the sform and the qform hold the image's affine (flipped from LPS to RAS) with code 1 (scanner),
    units are mm and s, slope 1 and intercept 0, so every reader finds the same geometry. A multi-channel
    image becomes a 4D file (x, y, z, c). Label images are written with an integer dtype and intent
    NIFTI_INTENT_LABEL; bool is written as uint8, float16 as float32, int64 as the smallest integer type
    that holds the values.

    Raises:
        ImageWriteError: wrong extension, complex or non-integer label voxels, or nibabel cannot write.
    """
    p = Path(path)
    ext = compound_suffix(p)
    if ext not in NIFTI_EXTENSIONS:
        raise ImageWriteError(
            "wrong extension for NIfTI", path=p, expected="'.nii' or '.nii.gz'", found=f"'{ext or 'none'}'",
            fix="name the output e.g. out.nii.gz",
        )
    data = _nifti_array(image, p)
    affine = image.geometry.affine
    if image.geometry.space == Space.LPS:
        affine = _LPS_FROM_RAS @ affine  # the flip is its own inverse
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(data.dtype)
    nimg = nib.Nifti1Image(data, affine, header=hdr, dtype=data.dtype)
    nimg.set_sform(affine, code=1)
    nimg.set_qform(affine, code=1)
    nimg.header.set_xyzt_units("mm", "sec")
    nimg.header.set_slope_inter(1.0, 0.0)
    if image.kind == Kind.LABEL:
        nimg.header.set_intent("label")
    descrip = str(image.metadata.get("description", "medimg"))[:79]
    nimg.header["descrip"] = descrip.encode("ascii", "replace")
    try:
        nib.save(nimg, str(p))
    except (OSError, ValueError, ImageFileError) as exc:
        raise ImageWriteError(
            "cannot write NIfTI", path=p, found=f"{type(exc).__name__}: {exc}",
            fix="check the folder exists, is writable and has free space",
        ) from exc
    logger.debug("wrote NIfTI %s: shape %s, %s", p, data.shape, data.dtype)
