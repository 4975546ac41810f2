"""``read`` and ``write``: format detection and dispatch to the format modules.

``read(path)`` looks at the content (magic bytes) first and the extension second, so a NIfTI file called
``scan.dat`` and a DICOM file without extension both read. ``write(image, path)`` picks the format from the
extension and always writes through a temporary name that is renamed into place, so a failed write leaves
nothing behind, and it refuses to overwrite any of the given inputs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from medimg.core.errors import ImageWriteError, UnsupportedFormatError
from medimg.core.image import Image
from medimg.io.files import atomic_output, atomic_output_dir, check_input, compound_suffix

logger = logging.getLogger(__name__)

__all__ = ["read", "write", "detect_format", "READ_FORMATS", "WRITE_EXTENSIONS"]

_EXT_FORMAT = {
    ".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "itk", ".nhdr": "itk", ".mha": "itk", ".mhd": "itk",
    ".png": "raster", ".jpg": "raster", ".jpeg": "raster", ".tif": "raster", ".tiff": "raster",
    ".npz": "npz", ".zip": "dicom", ".dcm": "dicom", ".ima": "dicom",
}
#: Formats ``read`` understands, for messages.
READ_FORMATS = "DICOM (file, series/study folder, DICOMDIR, zip), NIfTI (.nii, .nii.gz), NRRD, MHA/MHD, " \
    "PNG/JPEG/TIFF, NPZ"
#: Extensions ``write`` understands; a path without extension means a DICOM series folder.
WRITE_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npz")


def _sniff(path: Path) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(352)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff" or head[:4] in (b"II*\x00", b"MM\x00*"):
        return "raster"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if head[:4] == b"NRRD":
        return "itk"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    return None


def detect_format(path: str | os.PathLike[str]) -> str:
    """The reader to use for ``path``: 'dicom', 'nifti', 'itk', 'raster' or 'npz'.

    Raises:
        ImageReadError: the path does not exist, is empty or unreadable.
        UnsupportedFormatError: the content and extension match no supported format.
    """
    p = check_input(path)
    if p.is_dir():
        return "dicom"
    ext = compound_suffix(p)
    if p.name.upper() == "DICOMDIR":
        return "dicom"
    magic = _sniff(p)
    by_ext = _EXT_FORMAT.get(ext)
    if magic == "zip":
        return "npz" if by_ext == "npz" else "dicom"
    if magic == "gzip":
        if by_ext in ("nifti", "itk"):
            return by_ext
        return "nifti" if ext in (".gz",) else (by_ext or "nifti")
    if magic is not None and magic != "npy":
        return magic
    if by_ext is not None:
        return by_ext  # the format reader gives the precise error for a wrong content
    if ext in ("", ".dat", ".img") or ext.isdigit():
        return "dicom"  # DICOM files often lack both an extension and the 128-byte preamble
    raise UnsupportedFormatError(
        "unrecognised image format", path=p, expected=READ_FORMATS, found=f"extension '{ext or 'none'}'",
        fix="convert the file to one of the supported formats, or check it is an image at all",
    )


def read(
    path: str | os.PathLike[str],
    *,
    series: str | int | None = None,
    spacing: Sequence[float] | None = None,
    on_gap: str = "error",
    kind: str | None = None,
) -> Image:
    """Read an image from any supported format.

    Args:
        path: a file, a DICOM series/study folder, a DICOMDIR or a zip of DICOM files.
        series: for DICOM folders holding several series, the index (as listed in the error) or the
            SeriesInstanceUID of the one to read. For .npz files the array and sample: "KEY:INDEX" (a MedMNIST
            file: "test:0" is sample 0 of test_images), "KEY", or an index along the only array's first axis.
        spacing: (sx, sy[, sz]) mm for formats that carry no spacing (PNG/JPEG/TIFF, NPZ) or DICOM without
            PixelSpacing. Overrides nothing that the file states.
        on_gap: DICOM only: "error" (default) refuses uneven slice spacing; "resample" resamples onto an
            even grid and records it in the history.
        kind: "intensity", "label" or "probability"; formats that cannot tell default to intensity.

    Raises:
        ImageReadError and subclasses, with the file named and a fix.
    """
    fmt = detect_format(path)
    logger.debug("reading %s as %s", path, fmt)
    if fmt == "dicom":
        from medimg.io.dicom import read_dicom

        img = read_dicom(path, series=series, spacing=tuple(spacing) if spacing else None, on_gap=on_gap)
        return img if kind is None else img.replace(kind=kind)
    if fmt == "nifti":
        from medimg.io.nifti import read_nifti

        return read_nifti(path, kind=kind)
    if fmt == "itk":
        from medimg.io.itk_formats import read_itk

        return read_itk(path, kind=kind)
    if fmt == "raster":
        from medimg.io.raster import read_raster

        return read_raster(path, spacing=spacing, kind=kind)
    if fmt == "npz":
        from medimg.io.npz import npz_selection, read_npz

        key, index = npz_selection(series)
        return read_npz(path, key=key, index=index, spacing=spacing, kind=kind)
    raise UnsupportedFormatError(  # pragma: no cover - detect_format only returns the formats above
        "unsupported format", path=path, expected=READ_FORMATS, found=fmt,
    )


def _write_format(path: Path) -> str:
    ext = compound_suffix(path)
    if ext == "":
        return "dicom"
    if ext in (".nii", ".nii.gz"):
        return "nifti"
    if ext in (".nrrd", ".mha", ".nhdr", ".mhd"):
        return "itk"
    if ext in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        return "raster"
    if ext == ".npz":
        return "npz"
    raise ImageWriteError(
        "unknown output format", path=path, expected=f"one of {', '.join(WRITE_EXTENSIONS)} "
        "or a folder name without extension (DICOM series)", found=f"extension '{ext}'",
        fix="give the output a supported extension, e.g. out.nii.gz",
    )


@contextlib.contextmanager
def _name_output(tmp: Path, out: Path) -> Iterator[None]:
    """Errors of a writer that wrote to the temporary file name the user's output path instead."""
    try:
        yield
    except ImageWriteError as exc:
        if exc.path is None or Path(exc.path) != tmp:
            raise
        found = None if exc.found is None else str(exc.found).replace(str(tmp), str(out))
        raise ImageWriteError(exc.what, path=out, parameter=exc.parameter, expected=exc.expected, found=found,
                              fix=exc.fix) from exc


def write(
    image: Image,
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    overwrite: bool = True,
) -> Path:
    """Write ``image`` to ``path``; the format follows the extension (no extension: DICOM series folder).

    The image is written to a temporary name and renamed into place on success. ``inputs`` are paths that
    must not be overwritten (the command line passes its input here); ``overwrite=False`` refuses an existing
    output.

    Returns:
        The path written.
    """
    out = Path(path)
    fmt = _write_format(out)
    inputs = [i for i in inputs if i is not None]
    if fmt == "dicom":
        from medimg.io.dicom import write_dicom_series

        if out.exists() and not overwrite:
            raise ImageWriteError("output exists", path=out, fix="choose a new folder name")
        with atomic_output_dir(out, inputs=inputs) as tmp:
            write_dicom_series(image, tmp)
        return out
    if compound_suffix(out) in (".mhd", ".nhdr"):
        # header + data file pair: write both into a private folder, then move them into place
        with atomic_output(out, inputs=inputs, overwrite=overwrite) as tmp_header:
            tmp_dir = Path(tempfile.mkdtemp(prefix=".medimg.", dir=out.parent))
            try:
                from medimg.io.itk_formats import write_itk

                with _name_output(tmp_dir / out.name, out):
                    write_itk(image, tmp_dir / out.name)
                for f in tmp_dir.iterdir():
                    if f.name != out.name:
                        os.replace(f, out.parent / f.name)
                os.replace(tmp_dir / out.name, tmp_header)
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
        return out
    with atomic_output(out, inputs=inputs, overwrite=overwrite) as tmp, _name_output(tmp, out):
        if fmt == "nifti":
            from medimg.io.nifti import write_nifti

            write_nifti(image, tmp)
        elif fmt == "itk":
            from medimg.io.itk_formats import write_itk

            write_itk(image, tmp)
        elif fmt == "raster":
            from medimg.io.raster import write_raster

            write_raster(image, tmp)
        else:
            from medimg.io.npz import write_npz

            write_npz(image, tmp)
    logger.debug("wrote %s", out)
    return out

