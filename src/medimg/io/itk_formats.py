"""NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) reading and writing through SimpleITK.

Both formats store LPS geometry like the library, so no flips happen here; conversion goes through
:mod:`medimg.io.sitk_bridge`. Vector (multi-component) images map to channels.

Detached-header formats (``.nhdr``, ``.mhd``) keep their voxels in a second file beside the header, named by
SimpleITK after the header's file name; :func:`write_itk` writes both into the destination folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from medimg.core.enums import Kind, Space
from medimg.core.errors import ImageReadError, ImageWriteError
from medimg.core.image import Image
from medimg.io._files import check_input, compound_suffix
from medimg.io.sitk_bridge import from_sitk, to_sitk

logger = logging.getLogger(__name__)

__all__ = ["ITK_EXTENSIONS", "read_itk", "write_itk"]

_IO = {".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO", ".mha": "MetaImageIO", ".mhd": "MetaImageIO"}
_FORMAT = {".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mha"}
#: Extensions handled here.
ITK_EXTENSIONS = tuple(_IO)


def read_itk(path: str | os.PathLike[str], *, kind: Kind | str | None = None) -> Image:
    """Read a NRRD or MetaImage file as an LPS :class:`Image`.

    Args:
        path: a .nrrd, .nhdr, .mha or .mhd file (another extension: SimpleITK guesses from the content).
        kind: "intensity" (default), "label" or "probability".

    Returns:
        Image (C, Z, Y, X); a 2D file gives Z = 1, a vector image gives one channel per component.
        Metadata: source_format ("nrrd" or "mha"), source_path, spacing_source "header", and "modality" when
        the header has one.

    Raises:
        ImageReadError: missing, empty, corrupt or truncated file, or 4D and higher images.

    Example:
        >>> import tempfile, pathlib
        >>> from medimg.testing import phantom
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.nrrd"
        >>> write_itk(phantom((4, 5, 6)), p)
        >>> read_itk(p).spatial_shape
        (4, 5, 6)
    """
    p = check_input(path, allow_dir=False)
    ext = compound_suffix(p)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    if ext in _IO:
        reader.SetImageIO(_IO[ext])
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "ERROR" in line or "rror" in line), first[-1] if first else "")
        raise ImageReadError(
            f"unreadable {_FORMAT.get(ext, 'ITK')} file", path=p, expected="a complete NRRD or MetaImage file",
            found=detail.strip()[:200], fix="check the file (and a detached data file) is complete; copy it again",
        ) from exc
    dim = img.GetDimension()
    if dim not in (2, 3):
        raise ImageReadError(
            "unsupported number of dimensions", path=p, expected="a 2D or 3D image (vector pixels allowed)",
            found=f"{dim}D, size {img.GetSize()}", fix="split the extra dimension into separate files",
        )
    metadata: dict[str, Any] = {
        "source_format": _FORMAT.get(ext, "mha" if "Meta" in reader.GetImageIO() else "nrrd"),
        "source_path": str(p),
        "spacing_source": "header",
    }
    if img.HasMetaDataKey("Modality"):  # MetaImage: MET_MOD_CT, MET_MOD_MR, ..., MET_MOD_UNKNOWN
        modality = img.GetMetaData("Modality").strip().removeprefix("MET_MOD_")
        if modality and modality not in ("UNKNOWN", "OTHER"):
            metadata["modality"] = modality
    out = from_sitk(img, kind=Kind(kind) if kind is not None else Kind.INTENSITY, metadata=metadata)
    logger.debug("read %s %s: shape %s, %s", metadata["source_format"], p, out.shape, out.dtype)
    return out


def _needs_3d(image: Image) -> bool:
    """True when a 2D image's geometry cannot be said in 2D (its plane is not the z = 0 axial plane)."""
    g = image.geometry
    d = g.direction_matrix
    return not (
        np.allclose(d[2, :2], 0.0) and np.allclose(d[:2, 2], 0.0) and np.isclose(d[2, 2], 1.0)
        and g.origin[2] == 0.0 and g.spacing[2] == 1.0
    )


def _as_sitk(image: Image) -> sitk.Image:
    # A single oblique (or off-origin) slice is written as a 3D image with one slice so no geometry is lost.
    return to_sitk(image, keep_3d=image.is_2d and _needs_3d(image))


def write_itk(image: Image, path: str | os.PathLike[str]) -> None:
    """Write an Image to exactly ``path`` as NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd), gzip-compressed.

    Multi-channel images become vector images; bool is written as uint8, float16 as float32. A 2D image
    whose plane is oblique or lies off z = 0 is written as a 3D image with one slice, so reading it back
    gives the same geometry (and still Z = 1). For .nhdr/.mhd the voxels go to a data file beside the header.

    Raises:
        ImageWriteError: wrong extension, an image not in LPS, or SimpleITK cannot write.
    """
    p = Path(path)
    ext = compound_suffix(p)
    if ext not in _IO:
        raise ImageWriteError(
            "wrong extension for NRRD/MetaImage", path=p, expected="one of " + ", ".join(ITK_EXTENSIONS),
            found=f"'{ext or 'none'}'", fix="name the output e.g. out.nrrd or out.mha",
        )
    if image.geometry.space != Space.LPS:
        raise ImageWriteError(
            "image is not in LPS space", path=p, expected="LPS", found=image.geometry.space.value,
            fix="keep images in LPS inside the library",
        )
    img = _as_sitk(image)
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(p))
    writer.SetImageIO(_IO[ext])
    writer.SetUseCompression(True)
    try:
        writer.Execute(img)
    except RuntimeError as exc:
        raise ImageWriteError(
            f"cannot write {_FORMAT[ext]}", path=p, found=str(exc).strip().splitlines()[-1][:200],
            fix="check the folder exists, is writable and has free space",
        ) from exc
    logger.debug("wrote %s %s: shape %s, %s", _FORMAT[ext], p, image.shape, image.dtype)
