"""PNG, JPEG and TIFF reading and writing through Pillow.

These formats carry no patient geometry: the pixel spacing comes from the caller (``spacing=``) or is 1 mm, and
which of the two is recorded in ``metadata["spacing_source"]`` ("user" or "default_1mm"). Origin is 0 and
direction is the identity. Pixel values are never rescaled: 8-bit stays uint8, 16-bit stays uint16, and
writing any other dtype is refused with a hint to window or normalise first.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageSequence, UnidentifiedImageError

from medimg.core.checks import check_memory_budget, check_voxels, declared_nbytes
from medimg.core.enums import Kind
from medimg.core.errors import ImageReadError, ImageWriteError, InvalidParameterError
from medimg.core.image import Image
from medimg.io.files import check_input, compound_suffix, native_stderr_to_log

logger = logging.getLogger(__name__)

__all__ = ["RASTER_EXTENSIONS", "read_raster", "write_raster"]

_FORMAT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff"}
#: Extensions handled here.
RASTER_EXTENSIONS = tuple(_FORMAT)
_PIL_FORMAT = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}


def _frame_array(frame: PILImage.Image, *, kind: Kind, fmt: str) -> np.ndarray:
    """One Pillow frame as a (C, Y, X) array without changing pixel values."""
    mode = frame.mode
    if mode == "P":
        if kind == Kind.LABEL:
            arr = np.asarray(frame)  # palette indices are the labels
        else:
            has_alpha = "transparency" in frame.info
            arr = np.asarray(frame.convert("RGBA" if has_alpha else "RGB"))
    elif mode in ("PA",):
        arr = np.asarray(frame.convert("RGBA"))
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        arr = np.asarray(frame.convert("RGB"))
    elif mode == "I" and fmt == "png":
        arr = np.asarray(frame)
        if arr.size and arr.min() >= 0 and arr.max() <= 65535:  # PNG holds at most 16 bits per sample
            arr = arr.astype(np.uint16)
    else:
        arr = np.asarray(frame)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim == 2:
        return arr[None]
    arr = np.moveaxis(arr, -1, 0)
    if arr.shape[0] in (2, 4) and mode in ("LA", "RGBA", "PA", "P"):
        alpha = arr[-1]
        if np.all(alpha == np.iinfo(alpha.dtype).max if np.issubdtype(alpha.dtype, np.integer) else alpha == 1):
            arr = arr[:-1]  # fully opaque: the alpha channel carries nothing
    return arr


_PIL_LIMIT_LOCK = threading.Lock()
_MODE_ITEMSIZE = {"I": 4, "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


def _frame_nbytes(frame: PILImage.Image) -> int:
    """Bytes one decoded frame takes (palette images count as RGBA, as they may be expanded)."""
    width, height = frame.size
    per_pixel = 4 if frame.mode in ("P", "PA") else len(frame.getbands()) * _MODE_ITEMSIZE.get(frame.mode, 1)
    return declared_nbytes((width, height), per_pixel)


def _open_image(path: Path) -> PILImage.Image:
    """``PIL.Image.open`` with medimg's memory budget in place of Pillow's own pixel-count limit (checked by the
    caller before any decoding), so ``MEDIMG_MAX_BYTES`` is the one setting for every format."""
    with _PIL_LIMIT_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        previous = PILImage.MAX_IMAGE_PIXELS
        PILImage.MAX_IMAGE_PIXELS = None
        try:
            return PILImage.open(path)
        finally:
            PILImage.MAX_IMAGE_PIXELS = previous
            for w in caught:  # Pillow's complaints about damaged tags: the decode below says whether they matter
                logger.debug("%s: %s", path, w.message)


def _check_png_chunks(path: Path) -> None:
    """Walk a PNG's chunk headers (without reading their data) and refuse a chunk that declares more bytes than
    the file holds: Pillow allocates the declared length before reading (a 4 GB IDAT in a 100-byte file was a
    MemoryError), and the PNG format caps a chunk at 2**31 - 1 bytes."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            return
        pos = 8
        while pos + 8 <= size:
            fh.seek(pos)
            length, kind = struct.unpack(">I4s", fh.read(8))
            if length > min(size - pos - 8, 2**31 - 1):
                raise ImageReadError(
                    "damaged or truncated image file", path=path, expected="PNG chunks that fit in the file",
                    found=f"chunk {kind!r} at byte {pos} declares {length} bytes, {max(size - pos - 8, 0)} follow",
                    fix="copy or export the image again",
                )
            if kind == b"IEND":
                return
            pos += 12 + length


def _spacing(spacing: Sequence[float] | None, path: Path) -> tuple[tuple[float, float, float], str]:
    if spacing is None:
        # recorded in metadata["spacing_source"]; the caller decides what to tell the user (measurements switch to
        # pixel units, the CLI prints one warning unless -q), so that nothing is said when a spacing is applied later
        logger.debug("%s: PNG/JPEG/TIFF files carry no pixel spacing; 1 mm per pixel stands in", path)
        return (1.0, 1.0, 1.0), "default_1mm"
    values = tuple(float(v) for v in spacing)
    if len(values) not in (2, 3) or not all(np.isfinite(values)) or min(values) <= 0:
        raise InvalidParameterError(
            "invalid pixel spacing", parameter="spacing", expected="(sx, sy) or (sx, sy, sz) in mm, all > 0",
            found=values, fix="give the pixel size in mm, e.g. spacing=(0.5, 0.5)",
        )
    return (values[0], values[1], values[2] if len(values) == 3 else 1.0), "user"


def read_raster(
    path: str | os.PathLike[str],
    *,
    spacing: Sequence[float] | None = None,
    kind: Kind | str | None = None,
) -> Image:
    """Read a PNG, JPEG or TIFF file as an Image.

    Args:
        path: the file (the format is detected from its content).
        spacing: (sx, sy) pixel size in mm, or (sx, sy, sz) for multi-page TIFF; default 1 mm (recorded in
            ``metadata["spacing_source"]`` as "default_1mm"; measurements of such images are in pixel units).
        kind: "intensity" (default), "label" or "probability". For palette images "label" keeps the palette
            indices; otherwise a palette image is expanded to RGB(A).

    Returns:
        A 2D Image (Z = 1) of shape (C, 1, Y, X): grayscale C = 1, RGB C = 3, RGBA C = 4 (an alpha channel
        that is fully opaque is dropped). 16-bit images stay uint16, 1-bit images are bool. A multi-page TIFF
        whose pages share size and mode becomes a 3D image with Z = pages.

    Raises:
        ImageReadError: missing, empty, truncated or non-image file; multi-page TIFF with pages of different
            size or mode.
        InvalidParameterError: a bad ``spacing``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"
        >>> write_raster(Image.from_array(np.zeros((4, 6), np.uint8)), p)
        >>> read_raster(p, spacing=(0.5, 0.5)).shape
        (1, 1, 4, 6)
    """
    p = check_input(path, allow_dir=False)
    kind_ = Kind(kind) if kind is not None else Kind.INTENSITY
    geometry_spacing, spacing_source = _spacing(spacing, p)
    _check_png_chunks(p)
    try:
        with native_stderr_to_log(lambda text: logger.debug("%s: the decoder said: %s", p, text)), \
                _open_image(p) as pil, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fmt = _PIL_FORMAT.get(pil.format or "", (pil.format or compound_suffix(p).lstrip(".")).lower())
            frames = []
            n_pages = int(getattr(pil, "n_frames", 1) or 1) if fmt == "tiff" else 1
            check_memory_budget(_frame_nbytes(pil) * n_pages, path=p,
                                what=f"image ({n_pages} pages)" if n_pages > 1 else "image")
            declared = 0
            for frame in ImageSequence.Iterator(pil):
                declared += _frame_nbytes(frame)  # pages may differ in size: count each before decoding it
                check_memory_budget(declared, path=p, what="image")
                frame.load()
                frames.append((frame.mode, frame.size, _frame_array(frame, kind=kind_, fmt=fmt)))
                if fmt != "tiff":
                    break  # animated PNG / multi-picture JPEG: the first picture only
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(
            "not a readable PNG/JPEG/TIFF image", path=p, expected="PNG, JPEG or TIFF content",
            found="content Pillow does not recognise", fix="check the file is an image and not, e.g., an HTML page",
        ) from exc
    except MemoryError as exc:  # the last line of defence: the sizes checked above should leave none
        raise ImageReadError(
            "out of memory while decoding the image", path=p, expected="an image that fits in memory",
            found="MemoryError", fix="crop or downsample the image, or give medimg a machine with more memory",
        ) from exc
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error, EOFError, zlib.error,
            PILImage.DecompressionBombError) as exc:  # Pillow's parsers raise all of these on damaged headers
        raise ImageReadError(
            "damaged or truncated image file", path=p, found=f"{type(exc).__name__}: {exc}",
            fix="copy or export the image again",
        ) from exc
    for w in caught:  # Pillow's complaints about damaged but readable tags: not worth a line of their own
        logger.debug("%s: %s", p, w.message)
    if len(frames) > 1:
        first_mode, first_size, first = frames[0]
        odd = [i for i, (m, s, a) in enumerate(frames) if (s, a.shape, a.dtype) != (first_size, first.shape,
                                                                                   first.dtype)]
        if odd:
            m, s, _ = frames[odd[0]]
            raise ImageReadError(
                "multi-page TIFF pages differ in size or type", path=p,
                expected=f"every page {first_size[0]}x{first_size[1]} {first_mode}",
                found=f"page {odd[0]} is {s[0]}x{s[1]} {m}",
                fix="split the pages into separate files (e.g. a pyramid or thumbnail page) and read one",
            )
        voxels = np.stack([a for _, _, a in frames], axis=1)  # (C, Z, Y, X)
    else:
        voxels = frames[0][2][:, None]
    metadata: dict[str, Any] = {"source_format": fmt, "source_path": str(p), "spacing_source": spacing_source}
    if len(frames) > 1:
        metadata["pages"] = len(frames)
    check_voxels(voxels, path=p)
    image = Image.from_array(np.ascontiguousarray(voxels), spacing=geometry_spacing, kind=kind_,
                             metadata=metadata, copy=False)
    logger.debug("read %s %s: shape %s, %s", fmt, p, image.shape, image.dtype)
    return image


def write_raster(image: Image, path: str | os.PathLike[str]) -> None:
    """Write a 2D Image to exactly ``path`` as PNG, JPEG or TIFF, without changing pixel values.

    Supported: uint8 and uint16 with 1 channel, uint8 with 3 (RGB) or 4 (RGBA) channels, bool with 1 channel
    (1-bit). JPEG takes uint8 with 1 or 3 channels and is lossy, so label images are refused there. Spacing,
    origin and direction are not stored (these formats have no place for them).

    Raises:
        ImageWriteError: wrong extension, a 3D image, another dtype (window or normalise first, medimg never
            rescales silently), an unsupported channel count, or Pillow cannot write.
    """
    p = Path(path)
    ext = compound_suffix(p)
    if ext not in _FORMAT:
        raise ImageWriteError(
            "wrong extension for PNG/JPEG/TIFF", path=p, expected="one of " + ", ".join(RASTER_EXTENSIONS),
            found=f"'{ext or 'none'}'", fix="name the output e.g. out.png",
        )
    fmt = _FORMAT[ext]
    if not image.is_2d:
        raise ImageWriteError(
            f"{fmt.upper()} holds 2D images only", path=p, expected="a 2D image (Z = 1)",
            found=f"{image.spatial_shape[0]} slices", fix="pick one slice first (e.g. image.voxels[:, z:z+1]) "
            "or write a volume format such as .nii.gz",
        )
    vox = np.asarray(image.voxels)[:, 0]  # C, Y, X
    c, dtype = vox.shape[0], vox.dtype
    allowed = {np.dtype(np.uint8): (1, 3, 4), np.dtype(np.uint16): (1,), np.dtype(bool): (1,)}
    if fmt == "jpeg":
        allowed = {np.dtype(np.uint8): (1, 3)}
        if image.kind == Kind.LABEL:
            raise ImageWriteError(
                "JPEG is lossy and would change label values", path=p, expected="a lossless format",
                found="a label image", fix="write labels as .png or .tif",
            )
    if dtype not in allowed:
        raise ImageWriteError(
            f"{fmt.upper()} cannot hold this voxel type without rescaling", path=p,
            expected=" or ".join(str(d) for d in allowed), found=str(dtype),
            fix="window or normalise the image to 0..255 and convert to uint8 first "
                "(medimg never rescales silently), or write .nii.gz / .npz to keep the values",
        )
    if c not in allowed[dtype]:
        raise ImageWriteError(
            f"unsupported number of channels for {dtype} {fmt.upper()}", path=p,
            expected=f"{' or '.join(map(str, allowed[dtype]))} channels", found=f"{c} channels",
            fix="select channels first, e.g. image.voxels[:3]",
        )
    if c == 1:
        arr = vox[0]
        pil = PILImage.fromarray(np.ascontiguousarray(arr.astype("<u2") if dtype == np.uint16 else arr))
    else:
        pil = PILImage.fromarray(np.ascontiguousarray(np.moveaxis(vox, 0, -1)))
    options: dict[str, Any] = {}
    if fmt == "jpeg":
        options["quality"] = 95
        logger.info("%s: JPEG is lossy; pixel values will change slightly", p)
    elif fmt == "tiff":
        options["compression"] = "tiff_deflate"
    try:
        pil.save(p, format={"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}[fmt], **options)
    except (OSError, ValueError, KeyError) as exc:
        raise ImageWriteError(
            f"cannot write {fmt.upper()}", path=p, found=f"{type(exc).__name__}: {exc}",
            fix="check the folder exists, is writable and has free space",
        ) from exc
    logger.debug("wrote %s %s: shape %s, %s", fmt, p, vox.shape, dtype)
