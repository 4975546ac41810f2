"""NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) reading and writing through SimpleITK.

Both formats store LPS geometry like the library, so no flips happen here; conversion goes through
:mod:`medimg.io.sitk_bridge`. Vector (multi-component) images map to channels.

Detached-header formats (``.nhdr``, ``.mhd``) keep their voxels in a second file beside the header, named by
SimpleITK after the header's file name; :func:`write_itk` writes both into the destination folder.

Files from outside are never handed to SimpleITK unchecked: :func:`check_itk_header` parses the text header first
(dimensions, sizes, element type, declared size against the memory budget and the bytes present) and refuses a
data file that is absolute or lies outside the header's folder, so a header cannot turn ``/etc/passwd`` into voxels.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from medimg.core.checks import check_memory_budget, check_voxels, declared_nbytes
from medimg.core.enums import Kind, Space
from medimg.core.errors import ImageReadError, ImageWriteError
from medimg.core.image import Image
from medimg.io.files import check_input, compound_suffix, is_inside, native_stderr_to_log
from medimg.io.sitk_bridge import from_sitk, to_sitk

logger = logging.getLogger(__name__)

__all__ = ["ITK_EXTENSIONS", "check_itk_header", "read_itk", "write_itk"]

_IO = {".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO", ".mha": "MetaImageIO", ".mhd": "MetaImageIO"}
_FORMAT = {".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mha"}
#: Extensions handled here.
ITK_EXTENSIONS = tuple(_IO)


_MET_SIZES = {"CHAR": 1, "UCHAR": 1, "SHORT": 2, "USHORT": 2, "INT": 4, "UINT": 4, "LONG": 8, "ULONG": 8,
              "LONG_LONG": 8, "ULONG_LONG": 8, "FLOAT": 4, "DOUBLE": 8}
_NRRD_SIZES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                     "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
                     "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                     "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                     "double"), 8),
}
_HEADER_LIMIT = 1 << 16
_MAX_DIMS = 5  # x, y, z, t, plus one vector axis (NRRD counts the vector axis as a dimension)


def _bad_header(path: Path, what: str, found: Any, fix: str = "the header is damaged or hostile; export the image "
                "again from the source") -> ImageReadError:
    return ImageReadError(what, path=path, expected="a NRRD/MetaImage header with 1-4 dimensions (5 with a vector "
                          "axis), positive sizes, a known element type and its data inside the header's folder",
                          found=found, fix=fix)


def _header_lines(path: Path, nrrd: bool) -> tuple[list[tuple[str, str]], int]:
    """(key, value) pairs of the text header and the header's length in bytes."""
    with open(path, "rb") as fh:
        head = fh.read(_HEADER_LIMIT)
    pairs: list[tuple[str, str]] = []
    pos = 0
    for raw in head.split(b"\n"):
        end = pos + len(raw) + 1
        line = raw.decode("latin-1").rstrip("\r")
        if nrrd:
            if pos == 0 or line.startswith("#") or ":=" in line:
                pos = end
                continue
            if not line.strip():
                return pairs, min(end, len(head))
            key, sep, value = line.partition(":")
        else:
            key, sep, value = line.partition("=")
        if sep:
            pairs.append((key.strip().lower(), value.strip()))
        pos = end
        if not nrrd and key.strip().lower() == "elementdatafile":
            return pairs, min(end, len(head))
    if nrrd and len(head) < _HEADER_LIMIT:
        return pairs, len(head)  # header only (a .nhdr without the blank line)
    raise _bad_header(path, "header has no end", f"no {'blank line' if nrrd else 'ElementDataFile'} in the first "
                      f"{min(len(head), _HEADER_LIMIT)} bytes")


def _ints(path: Path, text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split()]
    except ValueError:
        raise _bad_header(path, f"invalid {name}", repr(text[:80])) from None
    return values


def _data_file(path: Path, name: str) -> Path:
    """The detached data file a header names, refused when it lies outside the header's folder."""
    if name.upper() == "LIST" or "%" in name or re.search(r"\s-?\d+\s+-?\d+\s+-?\d+\s*$", name):
        raise _bad_header(path, "data split over a list of files", repr(name[:80]),
                          fix="write the voxels into one data file beside the header (or use .mha/.nrrd)")
    target = Path(name)
    folder = path.parent
    if len(name.encode("utf-8", "surrogateescape")) > 255 or any(len(p) > 255 for p in target.parts) or "\0" in name:
        # the file system would refuse it (OSError "File name too long") when the file is looked for
        raise _bad_header(path, "data file name is not a usable file name", repr(name[:80]),
                          fix="name the data file beside the header with a short plain name")
    if target.is_absolute() or not is_inside(folder / target, folder):
        raise _bad_header(path, "data file lies outside the header's folder", repr(name[:120]),
                          fix="keep the data file beside the header and name it without a folder part; medimg "
                              "never reads files a header points to elsewhere")
    return folder / target


#: MetaImage fields whose values are ndim numbers, and ndim * ndim numbers (MetaIO reads as many as NDims says)
_MET_VECTORS = ("elementspacing", "offset", "position", "origin", "centerofrotation", "elementsize")
_MET_MATRICES = ("transformmatrix", "rotation", "orientation")
_MET_INTS = ("headersize", "compresseddatasize", "elementnumberofchannels")
_MET_BOOLS = ("binarydata", "binarydatabyteordermsb", "elementbyteordermsb", "compresseddata")
_SIZE_FIELDS = {"ndims", "dimsize", *(_MET_VECTORS), *(_MET_MATRICES)}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _floats(path: Path, text: str, name: str, count: int | None) -> list[float]:
    """``count`` finite numbers of reasonable size (|x| <= 1e12), or a refusal naming the field."""
    words = text.replace("(", " ").replace(")", " ").replace(",", " ").split() if count is None else text.split()
    if not all(_NUMBER.fullmatch(w) for w in words) or (count is not None and len(words) != count):
        raise _bad_header(path, f"invalid {name}", f"{text[:80]!r}" + ("" if count is None else
                          f" (expected {count} numbers)"))
    values = [float(w) for w in words]
    if not all(abs(v) <= 1e12 for v in values):  # also refuses inf and nan (1e999 parses as inf)
        raise _bad_header(path, f"invalid {name}", f"{text[:80]!r} (a value is not finite or beyond 1e12)")
    return values


def _check_fields(path: Path, pairs: list[tuple[str, str]], nrrd: bool) -> None:
    """Field names are printable and appear once (a second ``NDims`` line hid the first one, which MetaIO read,
    from this check: a segfault), and MetaImage's NDims comes before the fields whose length it gives."""
    seen: set[str] = set()
    for key, _ in pairs:
        if not key or not key.isprintable() or len(key) > 64:
            raise _bad_header(path, "invalid header field name", repr(key[:40]))
        if key in seen:
            raise _bad_header(path, "header field given twice", repr(key[:40]))
        seen.add(key)
        if not nrrd and key in _SIZE_FIELDS and key != "ndims" and "ndims" not in seen:
            raise _bad_header(path, "MetaImage field before NDims", repr(key[:40]),
                              fix="write NDims before DimSize and the geometry fields; export the image again")


def _check_geometry(path: Path, fields: dict[str, str], nrrd: bool, ndim: int) -> None:
    """Every numeric field has the number of values the dimension asks for, finite and of bounded size; integer
    fields are integers in range; the data's offset and compressed size fit in the file (or the data file)."""
    limit = path.stat().st_size
    name = fields.get("data file", fields.get("datafile")) if nrrd else fields.get("elementdatafile")
    if name and not (name.upper() == "LOCAL" and not nrrd):
        try:
            data = path.parent / name
            limit = max(limit, data.stat().st_size if is_inside(data, path.parent) and data.is_file() else 0)
        except (OSError, ValueError):
            pass  # _data_file refuses it with the reason
    if nrrd:
        for key in ("spacings", "thicknesses", "axis mins", "axis maxs"):
            if key in fields:
                _floats_or_nan(path, fields[key], key, ndim)
        if "space origin" in fields:
            _floats(path, fields["space origin"], "space origin", None)
        if "space directions" in fields:
            vectors = [v for v in fields["space directions"].split() if v.lower() != "none"]
            if len(fields["space directions"].split()) != ndim:
                raise _bad_header(path, "invalid space directions", repr(fields["space directions"][:80]))
            for v in vectors:
                _floats(path, v, "space directions", None)
        for key, low in (("byte skip", -1), ("line skip", 0)):
            if key in fields:
                values = _ints(path, fields[key], key)
                if len(values) != 1 or not low <= values[0] <= limit:
                    raise _bad_header(path, f"invalid {key}", fields[key][:40])
        return
    for key in _MET_VECTORS:
        if key in fields:
            _floats(path, fields[key], key, ndim)
    for key in _MET_MATRICES:
        if key in fields:
            _floats(path, fields[key], key, ndim * ndim)
    for key in _MET_INTS:
        if key in fields:
            values = _ints(path, fields[key], key)
            high = 1024 if key == "elementnumberofchannels" else limit
            low = -1 if key == "headersize" else 0
            if len(values) != 1 or not low <= values[0] <= high:
                raise _bad_header(path, f"invalid {key}", fields[key][:40])
    for key in _MET_BOOLS:
        if key in fields and fields[key].lower() not in ("true", "false", "1", "0"):
            raise _bad_header(path, f"invalid {key}", repr(fields[key][:40]))
    for key in ("elementmin", "elementmax"):
        if key in fields:
            _floats(path, fields[key], key, None)
    if "anatomicalorientation" in fields and not re.fullmatch(r"[LRAPSI?]{1,5}", fields["anatomicalorientation"]
                                                              .upper()):
        raise _bad_header(path, "invalid AnatomicalOrientation", repr(fields["anatomicalorientation"][:40]))


def _floats_or_nan(path: Path, text: str, name: str, count: int) -> None:
    """NRRD per-axis values: ``count`` numbers, where ``nan`` marks an axis without one."""
    words = text.split()
    if len(words) != count:
        raise _bad_header(path, f"invalid {name}", f"{text[:80]!r} (expected {count} values)")
    _floats(path, " ".join(w for w in words if w.lower() != "nan"), name, None)


def check_itk_header(path: str | os.PathLike[str], ext: str | None = None) -> None:
    """Check a NRRD or MetaImage header before SimpleITK sees it: dimensions, sizes, element type, the data
    file's place, and the declared size against the bytes present and the memory budget.

    Call it before any SimpleITK call on a file from outside (``ReadImageInformation`` too: ITK hangs on
    ``NDims = 99999999999996``). ``ext`` defaults to the file's extension.

    Raises:
        ImageReadError: naming the file and what is wrong.
    """
    path = Path(path)
    ext = compound_suffix(path) if ext is None else ext
    with open(path, "rb") as fh:
        nrrd = fh.read(4) == b"NRRD"
    if not nrrd and ext not in (".mha", ".mhd"):
        return  # not a text header format medimg knows; SimpleITK decides
    pairs, header_len = _header_lines(path, nrrd)
    fields = dict(pairs)
    _check_fields(path, pairs, nrrd)
    if nrrd:
        dim_text, sizes_text, type_text = fields.get("dimension"), fields.get("sizes"), fields.get("type")
        data_name = fields.get("data file", fields.get("datafile"))
        compressed = fields.get("encoding", "raw").lower() not in ("raw",)
        if fields.get("encoding", "raw").lower() in ("txt", "text", "ascii"):
            compressed = True  # text needs more bytes than raw; the size check below does not apply
        itemsize = _NRRD_SIZES.get((type_text or "").lower())
        channels = 1
    else:
        dim_text, sizes_text, type_text = fields.get("ndims"), fields.get("dimsize"), fields.get("elementtype")
        data_name = fields.get("elementdatafile")
        compressed = fields.get("compresseddata", "false").lower() == "true"
        base = (type_text or "").upper().removeprefix("MET_").removesuffix("_ARRAY")
        itemsize = _MET_SIZES.get(base)
        channels_text = fields.get("elementnumberofchannels", "1")
        channels = (_ints(path, channels_text, "ElementNumberOfChannels") or [0])[0]
        if not 1 <= channels <= 1024:
            raise _bad_header(path, "invalid number of channels", channels_text[:40])
        if data_name is None:
            raise _bad_header(path, "MetaImage header without ElementDataFile", "no ElementDataFile line")
    if dim_text is None or sizes_text is None:
        raise _bad_header(path, "header lacks the dimension or the sizes", ", ".join(k for k, _ in pairs)[:120])
    ndim = (_ints(path, dim_text, "number of dimensions") or [0])[0]
    if not 1 <= ndim <= _MAX_DIMS:
        raise _bad_header(path, "unsupported number of dimensions", f"{dim_text[:40]} dimensions")
    sizes = _ints(path, sizes_text, "sizes")
    if len(sizes) != ndim or min(sizes) < 1:
        raise _bad_header(path, "sizes do not match the dimensions", f"{ndim} dimensions, sizes {sizes_text[:80]}")
    if itemsize is None:
        raise _bad_header(path, "unknown element type", repr((type_text or "none")[:40]))
    _check_geometry(path, fields, nrrd, ndim)
    nbytes = declared_nbytes(sizes, itemsize * channels)
    check_memory_budget(nbytes, path=path, what="image")
    if data_name is not None and (nrrd or data_name.upper() != "LOCAL"):
        data_file = _data_file(path, data_name)
        present = data_file.stat().st_size if data_file.is_file() else None
        skip = 0
    else:
        present, skip = path.stat().st_size, header_len
        if nrrd and ext == ".nhdr":
            raise _bad_header(path, "detached NRRD header without a data file", "no 'data file' field")
    if present is not None and not compressed and present - skip < nbytes:
        raise ImageReadError(
            "file is shorter than its header declares", path=path, expected=f"{nbytes} bytes of voxel data",
            found=f"{max(present - skip, 0)} bytes", fix="the file (or its data file) was cut short; copy it again",
        )


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
        ImageReadError: missing, empty, corrupt or truncated file, or 4D and higher images; a header that
            declares more than the memory budget or than the bytes present, a data file outside the header's
            folder (absolute or ``../``; never read), or NaN/Inf voxels. The header is checked before SimpleITK
            sees it.

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
    check_itk_header(p, ext)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    if ext in _IO:
        reader.SetImageIO(_IO[ext])
    try:
        with native_stderr_to_log(lambda text: logger.debug("%s: SimpleITK said: %s", p, text)):
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
    check_voxels(out.voxels, path=p)
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
